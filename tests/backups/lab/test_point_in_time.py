"""Point-in-time recovery on the lab: real PostgreSQL streaming its WAL with pg_receivewal, the
app host's shipper (cron) pushing it to the backup host through the restricted key, a real
base backup, and a restore in place to a chosen second, checked by the rows."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from backups.models import Backup, BaseBackup, WalArchive
from backups.selectors import recovery_state
from backups.services import backup_start, restore_to_time_start, wal_enable_start
from panel.access import access_for_user
from provisioning.models import AtlassianInstance
from tests.support.backup_lab import LabWorld, backup1, create_instance, sh, wait_ok

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


@pytest.fixture(scope="module")
def pitr(lab: LabWorld, django_db_blocker: Any) -> AtlassianInstance:
    """An instance of its own (the package's shared one keeps plain points), with its WAL
    archived: turned on by the operation a support person starts."""
    name = f"p{lab.suffix}-jira"
    lab.extra_projects.append(name)
    with django_db_blocker.unblock():
        instance = create_instance(access_for_user(lab.platform), lab.tenant, lab.app_host, name)
        op = wait_ok(wal_enable_start(actor=access_for_user(lab.support), instance=instance))
        assert op.result["base_backup"]
        instance.refresh_from_db()
        return instance


def _titles(lab: LabWorld, instance: AtlassianInstance) -> list[str]:
    return sorted(lab.titles(instance))


def _wait_shipped_after(instance: AtlassianInstance, moment: Any, timeout: float = 150) -> None:
    """Wait until the app host's shipper (cron, every few seconds) passed after ``moment``."""
    ok = f"{instance.host.data_root if instance.host else ''}/instances/{instance.name}/wal-ship.ok"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = sh("sh", "-c", f"cat {ok} 2>/dev/null || true").strip()
        if text.isdigit() and int(text) > moment.timestamp():
            return
        time.sleep(2)
    pytest.fail(f"the shipper did not pass after {moment} within {timeout} s")


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
    _wait_shipped_after(pitr, before)
    push = f"{lab.backup_host.data_root}/incoming/{lab.app_host.name}/{pitr.name}"
    partials = backup1("sh", "-c", f"ls -1 {push}/wal-partial").split()
    assert partials and all(p.endswith(".gz") and ".partial." in p for p in partials)
    # and never outside the backup host's area of this app host
    assert backup1("sh", "-c", f"ls -1 {push}/wal | wc -l").strip().isdigit()


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
    # a new timeline began: a base backup on it, the receiver streams again
    assert BaseBackup.objects.filter(instance=pitr).count() == bases_before + 1
    pitr.refresh_from_db()
    assert pitr.status == "running"
    moment = timezone.now()
    lab.api("items", {"title": "after-restore"}, instance=pitr)
    _wait_shipped_after(pitr, moment)
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
