"""Point-in-time recovery on the lab: real PostgreSQL streaming its WAL with pg_receivewal, the
app host's shipper (cron) pushing it to the backup host through the restricted key, a real
base backup, and a restore in place to a chosen second, checked by the rows."""

from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from backups import operations as backup_operations
from backups import services as backup_services
from backups.models import Backup, BaseBackup, RestoreDrill, WalArchive
from backups.selectors import recovery_state
from backups.services import (
    WAL_BROKEN,
    backup_start,
    drill_start,
    restore_start,
    restore_to_time_start,
    wal_base_start,
    wal_bases_dispatch,
    wal_check,
    wal_enable_start,
)
from backups.wal import segment_before
from notifications.models import NotificationEvent
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Host, Operation
from tests.support.backup_lab import (
    LabWorld,
    backup1,
    create_instance,
    sh,
    wait_ok,
    wal_shipped_after,
)
from tests.support.lab import step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


@pytest.fixture(scope="module")
def pitr(lab: LabWorld, django_db_blocker: Any) -> AtlassianInstance:
    """An instance of its own (the package's shared one keeps plain points), with its WAL
    archived from its creation on, as in production (PANEL_WAL_ON_CREATE; the test settings
    turn it off for the other tests' instances): its create operation's end starts the
    operation that turns archiving on."""
    name = f"p{lab.suffix}-jira"
    lab.extra_projects.append(name)
    with django_db_blocker.unblock(), override_settings(PANEL_WAL_ON_CREATE=True):
        instance = create_instance(access_for_user(lab.platform), lab.tenant, lab.app_host, name)
        enable = Operation.objects.get(instance=instance, kind="backup.wal_enable")
        assert enable.requested_by is None  # the panel's own
        op = wait_ok(enable)
        assert op.result["base_backup"]
        instance.refresh_from_db()
        assert instance.wal_archiving
        # Once on, staff asking again are told so.
        with pytest.raises(ValidationError, match="archives its WAL already"):
            wal_enable_start(actor=access_for_user(lab.support), instance=instance)
        # A home point after the first base opens the window. (Each test's own rows are rolled
        # back after it, while what it did on the hosts stays: the module's rows are made here.)
        wait_ok(backup_start(actor=access_for_user(lab.admin), instance=instance))
        instance.refresh_from_db()
        return instance


def _wal_dirs(lab: LabWorld, instance: AtlassianInstance) -> tuple[str, str]:
    """The instance's archived segments and compressed partial segments on the backup host."""
    root = f"{lab.backup_host.data_root}/wal-incoming/{lab.app_host.name}"
    return f"{root}/wal/{instance.name}", f"{root}/wal-partial/{instance.name}"


def _titles(lab: LabWorld, instance: AtlassianInstance) -> list[str]:
    return sorted(lab.titles(instance))


def test_wal_streams_to_the_backup_host_and_a_base_backup_is_there(lab, pitr):
    assert pitr.wal_archiving
    running = sh(
        "docker", "ps", "--filter", f"label=panel.instance-id={pitr.pk}", "--format", "{{.Labels}}"
    )
    assert "panel.role=wal" in running, running
    base = BaseBackup.objects.get(instance=pitr)
    assert base.status == BaseBackup.Status.SUCCEEDED and base.size_bytes > 0
    area = lab.area(pitr)
    assert backup1("sh", "-c", f"test -s {area}/wal-base/{base.label}/base.tar.gz && echo yes") == (
        "yes\n"
    )
    # The receiver streams: a commit on the database reaches the backup host as WAL within
    # seconds, in the segment being written (compressed, under a name of its own).
    before = timezone.now()
    lab.api("items", {"title": "streamed"}, instance=pitr)
    wal_shipped_after(pitr, before)
    wal, partial = _wal_dirs(lab, pitr)
    partials = backup1("sh", "-c", f"ls -1 {partial}").split()
    assert partials and all(p.endswith(".gz") and ".partial." in p for p in partials)
    assert backup1("sh", "-c", f"ls -1 {wal} | wc -l").strip().isdigit()
    # The WAL has its own area, apart from the incoming points (whose rrsync lock it skips).
    points_push = f"{lab.backup_host.data_root}/incoming/{lab.app_host.name}/{pitr.name}"
    assert backup1("sh", "-c", f"ls -1 {points_push}/wal 2>&1 || true").count("No such") == 1


def test_a_restore_to_a_second_brings_the_rows_of_that_second_and_not_later(lab, pitr):
    staff = access_for_user(lab.support)
    wait_ok(backup_start(actor=access_for_user(lab.admin), instance=pitr))
    lab.api("items", {"title": "kept-1"}, instance=pitr)
    lab.api("items", {"title": "kept-2"}, instance=pitr)
    time.sleep(2)
    target = timezone.now().replace(microsecond=0)
    time.sleep(2)
    lab.api("items", {"title": "after-target"}, instance=pitr)
    lab.psql("DELETE FROM standin_item WHERE title = 'kept-1'", instance=pitr)
    assert "after-target" in _titles(lab, pitr) and "kept-1" not in _titles(lab, pitr)
    bases_before = BaseBackup.objects.filter(instance=pitr).count()

    op = wait_ok(
        restore_to_time_start(
            actor=staff, instance=pitr, target_time=target, confirm_name=pitr.name
        )
    )

    titles = _titles(lab, pitr)
    assert "kept-1" in titles and "kept-2" in titles and "streamed" in titles
    assert "after-target" not in titles
    assert op.result["target_time"] == target.isoformat()
    assert (
        op.result["home_point"]
        == Backup.objects.filter(instance=pitr).latest("taken_at").point_name
    )
    # a new timeline began: a base backup on it follows as its own operation (the restore
    # ended when the instance answered), and the receiver streams again
    assert BaseBackup.objects.filter(instance=pitr).count() == bases_before
    assert op.result["new_timeline"] is True
    base_op = Operation.objects.get(
        instance=pitr, kind="backup.wal_base", created_at__gte=op.finished_at
    )
    wait_ok(base_op)
    assert BaseBackup.objects.filter(instance=pitr).count() == bases_before + 1
    pitr.refresh_from_db()
    assert pitr.status == "running"
    moment = timezone.now()
    lab.api("items", {"title": "after-restore"}, instance=pitr)
    wal_shipped_after(pitr, moment)
    archive = WalArchive.objects.get(instance=pitr)
    assert archive.error == ""
    state = recovery_state(pitr)
    assert state["wal_archiving"] and state["window_start"] is not None
    # nothing of the restore is left on the app host
    left = sh("sh", "-c", f"ls -1a {lab.instance_dir(pitr)}")
    assert "pre-restore" not in left and "pitr" not in left.split()


def test_a_time_outside_the_window_is_refused_before_anything_starts(lab, pitr):
    staff = access_for_user(lab.support)
    with pytest.raises(ValidationError) as refused:
        restore_to_time_start(
            actor=staff,
            instance=pitr,
            target_time=timezone.now() - timedelta(days=30),
            confirm_name=pitr.name,
        )
    assert "recoverable window" in str(refused.value)
    with pytest.raises(ValidationError) as unconfirmed:
        restore_to_time_start(actor=staff, instance=pitr, target_time=timezone.now())
    assert "confirm" in str(unconfirmed.value)


def _wal_container(instance: AtlassianInstance, *, all_states: bool = False) -> str:
    return sh(
        "docker",
        "ps",
        "-q",
        *(["--all"] if all_states else []),
        "--filter",
        f"label=panel.instance-id={instance.pk}",
        "--filter",
        "label=panel.role=wal",
    ).strip()


def test_the_periodic_check_alerts_staff_when_the_receiver_stops_and_clears_when_it_runs(lab, pitr):
    assert wal_check()["broken"] == []
    archive = WalArchive.objects.get(instance=pitr)
    assert archive.receiver_running and archive.checked_at is not None
    assert archive.alerted_at is None
    container = _wal_container(pitr)
    sh("docker", "stop", container)
    try:
        assert wal_check()["broken"] == [pitr.name]
        event = NotificationEvent.objects.get(event=WAL_BROKEN, resolved_at__isnull=True)
        assert "pg_receivewal" in event.body and event.tenant_id is None  # staff, not customer
        assert wal_check()["broken"] == []  # told once
    finally:
        sh("docker", "start", container)
    moment = timezone.now()
    lab.api("items", {"title": "after-receiver-restart"}, instance=pitr)
    wal_shipped_after(pitr, moment)
    assert wal_check()["recovered"] == [pitr.name]
    assert NotificationEvent.objects.get(event=WAL_BROKEN).resolved_at is not None


@pytest.fixture(scope="module")
def app2(lab: LabWorld, django_db_blocker: Any) -> Host:
    """The lab's second app host (enrolled once for the package; see LabWorld.app2_host)."""
    with django_db_blocker.unblock():
        return lab.app2_host()


def test_a_restore_to_a_second_into_a_new_instance_on_another_app_host(lab, pitr, app2):
    staff = access_for_user(lab.support)
    lab.api("items", {"title": "copy-before"}, instance=pitr)
    time.sleep(2)
    target = timezone.now().replace(microsecond=0)
    time.sleep(2)
    lab.api("items", {"title": "copy-after"}, instance=pitr)
    name = f"t{lab.suffix}-jira"
    lab.extra_projects.append(name)

    op = wait_ok(
        restore_to_time_start(
            actor=staff,
            instance=pitr,
            target_time=target,
            mode="new_instance",
            name=name,
            hostname=f"{name}.staging.example",
            host=app2,
        )
    )

    copy = AtlassianInstance.objects.get(name=name)
    assert copy.host == app2 and copy.copy_of == pitr and copy.status == "running"
    assert op.kind == "backup.restore" and op.params["target_time"] == target.isoformat()
    # The app reads the copy's database with the copy's own user and password (its home's
    # config was pointed there): the rows of that second, not later ones.
    titles = sorted(lab.titles(copy))
    assert "copy-before" in titles and "copy-after" not in titles
    assert "copy-after" in _titles(lab, pitr)  # the source is untouched
    roles = lab.psql("SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolcanlogin", copy)
    assert roles.strip() == copy.db_user  # the source's role renamed, the helper role gone
    assert lab.psql("SELECT current_database()", copy).strip() == copy.db_name
    text = step_text(op)
    assert "replayed to" in text and copy.db_password not in text


def test_a_drill_restores_a_random_second_of_the_window_into_a_scratch_copy(lab, pitr, monkeypatch):
    lab.api("items", {"title": "drill-before"}, instance=pitr)
    time.sleep(2)
    target = timezone.now().replace(microsecond=0)
    time.sleep(2)
    lab.api("items", {"title": "drill-after"}, instance=pitr)
    wal_shipped_after(pitr, timezone.now())
    wal_check()  # what the periodic check keeps current: the window's end
    window = recovery_state(pitr)
    assert window["window_start"] is not None
    # The drill's "random" second, made the one between the two rows (random.randint is what
    # drill_start draws the offset from the window's start with).
    offset = math.ceil((target - window["window_start"]).total_seconds())
    monkeypatch.setattr(backup_services.random, "randint", lambda a, b: offset)
    seen = {}  # scratch name -> its titles
    remove = backup_operations.scratch_remove

    def read_then_remove(ctx: Any, scratch: AtlassianInstance) -> bool:
        try:
            seen[scratch.name] = sorted(lab.titles(scratch))
        except AssertionError:  # no running copy: the drill's own failure says why
            seen[scratch.name] = []
        return remove(ctx, scratch)

    monkeypatch.setattr(backup_operations, "scratch_remove", read_then_remove)

    op = wait_ok(drill_start(actor=access_for_user(lab.support), instance=pitr))

    drill = RestoreDrill.objects.get(operation=op)
    assert drill.status == RestoreDrill.Status.PASSED and drill.cleaned_up
    assert op.result["target_time"] == target.isoformat()
    titles = seen[drill.scratch_name]
    assert "drill-before" in titles and "drill-after" not in titles
    assert "Drill to a random second of the window" in step_text(op)


def test_points_of_the_archive_carry_no_dump_and_restore_to_their_second(lab, pitr, app2):
    """A point of an archiving instance holds only the home; its database is the archive
    replayed to the point's second, into a new instance on another host (hot point) and in
    place (cold point, the database running on while the app is stopped)."""
    admin, staff = access_for_user(lab.admin), access_for_user(lab.support)
    lab.api("items", {"title": "wp-before"}, instance=pitr)
    op = wait_ok(backup_start(actor=admin, instance=pitr, mode="hot"))
    lab.api("items", {"title": "wp-after"}, instance=pitr)
    point = Backup.objects.get(pk=op.result["backup"])
    assert point.database == "wal" and point.dump_bytes is None and op.result["dump_bytes"] is None
    assert point.database_at is not None and point.database_at >= point.taken_at
    text = step_text(op)
    assert "no dump: the archived WAL from base backup" in text
    assert "the point's database is on the backup host" in text
    directory = f"{lab.area(pitr)}/points/{point.point_name}"
    assert backup1("sh", "-c", f"ls -1 {directory}").split() == [
        "home",
        "manifest.sha256",
        "manifest.stat",
        "point.json",
    ]
    info = json.loads(backup1("cat", f"{directory}/point.json"))
    assert info["database"] == "wal" and info["database_at"] == point.database_at.isoformat()

    copy_op, copy = lab.point_copy(point, f"w{lab.suffix}-jira", host=app2)
    titles = sorted(lab.titles(copy))
    assert "wp-before" in titles and "wp-after" not in titles
    assert "replayed to" in step_text(copy_op)

    cold_op = wait_ok(backup_start(actor=admin, instance=pitr, mode="cold"))
    cold = Backup.objects.get(pk=cold_op.result["backup"])
    assert cold.database == "wal" and cold.downtime_seconds is not None
    cold_text = step_text(cold_op)
    assert "the database runs on" in cold_text and "Froze the home in its staging copy" in cold_text
    # the app started again before the push: the frozen copy went to the backup host after
    assert cold_text.index(f"Started {pitr.name} again") < cold_text.index("Pushed home to")
    staged = sh("sh", "-c", f"ls -1 {lab.instance_dir(pitr)}/point-staging/home | wc -l")
    assert int(staged) > 0
    assert cold.dump_bytes is None
    lab.api("items", {"title": "after-cold"}, instance=pitr)
    lab.psql("DELETE FROM standin_item WHERE title = 'wp-before'", instance=pitr)

    restore = wait_ok(
        restore_start(actor=staff, backup=cold, mode="in_place", confirm_name=pitr.name)
    )
    titles = _titles(lab, pitr)
    assert "wp-before" in titles and "wp-after" in titles and "after-cold" not in titles
    assert restore.result["health"] == "RUNNING" and restore.result["new_timeline"] is True
    assert Operation.objects.filter(
        instance=pitr, kind="backup.wal_base", created_at__gte=restore.finished_at
    ).exists()
    assert f"the point's second {cold.database_at:%Y-%m-%d %H:%M:%S} UTC" in step_text(restore)
    pitr.refresh_from_db()
    assert pitr.status == "running"
    archive = WalArchive.objects.get(instance=pitr)
    assert archive.gaps and archive.gaps[-1][0] == cold.database_at.isoformat()


def test_wal_ships_while_a_push_of_the_same_app_host_holds_rrsyncs_lock(lab, pitr):
    # A long home push holds rrsync's lock on the app host's incoming area (the panel's commit
    # takes the same lock); the WAL goes to its own area without that lock, so it still ships.
    incoming = f"{lab.backup_host.data_root}/incoming/{lab.app_host.name}"
    sh("docker", "exec", "-d", "panel-lab-backup1", "flock", "--exclusive", incoming, "sleep", "40")
    time.sleep(1)
    held = backup1("sh", "-c", f"flock --nonblock {incoming} true && echo free || echo held")
    assert held.strip() == "held"
    moment = timezone.now()
    lab.api("items", {"title": "during-a-long-push"}, instance=pitr)
    wal_shipped_after(pitr, moment, timeout=30)
    wal_check()
    assert WalArchive.objects.get(instance=pitr).error == ""


# Last in the module: it removes the module's first base backup from the backup host, while
# the row (made by the module fixture) comes back when the test's transaction is rolled back.
def test_a_scheduled_base_backup_drops_what_no_retained_point_needs_and_restores_still_work(
    lab, pitr, settings
):
    staff = access_for_user(lab.support)
    admin = access_for_user(lab.admin)
    # Completed segments: each pg_switch_wal ends one, the receiver writes it whole and the
    # shipper moves it to the backup host.
    for n in range(3):
        lab.api("items", {"title": f"segment-{n}"}, instance=pitr)
        lab.psql("SELECT pg_switch_wal()", instance=pitr)
    # A base after the module's point: retention keeps the older base, which covers the point.
    middle_op = wait_ok(wal_base_start(actor=staff, instance=pitr))
    assert middle_op.result["bases_removed"] == 0
    middle = BaseBackup.objects.get(instance=pitr, label=middle_op.result["base_backup"])
    time.sleep(1.1)  # a point's time is to the second: let it fall after the base's end
    wait_ok(backup_start(actor=admin, instance=pitr))
    newest_point = Backup.objects.filter(instance=pitr).latest("taken_at")
    lab.api("items", {"title": "after-the-point"}, instance=pitr)
    time.sleep(2)
    target = timezone.now().replace(microsecond=0)
    time.sleep(2)
    lab.api("items", {"title": "after-the-target"}, instance=pitr)
    # Retention of the home points (tested elsewhere) has dropped the older point: the
    # catalogue keeps only the newest, so the archive must reach back to it and no further.
    Backup.objects.filter(instance=pitr).exclude(pk=newest_point.pk).delete()
    doomed = list(BaseBackup.objects.filter(instance=pitr, finished_at__lt=middle.finished_at))
    assert doomed and middle.start_wal
    wal, partial = _wal_dirs(lab, pitr)
    before = backup1("sh", "-c", f"ls -1 {wal}").split()
    assert any(segment_before(n, middle.start_wal) for n in before), before

    settings.PANEL_WAL_BASE_INTERVAL_HOURS = 0.0001  # every base is "old": one is due now
    assert wal_bases_dispatch() == [pitr.name]
    op = wait_ok(
        Operation.objects.filter(instance=pitr, kind="backup.wal_base").latest("created_at")
    )

    assert op.result["bases_removed"] == len(doomed) and op.result["wal_removed"] > 0
    left = backup1("sh", "-c", f"ls -1 {lab.area(pitr)}/wal-base").split()
    assert all(b.label not in left for b in doomed) and middle.label in left
    after = backup1("sh", "-c", f"ls -1 {wal}").split()
    assert after and not any(segment_before(n, middle.start_wal) for n in after), after
    wal_check()  # superseded partial segments go with the periodic check
    # the newest one stays (and the shipper may just have pushed a newer one)
    assert 1 <= len(backup1("sh", "-c", f"ls -1 {partial}").split()) <= 2
    assert recovery_state(pitr)["window_start"] == newest_point.taken_at

    # The replay from the base that covers the oldest point still finds every segment.
    restore = wait_ok(
        restore_to_time_start(
            actor=staff, instance=pitr, target_time=target, confirm_name=pitr.name
        )
    )
    assert restore.result["base_backup"] == middle.label
    titles = _titles(lab, pitr)
    assert "after-the-point" in titles and "segment-2" in titles
    assert "after-the-target" not in titles
