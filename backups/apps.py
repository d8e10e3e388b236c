"""The backups app: policies, backup points, restores and drills."""

from django.apps import AppConfig

# (name, task, seconds). A small, stable set: the dispatcher decides which instance is due, so
# adding an instance or changing a policy never changes the beat schedule.
PERIODIC_JOBS = (
    ("backups-dispatch", "backups.tasks.backups_dispatch", 60.0),
    ("backups-drills", "backups.tasks.drills_dispatch", 900.0),
    ("backups-rpo-check", "backups.tasks.rpo_check", 300.0),
    ("backups-wal-check", "backups.tasks.wal_check", 60.0),
    ("backups-wal-bases", "backups.tasks.wal_bases_dispatch", 300.0),
    ("backups-purge-deleted", "backups.tasks.backups_purge_deleted", 3600.0),
    ("backups-catalogue-refresh", "backups.tasks.catalogue_refresh", 6 * 3600.0),
    ("backups-evacuate-auto", "backups.tasks.evacuations_auto", 60.0),
)


class BackupsConfig(AppConfig):
    """Backup policies, retained backup points, restores and drills."""

    name = "backups"

    def ready(self) -> None:
        from backups import evacuate, operations, services  # noqa: F401 - evacuate: its kinds
        from panel.registry import (
            hook_register,
            notification_event_register,
            panel_register,
            periodic_job_register,
        )

        # A point before every upgrade (the upgrade fails if it cannot be taken), and a failed
        # upgrade rolled back by restoring it (never the old image on the upgraded database).
        hook_register("instance_hooks", "pre_upgrade", operations.backup_before_upgrade)
        hook_register("instance_hooks", "upgrade_failed", operations.restore_after_failed_upgrade)
        # A backup that ends frees its slot: the next due one of its backup host starts at once.
        hook_register("operation_listeners", "succeeded", services.backup_ended_dispatch)
        hook_register("operation_listeners", "failed", services.backup_ended_dispatch)
        # A restore in place that forked a new timeline: a base backup on it, right after.
        hook_register("operation_listeners", "succeeded", services.base_after_restore)
        # A new instance archives its WAL from the start (PANEL_WAL_ON_CREATE).
        hook_register("operation_listeners", "succeeded", services.wal_after_create)
        panel_register("dashboard_panels", "backups/_dashboard_backups.html")
        panel_register("instance_panels", "backups/_instance_backups.html")
        panel_register("host_panels", "backups/_host_evacuation.html")
        for name, task, seconds in PERIODIC_JOBS:
            periodic_job_register(name, task=task, seconds=seconds)
        for key, label, platform in services.NOTIFICATION_EVENTS:
            notification_event_register(key, label=label, platform=platform)
