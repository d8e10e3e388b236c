"""Celery tasks of the backups app: thin entry points of the beat schedule (no arguments)."""

from __future__ import annotations

from celery import shared_task

from backups import services


@shared_task(name="backups.tasks.evacuations_auto", soft_time_limit=120)
def evacuations_auto() -> list[str]:
    """Evacuate the failed hosts whose tiers' automatic delays passed (off by default)."""
    from backups import evacuate

    return evacuate.evacuations_auto()


@shared_task(name="backups.tasks.backups_dispatch", soft_time_limit=120)
def backups_dispatch() -> dict:
    """Start the scheduled backups that are due (caps, jitter, missed-schedule detection)."""
    return services.backups_dispatch()


@shared_task(name="backups.tasks.drills_dispatch", soft_time_limit=120)
def drills_dispatch() -> str | None:
    """Start the next restore drill when one is due."""
    return services.drills_dispatch()


@shared_task(name="backups.tasks.rpo_check", soft_time_limit=120)
def rpo_check() -> dict:
    """Alert on instances whose newest good backup is older than their tier's RPO."""
    return services.rpo_check()


@shared_task(name="backups.tasks.wal_check", soft_time_limit=240)
def wal_check() -> dict:
    """Read the WAL archives' state from the app hosts; alert staff on a broken one."""
    return services.wal_check()


@shared_task(name="backups.tasks.wal_bases_dispatch", soft_time_limit=120)
def wal_bases_dispatch() -> list[str]:
    """Start the scheduled base backups of archiving instances that are due."""
    return services.wal_bases_dispatch()


@shared_task(name="backups.tasks.catalogue_refresh", soft_time_limit=1800)
def catalogue_refresh() -> int:
    """Re-read the backup hosts into the catalogue (missing points, labels, strays)."""
    return services.catalogue_refresh_all()


@shared_task(name="backups.tasks.backups_purge_deleted", soft_time_limit=1800)
def backups_purge_deleted() -> list[str]:
    """Remove the backup points of deleted instances whose retention period is over."""
    return services.backups_purge_deleted()
