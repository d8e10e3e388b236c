"""Points of a deleted instance stay on the backup host for PANEL_DELETED_RETENTION_DAYS and
are removed from it afterwards (lab backup host); other instances' points stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from backups.models import Backup, BackupStatus
from backups.services import backups_purge_deleted
from provisioning.models import AtlassianInstance
from tenants.models import AuditEvent
from tests.support.backup_lab import backup1

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


def _point(lab, instance: AtlassianInstance, name: str) -> Backup:
    area = lab.area(instance)
    backup1(
        "sh", "-c", f"mkdir -p {area}/points/{name}/home && echo x > {area}/points/{name}/db.dump"
    )
    return Backup.objects.create(
        instance=instance,
        backup_host=lab.backup_host,
        app_host=lab.app_host,
        kind="scheduled",
        mode="hot",
        status=BackupStatus.SUCCEEDED,
        point_name=name,
        taken_at=timezone.now() - timedelta(days=40),
    )


def test_points_of_a_deleted_instance_go_when_its_retention_ends(lab, settings):
    settings.PANEL_DELETED_RETENTION_DAYS = 30
    gone = AtlassianInstance.objects.create(
        tenant=lab.tenant,
        name=f"b{lab.suffix}-gone",
        product="jira-software",
        version="9.12.0",
        hostname=f"b{lab.suffix}-gone.lab.example",
        host=lab.app_host,
        status="deleted",
        deleted_at=timezone.now() - timedelta(days=31),
        tier="tier3",
        db_name="gone",
        db_user="gone",
        db_password="gone-password",
    )
    recent = AtlassianInstance.objects.create(
        tenant=lab.tenant,
        name=f"b{lab.suffix}-recent",
        product="jira-software",
        version="9.12.0",
        hostname=f"b{lab.suffix}-recent.lab.example",
        host=lab.app_host,
        status="deleted",
        deleted_at=timezone.now() - timedelta(days=5),
        tier="tier3",
        db_name="recent",
        db_user="recent",
        db_password="recent-password",
    )
    lab.extra_projects += [gone.name, recent.name]
    old = _point(lab, gone, "20250101T000000Z")
    kept = _point(lab, recent, "20250101T000000Z")
    live = _point(lab, lab.instance, "20200101T000000Z")
    try:
        assert backups_purge_deleted() == [gone.name]
        assert lab.points_on_disk(gone) == []
        assert (
            backup1("sh", "-c", f"test -e {lab.area(gone)} && echo yes || echo no").strip() == "no"
        )
        assert lab.points_on_disk(recent) == ["20250101T000000Z"]
        assert "20200101T000000Z" in lab.points_on_disk()
        old.refresh_from_db()
        kept.refresh_from_db()
        assert old.status == BackupStatus.EXPIRED and old.pruned_at is not None
        assert kept.status == BackupStatus.SUCCEEDED
        assert Backup.objects.get(pk=live.pk).status == BackupStatus.SUCCEEDED
        assert AuditEvent.objects.filter(
            action="backup.purge_deleted", target_id=str(gone.pk)
        ).exists()
        assert backups_purge_deleted() == []  # nothing left to do
    finally:
        backup1("rm", "-rf", f"{lab.area()}/points/20200101T000000Z")
