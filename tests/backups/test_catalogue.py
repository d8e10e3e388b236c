"""The catalogue and retention trust the panel's records: a point committed while a refresh
was listing the backup host is not marked missing (L13); a directory on the backup host that
the panel did not write for the instance is neither imported nor weighed by retention."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.catalogue import catalogue_sync
from backups.models import Backup, BackupStatus
from backups.store import PointStore
from provisioning.models import AtlassianInstance
from tests.backups.factories import backup_host, make_point, with_backup_host

pytestmark = pytest.mark.django_db


class FakeBackupHost:
    """Answers point.json reads from a dict (the only thing catalogue_sync asks)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, path: str, missing_ok: bool = False) -> bytes | None:
        return self.files.get(path)


@pytest.fixture
def jira(acme_jira, app_host):
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    return acme_jira


def _store(jira) -> PointStore:
    return PointStore(jira.host.backup_host, jira.host.name, jira.name)


def test_a_point_committed_after_the_listing_is_not_marked_missing(jira):
    listed_at = timezone.now()
    old = make_point(jira, verified_at=listed_at - timedelta(hours=1))
    fresh = make_point(
        jira,
        taken_at=timezone.now() - timedelta(minutes=1),
        verified_at=listed_at + timedelta(seconds=1),
    )
    catalogue_sync(
        FakeBackupHost({}),
        instance=jira,
        store=_store(jira),
        present=[],
        labels={},
        pruned=[],
        listed_at=listed_at,
    )
    assert Backup.objects.get(pk=fresh.pk).status == BackupStatus.SUCCEEDED
    assert Backup.objects.get(pk=old.pk).status == BackupStatus.MISSING


def test_only_points_the_panel_wrote_for_this_instance_are_imported(jira):
    store = _store(jira)
    past, future, foreign, unnamed = (
        "20250101T000000Z",
        "20991231T235959Z",
        "20250102T000000Z",
        "20250103T000000Z",
    )
    mine = {"instance_id": str(jira.pk)}
    files = {
        f"{store.point(past)}/point.json": json.dumps({**mine, "point": past}).encode(),
        f"{store.point(future)}/point.json": json.dumps({**mine, "point": future}).encode(),
        f"{store.point(foreign)}/point.json": json.dumps(
            {"instance_id": "00000000-0000-0000-0000-000000000000", "point": foreign}
        ).encode(),
        f"{store.point(unnamed)}/point.json": b"{}",
    }
    catalogue_sync(
        FakeBackupHost(files),
        instance=jira,
        store=store,
        present=[past, future, foreign, unnamed],
        labels={},
        pruned=[],
    )
    assert list(Backup.objects.filter(instance=jira).values_list("point_name", flat=True)) == [past]
