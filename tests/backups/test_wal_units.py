"""Point-in-time recovery's pieces without the lab: what a base backup's label says, which
bases and WAL files retention drops, when an archive counts as broken, WAL lag in the RPO,
and the base backup schedule. (The same through the real parts: tests/backups/lab/
test_point_in_time.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from backups.models import BackupOperationKind, BaseBackup, WalArchive
from backups.selectors import rpo_state, wal_problem
from backups.services import drill_start, restore_to_time_start, rpo_check, wal_bases_dispatch
from backups.wal import base_start_segment, bases_to_prune, prune_floor, segment_before
from notifications.models import NotificationEvent
from panel.access import access_for_user
from panel.operations import OperationFailed
from provisioning.models import AtlassianInstance, Operation
from tests.backups.factories import make_point

# What pg_basebackup writes (PostgreSQL 15, --format=tar): backup_label inside base.tar.
LABEL = """START WAL LOCATION: 0/5000028 (file 00000002000000000000000A)
CHECKPOINT LOCATION: 0/5000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-12-02 10:00:00 UTC
LABEL: pg_basebackup base backup
START TIMELINE: 2
"""


def test_the_first_segment_a_replay_needs_comes_from_the_backup_label():
    assert base_start_segment(LABEL) == "00000002000000000000000A"
    with pytest.raises(OperationFailed, match="backup_label"):
        base_start_segment("CHECKPOINT LOCATION: 0/5000060\n")


@pytest.mark.parametrize(
    ("name", "before"),
    [
        ("000000010000000000000009", True),
        ("000000020000000000000009", True),  # another timeline, same positions
        ("00000001000000000000000A", False),  # the start itself stays
        ("00000003000000000000000B", False),
        ("000000010000000000000003.partial.1733130000000000000.gz", True),
        ("00000002000000000000000A.partial.1733130000000000000.gz", False),
        ("00000002.history", False),  # timeline history is kept whatever its number
        ("backup_label", False),
        ("00000001000000000000000g", False),  # not a segment name
    ],
)
def test_wal_files_before_the_oldest_kept_base_are_the_ones_dropped(name, before):
    assert segment_before(name, "00000002000000000000000A") is before


def _base(instance: AtlassianInstance, hours_ago: float, status: str = "succeeded") -> BaseBackup:
    finished = timezone.now() - timedelta(hours=hours_ago)
    host = instance.host
    assert host is not None and host.backup_host is not None
    return BaseBackup.objects.create(
        instance=instance,
        backup_host=host.backup_host,
        app_host=host,
        label=f"b{hours_ago}",
        status=status,
        started_at=finished - timedelta(minutes=1),
        finished_at=finished,
        start_wal="000000010000000000000001",
    )


def test_retention_keeps_the_base_that_covers_the_oldest_point_and_every_later_one(archiving):
    old, covering, newer, newest = (_base(archiving, h) for h in (72, 50, 20, 1))
    failed = _base(archiving, 30, status="failed")
    bases = [old, covering, newer, newest, failed]
    oldest_point = timezone.now() - timedelta(hours=48)
    assert {b.label for b in bases_to_prune(bases, oldest_point)} == {old.label, failed.label}
    # no point retained: only the newest base is needed
    assert {b.label for b in bases_to_prune(bases, None)} == {
        old.label,
        covering.label,
        newer.label,
        failed.label,
    }
    # a point older than every base: nothing but failures goes
    ancient = timezone.now() - timedelta(days=30)
    assert {b.label for b in bases_to_prune(bases, ancient)} == {failed.label}


def test_an_archive_is_broken_when_its_receiver_stops_its_shipper_fails_or_nothing_ships(
    archiving, settings
):
    settings.PANEL_WAL_BROKEN_AFTER = 300
    now = timezone.now()
    archive = WalArchive(
        instance=archiving,
        enabled_at=now - timedelta(hours=1),
        shipped_at=now - timedelta(seconds=10),
        checked_at=now,
        receiver_running=True,
    )
    assert wal_problem(archive, now) == ""
    archive.receiver_running = False
    assert "not running" in wal_problem(archive, now)
    archive.receiver_running = True
    archive.error = "rsync: connection unexpectedly closed"
    assert "connection unexpectedly closed" in wal_problem(archive, now)
    archive.error = ""
    archive.shipped_at = now - timedelta(minutes=7)
    assert wal_problem(archive, now) == "No WAL was shipped for 7 minutes."
    archive.shipped_at = None
    assert "since archiving was turned on 60 minutes ago" in wal_problem(archive, now)


def test_wal_lag_over_the_tiers_rpo_is_an_rpo_breach_even_with_fresh_points(archiving):
    make_point(archiving, taken_at=timezone.now() - timedelta(minutes=10))
    now = timezone.now()
    fresh = rpo_state(archiving, now - timedelta(minutes=10), wal_shipped=now - timedelta(hours=1))
    assert not fresh["breached"] and fresh["wal_age"] is not None
    AtlassianInstance.objects.filter(pk=archiving.pk).update(created_at=now - timedelta(days=2))
    WalArchive.objects.create(instance=archiving, shipped_at=now - timedelta(hours=9))
    # tier 2: RPO 8 hours; the point is 10 minutes old, the WAL 9 hours
    assert rpo_check()["breached"] == ["acme-jira"]
    event = NotificationEvent.objects.get(event="backup.rpo_breached")
    assert "last shipped 9.0 hours ago" in event.body
    WalArchive.objects.filter(instance=archiving).update(shipped_at=timezone.now())
    assert rpo_check()["recovered"] == ["acme-jira"]


def test_a_base_backup_is_scheduled_when_the_newest_is_older_than_the_interval(archiving, settings):
    settings.PANEL_WAL_BASE_INTERVAL_HOURS = 24
    _base(archiving, 2)
    assert wal_bases_dispatch() == []
    BaseBackup.objects.all().delete()
    _base(archiving, 30)
    assert wal_bases_dispatch() == ["acme-jira"]
    op = Operation.objects.get(kind=BackupOperationKind.WAL_BASE)
    assert op.instance_id == archiving.pk and op.requested_by_id is None
    assert wal_bases_dispatch() == []  # one at a time per instance (its lock)
    settings.PANEL_WAL_BASE_INTERVAL_HOURS = 0
    Operation.objects.all().delete()
    assert wal_bases_dispatch() == []  # off


def test_a_restore_to_a_time_into_a_new_instance_is_a_copy_of_the_point_before_it(archiving, sam):
    _base(archiving, 5)
    point = make_point(archiving, taken_at=timezone.now() - timedelta(hours=3))
    make_point(archiving, taken_at=timezone.now() - timedelta(minutes=30))
    WalArchive.objects.create(instance=archiving, shipped_at=timezone.now())
    target = (timezone.now() - timedelta(hours=2)).replace(microsecond=0)
    staff = access_for_user(sam)
    with pytest.raises(ValidationError) as unnamed:
        restore_to_time_start(
            actor=staff, instance=archiving, target_time=target, mode="new_instance"
        )
    assert set(unnamed.value.message_dict) == {"name", "hostname"}
    with pytest.raises(ValidationError) as bad_mode:
        restore_to_time_start(actor=staff, instance=archiving, target_time=target, mode="x")
    assert "mode" in bad_mode.value.message_dict

    op = restore_to_time_start(
        actor=staff,
        instance=archiving,
        target_time=target,
        mode="new_instance",
        name="acme-jira-copy",
        hostname="jira-copy.acme.example",
    )

    copy = AtlassianInstance.objects.get(name="acme-jira-copy")
    assert op.kind == BackupOperationKind.BACKUP_RESTORE and op.instance_id == copy.pk
    # the home comes from the newest point before the time, not the newest point
    assert op.params["backup"] == str(point.pk)
    assert op.params["target_time"] == target.isoformat()
    assert copy.copy_of == archiving and not copy.wal_archiving


def test_a_drill_of_an_archiving_instance_restores_a_random_second_of_its_window(archiving):
    _base(archiving, 5)
    first = make_point(archiving, taken_at=timezone.now() - timedelta(hours=4))
    make_point(archiving, taken_at=timezone.now() - timedelta(hours=1))
    WalArchive.objects.create(instance=archiving, shipped_at=timezone.now())
    targets = set()
    for _ in range(8):
        op = drill_start(actor=None, instance=archiving)
        target = datetime.fromisoformat(op.params["target_time"])
        assert first.taken_at <= target <= timezone.now()
        point = archiving.backups.get(pk=op.params["backup"])
        assert point.taken_at <= target  # the home from the newest point before it
        assert not archiving.backups.filter(taken_at__gt=point.taken_at, taken_at__lte=target)
        targets.add(target)
        Operation.objects.filter(pk=op.pk).update(status="succeeded")
    assert len(targets) > 1  # random, not always the same second


def test_the_times_a_restore_in_place_forked_away_cannot_be_chosen_and_drills_skip_them(
    archiving, sam
):
    _base(archiving, 5)
    make_point(archiving, taken_at=timezone.now() - timedelta(hours=4))
    now = timezone.now()
    fork, done = now - timedelta(hours=3), now - timedelta(hours=2)
    WalArchive.objects.create(
        instance=archiving, shipped_at=now, gaps=[[fork.isoformat(), done.isoformat()]]
    )
    inside = (fork + timedelta(minutes=30)).replace(microsecond=0)
    with pytest.raises(ValidationError) as refused:
        restore_to_time_start(
            actor=access_for_user(sam),
            instance=archiving,
            target_time=inside,
            confirm_name="acme-jira",
        )
    assert "cannot be restored" in refused.value.message_dict["target_time"][0]
    for _ in range(6):
        op = drill_start(actor=None, instance=archiving)
        target = datetime.fromisoformat(op.params["target_time"])
        assert not (fork < target <= done), target
        Operation.objects.filter(pk=op.pk).update(status="succeeded")


def test_a_stopped_instance_is_not_in_breach_for_its_wal_and_a_new_archive_counts_from_enable(
    archiving,
):
    now = timezone.now()
    AtlassianInstance.objects.filter(pk=archiving.pk).update(created_at=now - timedelta(days=9))
    archiving.refresh_from_db()
    enabled = now - timedelta(minutes=5)
    state = rpo_state(archiving, now, wal_shipped=None, wal_enabled=enabled)
    assert not state["wal_breached"]  # never shipped yet, but enabled 5 minutes ago
    late = rpo_state(archiving, now, wal_shipped=now - timedelta(hours=9))
    assert late["wal_breached"]
    archiving.status = "stopped"
    assert not rpo_state(archiving, now, wal_shipped=now - timedelta(hours=9))["wal_breached"]


def test_wal_is_kept_from_the_lowest_first_segment_of_any_kept_base_across_timelines():
    old_tl = BaseBackup(label="tl1", start_wal="000000010000000000000040")
    forked = BaseBackup(label="tl2", start_wal="000000020000000000000021")  # forked lower
    assert prune_floor([old_tl, forked]) is forked
    assert prune_floor([old_tl, BaseBackup(label="unknown", start_wal="")]) is None
    assert prune_floor([]) is None
