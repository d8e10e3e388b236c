"""The provisioning app: hosts, instances, licenses, and the Operation model the runner uses."""

from django.apps import AppConfig

# (name, task, seconds): periodic tasks of this app, registered with the beat schedule.
PERIODIC_JOBS = (
    ("operations-reap", "provisioning.tasks.operations_reap", 30.0),
    ("operations-requeue-pending", "provisioning.tasks.operations_requeue_pending", 60.0),
    ("instances-health", "provisioning.tasks.instances_health_check", 60.0),
    ("instances-drift", "provisioning.tasks.instances_drift_check", 600.0),
    ("instances-purge", "provisioning.tasks.instances_purge_due", 3600.0),
    ("hosts-health", "provisioning.host_tasks.host_health_sweep", 300.0),
)


class ProvisioningConfig(AppConfig):
    """Managed hosts, Atlassian instances, licenses and the operations that change them."""

    name = "provisioning"

    def ready(self) -> None:
        from panel.operations import operation_bind
        from panel.registry import periodic_job_register
        from provisioning import hosts, operations  # noqa: F401 - register their kinds
        from provisioning.models import Operation, OperationStatus, OperationStep
        from provisioning.tasks import operation_run_enqueue

        # The runner lives in panel (the bottom layer) and works on this app's models.
        operation_bind(
            model=Operation,
            step_model=OperationStep,
            status=OperationStatus,
            enqueue=operation_run_enqueue,
        )
        for name, task, seconds in PERIODIC_JOBS:
            periodic_job_register(name, task=task, seconds=seconds)
