"""Celery tasks of the provisioning app: a thin interface to the operation runner, the
monitoring and the managed hosts (they take only primary keys).

Every task of the app lives here, where Celery's autodiscovery finds it. Periodic ones are
registered with the beat schedule by ``ProvisioningConfig.ready()``. The host tasks keep their
``provisioning.host_tasks.*`` names, so messages already queued under them still run.
"""

from __future__ import annotations

import uuid

from celery import shared_task

from panel import operations


@shared_task(name="provisioning.tasks.operation_run", acks_late=True)
def operation_run(operation_id: str) -> str:
    """Claim and run one operation (a duplicate delivery finds nothing to claim)."""
    return operations.operation_execute(operation_id)


def operation_run_enqueue(operation_id: str) -> None:
    """Send one operation's task to the broker (bound as the runner's ``enqueue``).

    An operation made of parts (an evacuation) runs them inside its own task: it gets the time
    limits of one operation per part (its parts may run one after another), so its limit never
    cuts the later parts off."""
    from django.conf import settings

    from provisioning.models import Operation

    parts = Operation.objects.filter(parent_id=uuid.UUID(str(operation_id))).count()
    if not parts:
        operation_run.delay(str(operation_id))
        return
    operation_run.apply_async(
        (str(operation_id),),
        soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT * parts,
        time_limit=settings.CELERY_TASK_TIME_LIMIT * parts,
    )


@shared_task(name="provisioning.tasks.operations_reap")
def operations_reap() -> list[str]:
    """End operations whose worker died and free their targets."""
    return operations.operations_reap()


@shared_task(name="provisioning.tasks.operations_requeue_pending")
def operations_requeue_pending() -> list[str]:
    """Re-enqueue pending operations whose broker message was lost."""
    return operations.operations_requeue_pending()


@shared_task(name="provisioning.tasks.instances_health_check", soft_time_limit=600)
def instances_health_check() -> int:
    """Poll /status of every running instance and keep the health history."""
    from provisioning.monitoring import instances_health_check as check

    return check()


@shared_task(name="provisioning.tasks.instances_drift_check", soft_time_limit=1200)
def instances_drift_check() -> int:
    """Compare what runs on the hosts with what the panel deployed."""
    from provisioning.monitoring import instances_drift_check as check

    return check()


@shared_task(name="provisioning.tasks.instances_purge_due")
def instances_purge_due() -> list[str]:
    """Start purge operations for deleted instances whose retention period is over."""
    from provisioning.services import instances_purge_due as purge

    return [str(op.id) for op in purge()]


# --- managed hosts --------------------------------------------------------------------------
# Beat runs host_health_sweep every few minutes; it enqueues one host_health per host, so one
# slow or unreachable host does not delay the others.


@shared_task(name="provisioning.host_tasks.host_health", soft_time_limit=300, time_limit=360)
def host_health(host_id: str) -> dict | None:
    """Check one host (reachable, Docker, disk) and record the result on it."""
    from provisioning.hosts import host_health_probe_by_id

    return host_health_probe_by_id(host_id)


@shared_task(name="provisioning.host_tasks.host_health_sweep", soft_time_limit=60, time_limit=90)
def host_health_sweep() -> list[str]:
    """Enqueue a health check for every trusted, not retired host."""
    from provisioning.hosts import hosts_due_for_health

    ids = [str(host.pk) for host in hosts_due_for_health()]
    for host_id in ids:
        host_health.delay(host_id)
    return ids
