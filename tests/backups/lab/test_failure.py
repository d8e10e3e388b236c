"""A backup whose copy dies half-way (the backup host's sshd session serving it is killed):
the operation fails with a reason, no earlier point is touched, and they still restore."""

from __future__ import annotations

import threading
import time

import pytest

from backups.models import Backup, BackupStatus
from backups.services import backup_start, restore_start
from panel.access import access_for_user
from tests.support.backup_lab import backup1, wait_ok
from tests.support.lab import run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]

HOME = "/var/atlassian/application-data/jira"

# From the rsync server of our copy up to (not including) the sshd listener: the session's
# sshd processes, the rrsync wrapper and rsync itself. Only this one copy's session dies; the
# listener (and every other session on the shared lab host) stays up.
_SESSION_CHAIN = """
for p in "$@"; do
  while [ "$p" -gt 1 ]; do
    case "$(ps -o args= -p "$p")" in *listener*) break;; esac
    echo "$p"
    p=$(ps -o ppid= -p "$p" | tr -d ' ')
  done
done
"""


def _kill_the_copy_session(instance_name: str, killed: list[str], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = backup1(
            "pgrep", "-f", f"rsync --server.*{instance_name}/incoming", check=False
        ).split()
        if pids:
            time.sleep(0.5)  # let some data arrive first: the copy dies half-way
            chain = backup1("sh", "-c", _SESSION_CHAIN, "sh", *pids).split()
            backup1("kill", "-9", *sorted(set(chain)), check=False)
            killed.extend(chain)
            return
        time.sleep(0.05)


def test_a_copy_killed_half_way_fails_readably_and_every_earlier_point_stays_restorable(
    lab, staff, settings
):
    admin = access_for_user(lab.admin)
    wait_ok(backup_start(actor=admin, instance=lab.instance))
    before = lab.points_on_disk()
    good = list(
        Backup.objects.filter(instance=lab.instance, status=BackupStatus.SUCCEEDED).order_by(
            "-taken_at"
        )
    )
    assert good and before
    lab.as_app(
        "sh", "-c", f"mkdir -p {HOME}/data && head -c 3000000 /dev/urandom > {HOME}/data/big.bin"
    )
    settings.PANEL_BACKUP_RSYNC_BWLIMIT = 500  # KB/s: the copy takes seconds, time to kill it
    killed: list[str] = []
    killer = threading.Thread(
        target=_kill_the_copy_session, args=(lab.instance.name, killed), daemon=True
    )
    killer.start()
    op = run_operation(backup_start(actor=admin, instance=lab.instance))
    killer.join(10)
    settings.PANEL_BACKUP_RSYNC_BWLIMIT = 0
    assert killed, "the copy's session was never found"
    assert op.status == "failed", step_text(op)
    assert "Copying with rsync failed" in op.error
    assert "No retained point was touched" in op.error
    failed = Backup.objects.get(operation=op)
    assert failed.status == BackupStatus.FAILED and failed.error
    # nothing committed, nothing half-written left, every earlier point intact
    assert lab.points_on_disk() == before
    # (the app host's incoming area, and the panel's own commit area)
    incoming = f"{lab.backup_host.data_root}/incoming/{lab.app_host.name}/{lab.instance.name}"
    assert backup1("sh", "-c", f"ls -A {incoming}/incoming").strip() == ""
    assert backup1("sh", "-c", f"ls -A {lab.area()}/commit 2>/dev/null || true").strip() == ""
    for name in before:
        backup1(
            "sh",
            "-c",
            f"cd {lab.area()}/points/{name} && sha256sum --check --quiet manifest.sha256",
        )
    # ... and restorable: the newest good point comes back in place
    op = wait_ok(
        restore_start(actor=staff, backup=good[0], mode="in_place", confirm_name=lab.instance.name)
    )
    assert op.result["point"] == good[0].point_name and op.result["health"] == "RUNNING"
    assert lab.as_app("sh", "-c", f"ls {HOME}/data/big.bin || true").strip() == ""
