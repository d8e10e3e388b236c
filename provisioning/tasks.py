"""Celery tasks: a thin interface to the operation runner (they take only primary keys)."""

from __future__ import annotations

from celery import shared_task

from panel import operations


@shared_task(name="provisioning.tasks.operation_run", acks_late=True)
def operation_run(operation_id: str) -> str:
    """Claim and run one operation (a duplicate delivery finds nothing to claim)."""
    return operations.operation_execute(operation_id)


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
