"""Helpers shared by the notification tests: run due deliveries as the worker would, and a
failed operation to notify about."""

from __future__ import annotations

from django.utils import timezone

from notifications.models import NotificationDelivery
from notifications.services import notification_deliver
from provisioning.models import AtlassianInstance, Operation


def deliver_all() -> list[str]:
    """Run every due delivery once, as the worker would."""
    due = (
        NotificationDelivery.objects.filter(
            status__in=["pending", "retrying"], next_attempt_at__lte=timezone.now()
        )
        .order_by("created_at")
        .values_list("id", flat=True)
    )
    return [notification_deliver(d) for d in list(due)]


def failed_operation(
    instance: AtlassianInstance,
    error: str = "The image panel-lab/jira-software:0.0.0 does not exist.",
) -> Operation:
    """An upgrade of ``instance`` that has just failed with ``error``."""
    return Operation.objects.create(
        kind="instance.upgrade",
        tenant=instance.tenant,
        instance=instance,
        status="failed",
        error=error,
        finished_at=timezone.now(),
    )
