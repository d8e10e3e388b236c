"""Rows for the backup tests that need no lab (catalogue entries, hosts)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from backups.catalogue import instances_backup_state_refresh
from backups.models import Backup
from backups.retention import point_name
from provisioning.models import AtlassianInstance, Host


def backup_host(name: str = "backup-one") -> Host:
    return Host.objects.create(
        name=name,
        role=Host.Role.BACKUP,
        address="127.0.0.21",
        ssh_port=2222,
        data_root="/srv/backup",
        status=Host.Status.READY,
    )


def with_backup_host(app: Host, backup: Host) -> Host:
    Host.objects.filter(pk=app.pk).update(backup_host=backup)
    app.refresh_from_db()
    return app


def make_point(
    instance: AtlassianInstance, *, taken_at: datetime | None = None, **fields: Any
) -> Backup:
    taken_at = (taken_at or timezone.now() - timedelta(hours=1)).replace(microsecond=0)
    defaults: dict[str, Any] = {
        "status": "succeeded",
        "kind": "scheduled",
        "mode": "hot",
        "point_name": point_name(taken_at, kind=fields.get("kind", "scheduled")),
        "taken_at": taken_at,
        "logical_bytes": 1000,
        "disk_bytes": 100,
        "file_count": 3,
        "dump_bytes": 200,
        "label": "daily.0",
        "backup_host": instance.host.backup_host if instance.host else None,
        "app_host": instance.host,
        "product": instance.product,
        "version": instance.version,
    }
    defaults.update(fields)
    point = Backup.objects.create(instance=instance, **defaults)
    # As the panel's own writers do (backups.catalogue): the materialised summary follows.
    instances_backup_state_refresh(instance_ids=[instance.pk])
    return point
