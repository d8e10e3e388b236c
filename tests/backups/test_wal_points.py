"""Points of the WAL archive without the lab: when a point carries no dump, and what a restore
of one refuses before it starts. (Through the real parts: tests/backups/lab/
test_point_in_time.py, test_points_of_the_archive_carry_no_dump_and_restore_to_their_second.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from backups.catalogue import _database_of
from backups.models import BaseBackup, PointDatabase, WalArchive
from backups.services import restore_start
from backups.wal import point_database
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Host
from tests.backups.factories import make_point

pytestmark = pytest.mark.django_db


@pytest.fixture
def healthy(archiving: AtlassianInstance) -> AtlassianInstance:
    """The archiving instance with a base backup an hour old and a running receiver."""
    instance, host = archiving, archiving.host
    assert host is not None and host.backup_host is not None
    BaseBackup.objects.create(
        instance=instance,
        backup_host=host.backup_host,
        app_host=host,
        label="base-1",
        status=BaseBackup.Status.SUCCEEDED,
        started_at=timezone.now() - timedelta(hours=2),
        finished_at=timezone.now() - timedelta(hours=1),
        start_wal="000000010000000000000001",
    )
    WalArchive.objects.create(instance=instance, receiver_running=True, shipped_at=timezone.now())
    return instance


def _choice(instance, **overrides):
    args = {
        "kind": "scheduled",
        "taken_at": timezone.now(),
        "offsite": False,
        "db_running": True,
        **overrides,
    }
    return point_database(instance, **args)


def test_a_scheduled_or_extra_point_of_a_healthy_archive_carries_no_dump(healthy):
    database, why = _choice(healthy)
    assert database == PointDatabase.WAL and "base backup base-1" in why
    assert _choice(healthy, kind="manual")[0] == PointDatabase.WAL


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"kind": "pre_upgrade"}, "before an upgrade points keep one"),
        ({"kind": "safety"}, "points keep one"),
        ({"offsite": True}, "off-site copy carries the dump"),
        ({"db_running": False}, "database is stopped"),
        # the only base finished after the point: its replay could not start before it
        ({"taken_at": timezone.now() - timedelta(hours=3)}, "no base backup"),
    ],
)
def test_points_keep_their_dump_where_the_archive_cannot_serve(healthy, overrides, words):
    database, why = _choice(healthy, **overrides)
    assert database == PointDatabase.DUMP and why.startswith("pg_dump") and words in why


def test_a_broken_archive_or_a_fork_after_the_base_means_a_dump(healthy, settings):
    WalArchive.objects.filter(instance=healthy).update(error="rsync: connection refused")
    assert "connection refused" in _choice(healthy)[1]
    WalArchive.objects.filter(instance=healthy).update(error="", receiver_running=False)
    assert "receiver is not running" in _choice(healthy)[1]
    # restored to a time after the base: the base is on the timeline left behind
    forked = timezone.now() - timedelta(minutes=10)
    WalArchive.objects.filter(instance=healthy).update(
        receiver_running=True,
        gaps=[[(forked - timedelta(minutes=5)).isoformat(), forked.isoformat()]],
    )
    assert _choice(healthy) == (
        PointDatabase.DUMP,
        "pg_dump (no base backup on the current timeline before it)",
    )
    WalArchive.objects.filter(instance=healthy).update(gaps=[])
    settings.PANEL_BACKUP_WAL_POINTS = False
    assert "PANEL_BACKUP_WAL_POINTS is off" in _choice(healthy)[1]
    AtlassianInstance.objects.filter(pk=healthy.pk).update(wal_archiving=False)
    healthy.refresh_from_db()
    assert _choice(healthy) == (PointDatabase.DUMP, "pg_dump")


def test_a_point_of_the_archive_past_a_fork_or_from_another_host_is_refused(healthy, sam):
    staff = access_for_user(sam)
    at = timezone.now() - timedelta(minutes=30)
    point = make_point(
        healthy, taken_at=at, database=PointDatabase.WAL, database_at=at, dump_bytes=None
    )
    WalArchive.objects.filter(instance=healthy).update(
        gaps=[[(at - timedelta(minutes=1)).isoformat(), timezone.now().isoformat()]]
    )
    with pytest.raises(ValidationError) as refused:
        restore_start(actor=staff, backup=point, mode="in_place", confirm_name=healthy.name)
    assert "left the timeline it is on" in str(refused.value)
    WalArchive.objects.filter(instance=healthy).update(gaps=[])
    other = Host.objects.create(
        name="app-other", role=Host.Role.APP, address="127.0.0.31", status=Host.Status.READY
    )
    point.app_host = other
    point.save(update_fields=["app_host"])
    with pytest.raises(ValidationError) as elsewhere:
        restore_start(actor=staff, backup=point, mode="in_place", confirm_name=healthy.name)
    assert "restore it into a new instance" in str(elsewhere.value)


def test_an_imported_point_json_says_where_its_database_is():
    assert _database_of({}) == {"database": PointDatabase.DUMP}
    assert _database_of({"database": "wal", "database_at": "garbage"}) == {
        "database": PointDatabase.DUMP
    }
    found = _database_of({"database": "wal", "database_at": "2026-12-07T10:00:01+00:00"})
    assert found["database"] == PointDatabase.WAL and found["database_at"].second == 1


def test_a_restore_that_forked_a_timeline_is_followed_by_a_base_backup_once(healthy, no_broker):
    from backups.services import base_after_restore
    from provisioning.models import Operation

    plain = Operation.objects.create(
        kind="backup.restore", instance=healthy, status="succeeded", result={"health": "RUNNING"}
    )
    assert base_after_restore(plain) is None
    forked = Operation.objects.create(
        kind="backup.restore_time",
        instance=healthy,
        status="succeeded",
        result={"new_timeline": True},
    )
    started = base_after_restore(forked)
    base = Operation.objects.get(pk=started)
    assert base.kind == "backup.wal_base" and base.instance == healthy
    assert base.requested_by is None  # the panel itself
    # Another operation holds the instance (here: that base, not run yet): no second one, and
    # the listener does not raise (the daily base takes one later).
    assert base_after_restore(forked) is None
    assert Operation.objects.filter(kind="backup.wal_base").count() == 1


def test_a_created_instance_gets_its_wal_archived_when_the_setting_says_so(
    acme, app_host, settings, no_broker
):
    from backups.services import wal_after_create
    from provisioning.models import Operation
    from tests.backups.factories import backup_host, with_backup_host
    from tests.support.factories import make_instance

    host = with_backup_host(app_host, backup_host())
    instance = make_instance(acme, "acme-new", host=host)
    created = Operation.objects.create(
        kind="instance.create", instance=instance, status="succeeded"
    )
    settings.PANEL_WAL_ON_CREATE = False
    assert wal_after_create(created) is None
    settings.PANEL_WAL_ON_CREATE = True
    other = Operation.objects.create(kind="instance.upgrade", instance=instance, status="succeeded")
    assert wal_after_create(other) is None
    enable = Operation.objects.get(pk=wal_after_create(created))
    assert enable.kind == "backup.wal_enable" and enable.requested_by is None
    # without a backup host there is nowhere to archive to: nothing starts, nothing raises
    lone = make_instance(acme, "acme-lone", host=None)
    alone = Operation.objects.create(kind="instance.create", instance=lone, status="succeeded")
    assert wal_after_create(alone) is None


def test_waiting_for_a_commit_kicks_the_shipper_only_once_a_pass_would_count(monkeypatch):
    """A pass that begins before the commit's moment + the clock margin does not count, and
    would take the kick: the wait asks for a pass only after that, then again at each read."""
    from types import SimpleNamespace

    from backups import wal

    marked = timezone.now()
    counted = marked + timedelta(seconds=wal.SHIP_CLOCK_MARGIN)
    kicks = []
    reads = iter([marked, marked, None])  # two early passes, then one the kick started

    def state(conn, instance):
        shipped = next(reads)
        return SimpleNamespace(shipped_at=shipped or timezone.now(), error="")

    class Conn:
        def run(self, argv, **kwargs):
            assert argv[0] == "touch" and argv[1].endswith(wal.SHIP_KICK)
            kicks.append(timezone.now())

    monkeypatch.setattr(wal, "wal_state_read", state)
    ctx = SimpleNamespace(check_cancelled=lambda: None)
    instance = AtlassianInstance(name="acme-jira", host=Host(name="app", data_root="/srv"))
    archive = wal.wal_shipped_wait(ctx, Conn(), instance, marked)
    assert archive.shipped_at > counted
    assert len(kicks) == 2 and all(k >= counted for k in kicks)
