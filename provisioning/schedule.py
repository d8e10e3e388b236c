"""Periodic tasks of the provisioning app (merged into CELERY_BEAT_SCHEDULE by settings)."""

SCHEDULE = {
    "operations-reap": {"task": "provisioning.tasks.operations_reap", "schedule": 30.0},
    "operations-requeue-pending": {
        "task": "provisioning.tasks.operations_requeue_pending",
        "schedule": 60.0,
    },
    "instances-health": {"task": "provisioning.tasks.instances_health_check", "schedule": 60.0},
    "instances-drift": {"task": "provisioning.tasks.instances_drift_check", "schedule": 600.0},
    "instances-purge": {"task": "provisioning.tasks.instances_purge_due", "schedule": 3600.0},
    "hosts-health": {"task": "provisioning.host_tasks.host_health_sweep", "schedule": 300.0},
}
