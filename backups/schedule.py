"""Periodic tasks of the backups app (merged into CELERY_BEAT_SCHEDULE by settings).

A small, stable set of rows: the dispatcher decides which instance is due, so adding an
instance or changing a policy never changes the beat schedule.
"""

SCHEDULE = {
    "backups-dispatch": {"task": "backups.tasks.backups_dispatch", "schedule": 60.0},
    "backups-drills": {"task": "backups.tasks.drills_dispatch", "schedule": 900.0},
    "backups-rpo-check": {"task": "backups.tasks.rpo_check", "schedule": 300.0},
    "backups-purge-deleted": {"task": "backups.tasks.backups_purge_deleted", "schedule": 3600.0},
    "backups-catalogue-refresh": {
        "task": "backups.tasks.catalogue_refresh",
        "schedule": 6 * 3600.0,
    },
}
