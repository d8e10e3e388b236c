"""Celery tasks of the notifications app: a thin interface to delivery and scanning."""

from __future__ import annotations

from celery import shared_task

from notifications import scans, services


@shared_task(name="notifications.tasks.notification_deliver", acks_late=True, soft_time_limit=120)
def notification_deliver_task(delivery_id: str) -> str:
    """Try one notification delivery (email or webhook); a failure schedules its retry."""
    return services.notification_deliver(delivery_id)


@shared_task(name="notifications.tasks.notifications_retry_due")
def notifications_retry_due() -> list[str]:
    """Enqueue deliveries that are due again (retries whose message was lost, stuck sends)."""
    return services.notifications_retry_due()


@shared_task(name="notifications.tasks.notifications_scan", soft_time_limit=300)
def notifications_scan() -> dict[str, int]:
    """Notify about failed operations, expiring licenses, degraded instances, full disks."""
    return scans.notifications_scan()
