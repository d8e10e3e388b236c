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
