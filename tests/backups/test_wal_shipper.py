"""The app host's WAL shipper script (backups.wal.SHIPPER), run for real with rsync, gzip and
flock against a local directory standing in for the backup host's WAL area: no lab needed.

The invariant a restore relies on: the backup host never holds a partial segment without every
segment before it, and a pass's "shipped" time covers everything written before it started,
even when the server completes a segment in the middle of the pass (the race a review found).
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

from backups.wal import SHIP_ERROR, SHIP_KICK, SHIP_OK, SHIP_ON, SHIPPER

SEG = "0000000100000000000000{:02X}"

# Stands in for ssh to the backup host: runs the rsync server here, with the remote path under
# BACKUP_ROOT (the backup host's forced command roots pushes in the WAL area the same way).
# When SWITCH_AFTER_FIRST names a file that exists, the first push of completed segments is
# followed by a segment switch (the partial completes, the next begins), as pg_receivewal does.
FAKE_SSH = r"""#!{python}
import os, subprocess, sys
args = sys.argv[sys.argv.index("rsync"):]  # after ssh's options, the user and the host
# The backup host's forced command adds --ignore-existing to every push into the WAL area
# (provisioning/hosts/backup_access.py): a file it already has is never overwritten.
args.insert(args.index("--server") + 1, "--ignore-existing")
args[-1] = os.environ["BACKUP_ROOT"] + args[-1]
os.makedirs(args[-1], exist_ok=True)
code = subprocess.call(args)
trigger = os.environ.get("SWITCH_AFTER_FIRST", "")
if trigger and os.path.exists(trigger) and "/wal/" in args[-1]:
    os.remove(trigger)
    wal = os.environ["APP_WAL"]
    names = sorted(n for n in os.listdir(wal) if n.endswith(".partial"))
    current = names[-1]
    os.rename(os.path.join(wal, current), os.path.join(wal, current[: -len(".partial")]))
    following = "%024X" % (int(current[:24], 16) + 1)
    with open(os.path.join(wal, following + ".partial"), "wb") as f:
        f.write(b"next" * 1024)
sys.exit(code)
"""


def _world(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, str]]:
    root = tmp_path / "instances"
    inst = root / "acme-jira"
    wal = inst / "wal"
    wal.mkdir(parents=True)
    (inst / SHIP_ON).write_text("")
    backup = tmp_path / "backup"
    backup.mkdir()
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH.format(python=sys.executable))
    ssh.chmod(ssh.stat().st_mode | stat.S_IXUSR)
    script = SHIPPER.format(
        cron="/etc/cron.d/x",
        interval=1,
        root=str(root),
        ssh=str(ssh),
        dest="panel@backup",
        on=SHIP_ON,
        ok=SHIP_OK,
        error=SHIP_ERROR,
        kick=SHIP_KICK,
    )
    # One pass only (the installed script loops for most of a minute).
    assert "+ 57 ))" in script
    shipper = tmp_path / "panel-wal-ship"
    shipper.write_text(script.replace("+ 57 ))", "- 1 ))"))
    shipper.chmod(0o755)
    env = {**os.environ, "BACKUP_ROOT": str(backup), "APP_WAL": str(wal)}
    return shipper, wal, backup, env


def _segment(wal: Path, n: int, *, partial: bool = False) -> None:
    (wal / (SEG.format(n) + (".partial" if partial else ""))).write_bytes(bytes([n]) * 4096)


def _run(shipper: Path, env: dict[str, str]) -> None:
    done = subprocess.run([str(shipper)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_pass_ships_completed_segments_and_the_current_partial_compressed(tmp_path):
    shipper, wal, backup, env = _world(tmp_path)
    _segment(wal, 1)
    _segment(wal, 2, partial=True)
    _run(shipper, env)
    assert sorted(os.listdir(backup / "wal" / "acme-jira")) == [SEG.format(1)]
    (partial,) = os.listdir(backup / "wal-partial" / "acme-jira")
    assert partial.startswith(SEG.format(2) + ".partial.")
    data = gzip.decompress((backup / "wal-partial" / "acme-jira" / partial).read_bytes())
    assert data == bytes([2]) * 4096
    # the completed segment is removed on the app host, the one being written stays
    assert sorted(os.listdir(wal)) == [SEG.format(2) + ".partial"]
    assert re.fullmatch(r"\d+\.\d{3}", (wal.parent / SHIP_OK).read_text().strip())


def test_a_segment_completing_during_the_pass_is_shipped_before_any_later_partial(tmp_path):
    shipper, wal, backup, env = _world(tmp_path)
    _segment(wal, 1)
    _segment(wal, 2, partial=True)
    trigger = tmp_path / "switch"
    trigger.write_text("")
    env["SWITCH_AFTER_FIRST"] = str(trigger)
    _run(shipper, env)
    assert not trigger.exists(), "the switch happened during the pass"
    shipped = sorted(os.listdir(backup / "wal" / "acme-jira"))
    area = backup / "wal-partial" / "acme-jira"
    partials = sorted(os.listdir(area)) if area.exists() else []
    # segment 2 completed mid-pass: it is on the backup host, and no partial of 3 went ahead
    # of it (before the fix: segments 1 and a partial 3, without 2)
    assert shipped == [SEG.format(1), SEG.format(2)]
    for name in partials:
        segment = int(name[:24], 16)
        assert all(SEG.format(n) in shipped for n in range(1, segment))
    assert (wal.parent / SHIP_OK).exists() and not (wal.parent / SHIP_ERROR).exists()


def test_a_segment_the_backup_host_already_has_does_not_linger_on_the_app_host(tmp_path):
    # An earlier pass copied segment 1 and was cut off before it removed it here: the backup
    # host skips it (--ignore-existing) and rsync removes only what it copied.
    shipper, wal, backup, env = _world(tmp_path)
    area = backup / "wal" / "acme-jira"
    area.mkdir(parents=True)
    _segment(wal, 1)
    (area / SEG.format(1)).write_bytes(bytes([1]) * 4096)
    _segment(wal, 2)
    _segment(wal, 3, partial=True)
    _run(shipper, env)
    assert sorted(os.listdir(area)) == [SEG.format(1), SEG.format(2)]
    assert (area / SEG.format(1)).read_bytes() == bytes([1]) * 4096
    assert sorted(os.listdir(wal)) == [SEG.format(3) + ".partial"]
    assert (wal.parent / SHIP_OK).exists() and not (wal.parent / SHIP_ERROR).exists()


def test_a_failed_copy_removes_nothing_on_the_app_host(tmp_path):
    shipper, wal, backup, env = _world(tmp_path)
    _segment(wal, 1)
    _segment(wal, 2, partial=True)
    (backup / "wal").write_text("not a directory")  # the push cannot land
    done = subprocess.run([str(shipper)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(wal)) == [SEG.format(1), SEG.format(2) + ".partial"]
    assert (wal.parent / SHIP_ERROR).exists() and not (wal.parent / SHIP_OK).exists()


def test_a_run_started_by_cron_while_one_still_passes_waits_for_it_instead_of_leaving(tmp_path):
    # cron starts a run every minute; one still making its last pass holds the lock. The new
    # run waits for it (no gap until the next minute) rather than exiting at once.
    shipper, wal, backup, env = _world(tmp_path)
    _segment(wal, 1)
    _segment(wal, 2, partial=True)
    lock = wal.parent.parent / ".wal-ship.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "3"])
    while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
        pass  # until the holder has the lock
    try:
        time_before = os.times().elapsed
        _run(shipper, env)
        waited = os.times().elapsed - time_before
    finally:
        holder.wait(timeout=30)
    assert waited >= 2, "the run gave up instead of waiting for the lock"
    assert sorted(os.listdir(backup / "wal" / "acme-jira")) == [SEG.format(1)]


def test_a_kick_from_the_panel_starts_the_next_pass_at_once_instead_of_after_the_interval(
    tmp_path,
):
    # A point or a restore waiting for its commit to be archived touches the kick file: the
    # shipper, sleeping between passes (here 30 s apart), passes again within a fraction of
    # a second and removes the kick.
    shipper, wal, backup, env = _world(tmp_path)
    shipper.write_text(
        shipper.read_text().replace("- 1 ))", "+ 57 ))").replace("$(( 1 * 5 ))", "$(( 30 * 5 ))")
    )
    _segment(wal, 1, partial=True)
    ok = wal.parent / SHIP_OK
    run = subprocess.Popen([str(shipper)], env=env)
    try:
        while not ok.exists():
            time.sleep(0.05)
        first = ok.read_text()
        time.sleep(1)
        assert ok.read_text() == first, "a second pass before the interval, without a kick"
        (wal.parent / SHIP_KICK).write_text("")
        kicked = time.monotonic()
        while ok.read_text() == first:
            assert time.monotonic() - kicked < 5, "the kick did not start a pass"
            time.sleep(0.05)
        assert not (wal.parent / SHIP_KICK).exists()
    finally:
        run.kill()
        run.wait(timeout=10)
