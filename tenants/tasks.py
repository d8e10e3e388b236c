"""Celery tasks of the tenants app: a thin interface to notification delivery and scanning."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="tenants.tasks.notification_deliver", acks_late=True, soft_time_limit=120)
def notification_deliver_task(delivery_id: str) -> str:
    """Try one notification delivery (email or webhook); a failure schedules its retry."""
    from tenants.notifications import notification_deliver

    return notification_deliver(delivery_id)


@shared_task(name="tenants.tasks.notifications_retry_due")
def notifications_retry_due() -> list[str]:
    """Enqueue deliveries that are due again (retries whose message was lost, stuck sends)."""
    from tenants.notifications import notifications_retry_due as retry

    return retry()


@shared_task(name="tenants.tasks.notifications_scan", soft_time_limit=300)
def notifications_scan() -> dict[str, int]:
    """Notify about failed operations, expiring licenses, degraded instances, full disks."""
    from tenants.notifications import notifications_scan as scan

    return scan()
