"""The notifications app: on top of every other; it tells people what the apps below raise."""

from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Preferences, the fan-out of notices by email and webhook, the delivery queue, scanners."""

    name = "notifications"

    def ready(self) -> None:
        from notifications import scans, services
        from panel.registry import (
            hook_register,
            notification_event_register,
            periodic_job_register,
            registry,
        )

        # The events this app raises itself (from its scanners and the runner's listener);
        # the other apps declare theirs in their own ready().
        for key, label, platform in (
            (services.OPERATION_FAILED, "An operation failed", False),
            (services.CERTIFICATE_EXPIRING, "A certificate expires soon", False),
            (scans.LICENSE_EXPIRING, "A license expires soon", False),
            (scans.INSTANCE_DEGRADED, "An instance is degraded", False),
            (services.HOST_DISK_FULL, "A host's disk is nearly full (staff)", True),
            ("test", "Test notification", False),
        ):
            notification_event_register(key, label=label, platform=platform)
        # Lists, and ready() may run more than once (tests): add each callable once.
        if services.notice_sink not in registry["notification_sinks"]:
            registry["notification_sinks"].append(services.notice_sink)
        for scan in scans.SCANS:
            if scan not in registry["notification_scans"]:
                registry["notification_scans"].append(scan)
        hook_register("operation_listeners", "failed", scans.notify_operation_failed)
        periodic_job_register(
            "notifications-scan", task="notifications.tasks.notifications_scan", seconds=60.0
        )
        periodic_job_register(
            "notifications-retry-due",
            task="notifications.tasks.notifications_retry_due",
            seconds=30.0,
        )
