"""Periodic tasks of the tenants app (merged into CELERY_BEAT_SCHEDULE by settings)."""

SCHEDULE = {
    "notifications-scan": {"task": "tenants.tasks.notifications_scan", "schedule": 60.0},
    "notifications-retry-due": {
        "task": "tenants.tasks.notifications_retry_due",
        "schedule": 30.0,
    },
}
