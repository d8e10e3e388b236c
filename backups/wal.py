"""Point-in-time recovery: continuous WAL archiving, base backups and restores to a second.

How WAL gets from an instance's database to its backup host (README "Point-in-time recovery"):

1. The compose project's ``wal`` service (:func:`provisioning.compose._wal_services`) runs
   ``pg_receivewal`` from the database's own image over the database's unix socket, into
   ``<instance dir>/wal/`` on the app host, through a replication slot (no WAL is lost while
   the receiver restarts; ``max_slot_wal_keep_size`` caps what the slot may hold back).
2. The app host's shipper (:data:`SHIPPER`, run by cron every minute, one pass every few
   seconds) pushes completed segments with the host's restricted backup key into the
   instance's ``wal/`` on the backup host (write-only, never overwriting an existing file) and
   removes them locally; the segment being written (``.partial``) goes gzip-compressed under a
   name of its own each time it changed, so the newest second written is on the backup host
   within seconds, not when a 16 MB segment fills.
3. Base backups (``pg_basebackup --format=tar --gzip --wal-method=none``: the archive holds
   the WAL) are pushed the same way and moved by the panel into the read-only area.

A restore to a time (:func:`restore_to_time`) takes the newest base backup finished before
the target, every archived segment, the newest partial segment, and the home of the newest
backup point taken before the target; PostgreSQL replays the WAL to ``recovery_target_time``
and promotes. The safety state is kept on the app host itself (the old data directory moved
aside, the home hard-linked), so nothing crosses the network twice.
"""

from __future__ import annotations

import copy
import logging
import re
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backups.dump import compose_argv
from backups.models import (
    Backup,
    BackupKind,
    BackupStatus,
    BaseBackup,
    PointDatabase,
    WalArchive,
)
from backups.restore import (
    DatabaseBuilder,
    home_pull,
    psql,
    source_prepare,
    source_release,
)
from backups.selectors import Window, recovery_gap, recovery_window
from backups.store import PointStore, effective_backup_host
from backups.transfer import rsync_base, rsync_remote, rsync_run
from panel.operations import OperationContext, OperationFailed
from provisioning.compose import WAL_DIR, instance_dir
from provisioning.hosts import host_backup_ssh_argv, host_connection
from provisioning.models import AtlassianInstance, Host
from provisioning.remote import HostConnection, RemoteError
from provisioning.rollout import instance_rollout, wait_running

log = logging.getLogger(__name__)

SHIPPER_PATH = "/usr/local/sbin/panel-wal-ship"
SHIPPER_CRON = "/etc/cron.d/panel-wal-ship"
SHIP_ON = "wal-ship.on"  # in <instance dir>: this instance's WAL is shipped
SHIP_OK = "wal-ship.ok"  # epoch seconds (.ms) when the last pass that copied everything began
SHIP_CLOCK_MARGIN = 0.25  # seconds; see wal_shipped_wait
SHIP_KICK = "wal-ship.kick"  # in <instance dir>: the panel asks for a pass now
SHIP_ERROR = "wal-ship.error"  # the last failed pass's rsync output
BASE_STAGING = "wal-base"  # <instance dir>/wal-base/<label>/: a base backup being pushed
PITR_STAGING = "pitr"  # <instance dir>/pitr/: what a restore to a time pulled
PITR_WAL = "pitr-wal"  # inside the restored data directory: the WAL recovery reads

# The shipper (run on the app host by cron; rendered per host with its backup key's ssh).
SHIPPER = """#!/bin/sh
# Installed by the panel: ships each instance's streamed WAL to the backup host.
# Run every minute by cron ({cron}); passes every {interval} s for most of the minute.
set -u
ROOT={root}
SSH={ssh}
DEST={dest}
exec 9>"$ROOT/.wal-ship.lock"
# Passes until about when cron starts the next run, which waits for this one's last pass
# instead of giving up: a run that stopped at 50 s left a gap of ~10 s each minute, a commit
# in it waiting for the next minute (bench/results/pitr.md).
flock -w 30 9 || exit 0
end=$(( $(date +%s) + 57 ))
version=$(cksum < "$0")
ship_completed() {{
  # Completed segments and timeline history files: once each (the backup host never lets a
  # push overwrite an existing file), then removed here.
  sent=$(cd "$1/wal" && ls -1 | grep -E '^[0-9A-F]{{24}}$|[.]history$')
  rsync -a --timeout=30 -e "$SSH" --remove-source-files --include='????????????????????????' \\
    --include='*.history' --exclude='*' "$1/wal/" "$DEST:/wal/$2/" >"$3" 2>&1 || return 1
  # A file the backup host already had (an earlier pass cut off after its copy, before the
  # removal here) is skipped by the backup host's --ignore-existing, and rsync removes only
  # what it copied: it would stay here for good. Every file listed before this copy is on the
  # backup host now; one completed during the copy was not listed and goes with the next.
  for f in $sent; do rm -f "$1/wal/$f"; done
}}
ship_one() {{
  # When the pass began, to the millisecond: a point or a restore waits for a pass that began
  # after its commit, so whole seconds would cost each of them up to a second more.
  dir=$1; name=$2; rm -f "$dir/{kick}"; now=$(date +%s.%3N); out="$dir/.wal-ship.out"
  # The segment being written, chosen BEFORE the completed ones are sent: every segment before
  # it is complete by now, so the backup host never holds a partial segment without all the
  # segments before it (one completing during this pass goes with the next pass).
  p=$(cd "$dir/wal" && ls -1 | grep '[.]partial$' | tail -n 1)
  if ship_completed "$dir" "$name" "$out"; then
    # It completed during that copy: it goes now, as a completed segment, so the pass covers
    # everything written before it started (the newer partial goes with the next pass).
    if [ -n "$p" ] && [ ! -f "$dir/wal/$p" ]; then
      ship_completed "$dir" "$name" "$out" || {{ tail -c 400 "$out" > "$dir/{error}"; return; }}
    fi
    if [ -n "$p" ] && [ -f "$dir/wal/$p" ]; then
      m=$(stat -c %.9Y "$dir/wal/$p")
      if [ "$p $m" != "$(cat "$dir/.wal-ship.partial" 2>/dev/null)" ]; then
        rm -rf "$dir/.wal-stage"; mkdir -p "$dir/.wal-stage"
        gzip -1 -c "$dir/wal/$p" > "$dir/.wal-stage/$p.$(date +%s%N).gz"
        rsync -a --timeout=30 -e "$SSH" "$dir/.wal-stage/" "$DEST:/wal-partial/$name/" \\
          >"$out" 2>&1 || {{ tail -c 400 "$out" > "$dir/{error}"; return; }}
        echo "$p $m" > "$dir/.wal-ship.partial"
      fi
    fi
    echo "$now" > "$dir/{ok}.tmp" && mv "$dir/{ok}.tmp" "$dir/{ok}"
    rm -f "$dir/{error}"
  else
    tail -c 400 "$out" > "$dir/{error}"
  fi
}}
while :; do
  for on in "$ROOT"/*/{on}; do
    [ -f "$on" ] || continue
    dir=${{on%/*}}; ship_one "$dir" "${{dir##*/}}"
  done
  [ "$(date +%s)" -ge "$end" ] && break
  # The panel installed a new shipper (its layout may differ): continue with it at once.
  [ "$(cksum < "$0")" = "$version" ] || exec "$0"
  # The next pass in {interval} s, or at once when the panel asks for one: a point or a restore
  # waiting for its commit to be archived touches <instance dir>/{kick}.
  n=0
  while [ "$n" -lt $(( {interval} * 5 )) ]; do
    for kick in "$ROOT"/*/{kick}; do [ -e "$kick" ] && break 2; done
    sleep 0.2; n=$((n + 1))
  done
done
"""


def _instances_root(host: Host) -> str:
    return f"{host.data_root}/instances"


def shipper_render(app_host: Host) -> tuple[str, str]:
    """The shipper script and its cron file for ``app_host``."""
    backup = app_host.backup_host
    if backup is None:
        raise OperationFailed(f"{app_host.name} has no backup host to archive WAL to.")
    interval = int(settings.PANEL_WAL_SHIP_INTERVAL)
    script = SHIPPER.format(
        cron=SHIPPER_CRON,
        interval=interval,
        root=shlex.quote(_instances_root(app_host)),
        ssh=shlex.quote(shlex.join(host_backup_ssh_argv(app_host))),
        dest=shlex.quote(f"{backup.ssh_user}@{backup.peer_address}"),
        on=SHIP_ON,
        ok=SHIP_OK,
        error=SHIP_ERROR,
        kick=SHIP_KICK,
    )
    cron = f"# Installed by the panel: WAL shipping\n* * * * * root {SHIPPER_PATH}\n"
    return script, cron


def shipper_install(conn: HostConnection, app_host: Host) -> None:
    """Install (or update) the app host's WAL shipper and its cron entry."""
    script, cron = shipper_render(app_host)
    conn.upload(SHIPPER_PATH, script, mode=0o755, message="Installed the WAL shipper")
    conn.upload(SHIPPER_CRON, cron, mode=0o644, message="Scheduled the WAL shipper (cron)")


@dataclass(frozen=True)
class WalPaths:
    """Where one instance's archive lives on its backup host."""

    store: PointStore
    # The streamed WAL has a write root of its own (host_backup_wal_dir), without rrsync's
    # lock, so the shipper never waits for a home push of the same app host.
    wal_root: str

    @property
    def push_wal(self) -> str:
        return f"{self.wal_root}/wal/{self.store.instance_name}"

    @property
    def push_partial(self) -> str:
        return f"{self.wal_root}/wal-partial/{self.store.instance_name}"

    @property
    def push_base(self) -> str:
        return f"{self.store.push_area}/{BASE_STAGING}"

    @property
    def bases(self) -> str:
        return f"{self.store.area}/{BASE_STAGING}"

    def staging(self, key: str) -> str:
        return f"{self.store.area}/{PITR_STAGING}/{key}"


def _app_host(instance: AtlassianInstance) -> Host:
    if instance.host is None:
        raise OperationFailed(f"{instance.name} is not placed on an app host.")
    return instance.host


def wal_paths(instance: AtlassianInstance) -> WalPaths:
    app_host = _app_host(instance)
    backup_host = effective_backup_host(instance, app_host)
    return WalPaths(
        PointStore(backup_host, app_host.name, instance.name),
        # the layout of provisioning.hosts.host_backup_wal_dir, on the effective backup host
        f"{backup_host.data_root}/wal-incoming/{app_host.name}",
    )


# --- turning it on --------------------------------------------------------------------------


def wal_enable(ctx: OperationContext, instance: AtlassianInstance) -> BaseBackup:
    """Turn on continuous archiving for ``instance``: the backup host's areas, the app host's
    shipper, the compose project with its ``wal`` service (the database restarts once, to
    share its socket), then a first base backup. Safe to run again."""
    paths = wal_paths(instance)
    with host_connection(paths.store.backup_host, ctx=ctx) as bconn:
        bconn.run(
            ["mkdir", "-p", paths.push_wal, paths.push_partial, paths.push_base, paths.bases],
            message=f"Made the WAL archive's directories on {paths.store.backup_host.name}",
        )
    AtlassianInstance.objects.filter(pk=instance.pk).update(wal_archiving=True)
    instance.wal_archiving = True
    ctx.step("Deploying the instance with its WAL receiver (the database restarts once)")
    instance_rollout(ctx, instance, first=False)
    idir = instance_dir(instance)
    with host_connection(_app_host(instance), ctx=ctx) as conn:
        shipper_install(conn, _app_host(instance))
        conn.run(["touch", f"{idir}/{SHIP_ON}"], message="WAL shipping on for this instance")
        # Cron notices a new file in /etc/cron.d only at a minute's turn: start the first
        # round now (detached; its flock keeps it the only one), so WAL flows at once.
        conn.run(
            ["setsid", "-f", "sh", "-c", f"{SHIPPER_PATH} </dev/null >/dev/null 2>&1"],
            message="Started the shipper's first round",
        )
    WalArchive.objects.update_or_create(instance=instance, defaults={"error": ""})
    return base_backup_take(ctx, instance)


# --- state ----------------------------------------------------------------------------------


def ship_mark_parse(text: str) -> datetime | None:
    """When the shipper's last complete pass began, from its ``wal-ship.ok`` (epoch seconds
    with milliseconds; whole seconds from a shipper installed before, until the periodic check
    replaces it). None when there is no such pass."""
    mark = text.strip()
    if not re.fullmatch(r"\d+(\.\d+)?", mark):
        return None
    return datetime.fromtimestamp(float(mark), tz=UTC)


def wal_state_read(conn: HostConnection, instance: AtlassianInstance) -> WalArchive:
    """Read the shipper's and the receiver's state on the app host into the catalogue."""
    idir = instance_dir(instance)
    out = conn.run(
        [
            "sh",
            "-c",
            'cat "$1/' + SHIP_OK + '" 2>/dev/null; echo "|"; cat "$1/' + SHIP_ERROR + '" '
            '2>/dev/null; echo "|"; docker ps -q --filter "label=panel.instance-id=$2" '
            '--filter "label=panel.role=wal" --filter status=running',
            "sh",
            idir,
            str(instance.pk),
        ],
        record=False,
        ok_codes=range(256),
    ).stdout
    ok, error, running = (out.split("|") + ["", "", ""])[:3]
    shipped = ship_mark_parse(ok)
    archive, _ = WalArchive.objects.get_or_create(instance=instance)
    archive.shipped_at = shipped or archive.shipped_at
    archive.error = error.strip()[-1000:]
    archive.receiver_running = bool(running.strip())
    archive.checked_at = timezone.now()
    archive.save()
    return archive


def wal_states_refresh(app_host: Host, instances: list[AtlassianInstance]) -> None:
    """Read the archive state of ``instances`` (all on ``app_host``) over one connection; a
    host that cannot be reached is recorded as the archives' error (their lag keeps growing,
    so the periodic check alerts when it lasts)."""
    try:
        with host_connection(app_host) as conn:
            # The current shipper (an upgrade of the panel may change it; it re-execs itself).
            script, cron = shipper_render(app_host)
            conn.upload_if_changed(SHIPPER_PATH, script, mode=0o755, message="WAL shipper")
            conn.upload_if_changed(SHIPPER_CRON, cron, mode=0o644, message="WAL shipper cron")
            for instance in instances:
                wal_state_read(conn, instance)
    except (RemoteError, OperationFailed) as exc:
        # Not an error of the archive yet: its lag grows, and the check alerts once it
        # passes PANEL_WAL_BROKEN_AFTER (a short network blip must not page anyone).
        log.warning("WAL state of %s could not be read: %s", app_host.name, exc)


def partials_prune(backup_host: Host, instances: list[AtlassianInstance]) -> int:
    """Remove the superseded compressed partial segments of ``instances`` on ``backup_host``:
    the shipper pushes a new one under a new name on each pass that saw a change (the push key
    never overwrites), and a restore reads only the newest."""
    dirs = []
    for instance in instances:
        try:
            dirs.append(wal_paths(instance).push_partial)
        except OperationFailed:  # e.g. a policy names a backup host not yet provisioned
            continue
    if not dirs:
        return 0
    # Names are read line by line, never expanded by the shell (the app host chose them).
    script = (
        'for d in "$@"; do [ -d "$d" ] || continue; (cd "$d" && ls -1 | LC_ALL=C sort | '
        'head -n -1 | while IFS= read -r f; do rm -f -- "$f" && echo removed; done); '
        "done | wc -l"
    )
    with host_connection(backup_host) as bconn:
        out = bconn.run(["sh", "-c", script, "sh", *dirs], record=False).stdout
    return int((out.strip().splitlines() or ["0"])[-1] or 0)


def wal_shipped_wait(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance, after: datetime
) -> WalArchive:
    """Wait until the shipper finished a pass that started after ``after``."""
    deadline = time.monotonic() + float(settings.PANEL_WAL_SHIP_WAIT)
    # The pass's start is read from the app host's clock: a margin for a skew NTP leaves.
    after = after + timedelta(seconds=SHIP_CLOCK_MARGIN)
    kick = ["touch", f"{instance_dir(instance)}/{SHIP_KICK}"]
    while True:
        archive = wal_state_read(conn, instance)
        if archive.shipped_at is not None and archive.shipped_at > after:
            return archive
        if time.monotonic() > deadline:
            raise OperationFailed(
                f"The WAL of {instance.name} did not reach the backup host within "
                f"{int(settings.PANEL_WAL_SHIP_WAIT)} s"
                + (f": {archive.error}" if archive.error else ".")
            )
        ctx.check_cancelled()
        # The shipper passes every few seconds; asked, it starts a pass within 0.2 s. Asked
        # only once the margin has passed (a pass that began earlier does not count, and it
        # would take the kick), and again at each read.
        early = (after - timezone.now()).total_seconds()
        if early > 0:
            time.sleep(early)
        conn.run(kick, record=False)
        time.sleep(0.3)


# --- points whose database is the archive --------------------------------------------------

# Points a support person restores in place after a failure, or the upgrade roll-back does:
# they keep their dump, so they restore without the archive (and its replay) at all.
_DUMP_KINDS = (BackupKind.PRE_UPGRADE, BackupKind.SAFETY)


def point_database(
    instance: AtlassianInstance, *, kind: str, taken_at: datetime, offsite: bool, db_running: bool
) -> tuple[str, str]:
    """Where the point of ``instance`` taken at ``taken_at`` gets its database: a pg_dump, or
    (``PointDatabase.WAL``) nothing in the point, the archive replayed to its second. The
    second says why, for the operation's step. The archive serves when the WAL is archived and
    healthy, a base backup on the current timeline finished before the point, the point is
    not one of the kinds that keep a dump, and no off-site copy (which carries the dump, not
    the archive) is made of it."""
    if not instance.wal_archiving:
        return PointDatabase.DUMP, "pg_dump"
    if not settings.PANEL_BACKUP_WAL_POINTS:
        return PointDatabase.DUMP, "pg_dump (PANEL_BACKUP_WAL_POINTS is off)"
    if kind in _DUMP_KINDS:
        return PointDatabase.DUMP, f"pg_dump ({BackupKind(kind).label.lower()} points keep one)"
    if offsite:
        return PointDatabase.DUMP, "pg_dump (the off-site copy carries the dump, not the WAL)"
    if not db_running:
        return PointDatabase.DUMP, "pg_dump (the database is stopped: it archives nothing)"
    archive = WalArchive.objects.filter(instance=instance).first()
    if archive is None or archive.error or not archive.receiver_running:
        problem = (archive.error if archive else "") or "the WAL receiver is not running"
        return PointDatabase.DUMP, f"pg_dump (the WAL archive is not healthy: {problem})"
    forked = max((datetime.fromisoformat(end) for _start, end in archive.gaps), default=None)
    bases = BaseBackup.objects.filter(
        instance=instance, status=BaseBackup.Status.SUCCEEDED, finished_at__lte=taken_at
    )
    if forked is not None:
        bases = bases.filter(finished_at__gt=forked)
    base = bases.order_by("-finished_at").first()
    if base is None:
        return PointDatabase.DUMP, "pg_dump (no base backup on the current timeline before it)"
    return (
        PointDatabase.WAL,
        f"no dump: the archived WAL from base backup {base.label}, replayed to the point's second",
    )


def point_wal_mark(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance, database_at: datetime
) -> datetime:
    """Write one commit after ``database_at`` (a replay to that second stops at the first
    commit after it, and fails if the WAL holds none), so the point restores from the archive
    alone, even when the instance is down by then. Returns when it was written."""
    wait = (database_at - timezone.now()).total_seconds() + 0.05
    if wait > 0:
        time.sleep(wait)  # under a second: database_at is the next whole second
    return marker_write(
        conn, instance, f"Wrote a commit after {database_at:%H:%M:%S} UTC for the replay to stop at"
    )


def marker_write(conn: HostConnection, instance: AtlassianInstance, message: str) -> datetime:
    """One commit on the running database (an xid makes its commit a WAL record); a moment
    after it was made (read once psql returned: a shipper pass that began later has it)."""
    psql(conn, instance, "SELECT txid_current();", database=instance.db_name, message=message)
    return timezone.now()


def point_wal_wait(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance, marked: datetime
) -> None:
    """Wait until the archive on the backup host holds the commit written at ``marked``: only
    then is the point's database there (else the point fails and nothing is committed)."""
    archive = wal_shipped_wait(ctx, conn, instance, marked)
    ctx.step(
        f"The archived WAL reaches {archive.shipped_at:%H:%M:%S} UTC: the point's database is "
        "on the backup host"
    )


def point_database_builder(
    backup: Backup, source: AtlassianInstance | None = None
) -> DatabaseBuilder | None:
    """How a copy gets the database of ``backup``: None for a point with its dump; for a point
    of the archive, its base backup and WAL replayed to the point's second (no commit written
    on the source: the point wrote one when it was taken, and the source may be down).
    ``source``: the instance as it was when the point was taken (its archive is keyed by the
    app host it ran on), by default the point's instance on the point's app host."""
    if backup.database != PointDatabase.WAL:
        return None
    if backup.database_at is None:
        raise OperationFailed(f"Point {backup.point_name} has no database time.")
    if source is None:
        source = copy.copy(backup.instance)
        source.host = backup.app_host
    return _database_replayed(source, backup.database_at, reached=[], marker=False)


# --- base backups ---------------------------------------------------------------------------


def base_backup_take(ctx: OperationContext, instance: AtlassianInstance) -> BaseBackup:
    """A base backup of the running database, pushed to the backup host (no downtime)."""
    paths = wal_paths(instance)
    started = time.monotonic()
    now = timezone.now().replace(microsecond=0)
    label = now.strftime("%Y-%m-%dT%H%M%SZ")
    base = BaseBackup.objects.create(
        instance=instance,
        backup_host=paths.store.backup_host,
        app_host=_app_host(instance),
        operation=ctx.operation,
        label=label,
    )
    idir = instance_dir(instance)
    local = f"{idir}/{BASE_STAGING}/{label}"
    try:
        with host_connection(_app_host(instance), ctx=ctx) as conn:
            conn.run(["rm", "-rf", f"{idir}/{BASE_STAGING}"], record=False)
            conn.run(["mkdir", "-p", local], record=False)
            conn.run(["chown", "-R", "999:999", f"{idir}/{BASE_STAGING}"], record=False)
            conn.run(
                compose_argv(
                    instance,
                    "run",
                    "--rm",
                    "--no-deps",
                    "-T",
                    "--volume",
                    f"{idir}/{BASE_STAGING}:/base",
                    "--entrypoint",
                    "pg_basebackup",
                    "wal",
                    "-h",
                    "/var/run/postgresql",
                    "-U",
                    instance.db_user,
                    "-D",
                    f"/base/{label}",
                    "--format=tar",
                    "--gzip",
                    "--wal-method=none",
                    "--checkpoint=fast",
                ),
                timeout=float(settings.PANEL_BACKUP_RSYNC_TIMEOUT),
                message="pg_basebackup of the running database (tar, gzip; WAL from the archive)",
            )
            size = int(conn.run(["du", "-s", "-B1", local], record=False).stdout.split()[0] or 0)
            label_text = conn.run(
                ["tar", "-xzOf", f"{local}/base.tar.gz", "backup_label"], record=False
            ).stdout
            start_wal = base_start_segment(label_text)
            rsync_run(
                ctx,
                conn,
                rsync_base(_app_host(instance))
                + [
                    f"{local}/",
                    rsync_remote(_app_host(instance), f"/{instance.name}/wal-base/{label}/"),
                ],
                backup_host_name=paths.store.backup_host.name,
                message=f"Pushed base backup {label} to {paths.store.backup_host.name}",
            )
            conn.run(["rm", "-rf", f"{idir}/{BASE_STAGING}"], record=False)
        with host_connection(paths.store.backup_host, ctx=ctx) as bconn:
            bconn.run(
                [
                    "sh",
                    "-c",
                    'set -e; mkdir -p "$3"; test -s "$1/$2/base.tar.gz"; mv "$1/$2" "$3/$2"',
                    "sh",
                    paths.push_base,
                    label,
                    paths.bases,
                ],
                message=f"Moved base backup {label} into the read-only area",
            )
    except Exception as exc:
        BaseBackup.objects.filter(pk=base.pk).update(
            status=BaseBackup.Status.FAILED, error=str(exc)[:4000], finished_at=timezone.now()
        )
        raise
    BaseBackup.objects.filter(pk=base.pk).update(
        status=BaseBackup.Status.SUCCEEDED,
        finished_at=timezone.now(),
        size_bytes=size,
        duration_seconds=round(time.monotonic() - started, 1),
        start_wal=start_wal,
    )
    base.refresh_from_db()
    ctx.step(
        f"Base backup {label}: {size} bytes in {base.duration_seconds} s "
        f"(its replay starts at WAL segment {start_wal})"
    )
    return base


_START_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", re.MULTILINE)


def base_start_segment(backup_label: str) -> str:
    """The first WAL segment a base backup's replay needs, from its ``backup_label`` (see
    https://www.postgresql.org/docs/15/continuous-archiving.html#BACKUP-LOWLEVEL-BASE-BACKUP-DATA)."""
    found = _START_WAL.search(backup_label)
    if found is None:
        raise OperationFailed("The base backup has no readable backup_label (START WAL LOCATION).")
    return found.group(1)


# --- retention ------------------------------------------------------------------------------


def bases_to_prune(bases: list[BaseBackup], keep_from: datetime | None) -> list[BaseBackup]:
    """Which base backups retention removes: every succeeded base that finished after
    ``keep_from`` stays, and so does the newest one that finished at or before it (the replay
    to ``keep_from`` starts there); older and failed ones go. ``keep_from`` None (no retained
    point to reach back to) keeps only the newest base."""
    good = sorted(
        (b for b in bases if b.status == BaseBackup.Status.SUCCEEDED and b.finished_at),
        key=lambda b: b.finished_at or datetime.min.replace(tzinfo=UTC),
    )
    failed = [b for b in bases if b.status == BaseBackup.Status.FAILED]
    if not good:
        return failed
    if keep_from is None:
        return good[:-1] + failed
    covering = [b for b in good if b.finished_at and b.finished_at <= keep_from]
    first_kept = covering[-1] if covering else good[0]
    return good[: good.index(first_kept)] + failed


def prune_floor(kept: list[BaseBackup]) -> BaseBackup | None:
    """The kept base whose first segment is the lowest: WAL before it can go. Not the oldest
    base's: a restore to a time forks a new timeline at a lower position than later bases of
    the old one. None (prune nothing) when there is none, or one has no known first segment."""
    if not kept or not all(b.start_wal for b in kept):
        return None
    return min(kept, key=lambda b: b.start_wal[8:])


def segment_before(name: str, start: str) -> bool:
    """Whether WAL file ``name`` (a segment, or a compressed partial segment) lies wholly
    before segment ``start``: the log and segment numbers compared, whatever the timeline
    (positions only grow across timelines). History files are never "before"."""
    seg = name.split(".", 1)[0]
    if len(seg) != 24 or not _HEX24.fullmatch(seg) or name.endswith(".history"):
        return False
    return seg[8:] < start[8:]


_HEX24 = re.compile(r"[0-9A-F]{24}")


def wal_prune(ctx: OperationContext, instance: AtlassianInstance) -> dict[str, int]:
    """Retention of the archive: base backups older than the oldest retained backup point
    needs go (keeping the newest base before that point), then every WAL file before the
    oldest kept base's first segment. The window then reaches back to the oldest point."""
    oldest_point = (
        Backup.objects.filter(instance=instance, status=BackupStatus.SUCCEEDED)
        .order_by("taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )
    bases = list(
        BaseBackup.objects.filter(instance=instance).exclude(status=BaseBackup.Status.RUNNING)
    )
    doomed = bases_to_prune(bases, oldest_point)
    kept = [b for b in bases if b not in doomed and b.status == BaseBackup.Status.SUCCEEDED]
    paths = wal_paths(instance)
    removed_wal = 0
    oldest: BaseBackup | None = None
    with host_connection(paths.store.backup_host, ctx=ctx) as bconn:
        for base in doomed:
            bconn.run(
                ["rm", "-rf", "--one-file-system", f"{paths.bases}/{base.label}"],
                message=f"Removed base backup {base.label} (older than retention needs)",
            )
            base.delete()
        oldest = prune_floor(kept)
        if oldest is not None:
            for directory in (paths.push_wal, paths.push_partial):
                listing = bconn.run(
                    ["sh", "-c", 'ls -1 "$1" 2>/dev/null || true', "sh", directory],
                    record=False,
                ).stdout.split()
                names = [n for n in listing if segment_before(n, oldest.start_wal)]
                for i in range(0, len(names), 500):
                    bconn.run(
                        ["sh", "-c", 'cd "$1" && shift && rm -f -- "$@"', "sh", directory]
                        + names[i : i + 500],
                        record=False,
                    )
                removed_wal += len(names)
    if doomed or removed_wal:
        ctx.step(
            f"Retention: removed {len(doomed)} base backup(s) and {removed_wal} WAL file(s) "
            "that no retained point needs"
            + (f" (the archive starts at segment {oldest.start_wal})" if oldest else "")
        )
    return {"bases_removed": len(doomed), "wal_removed": removed_wal}


# --- restore to a time ----------------------------------------------------------------------


# Stages a restore's base and WAL on the backup host (sh -c, arguments: staging directory,
# base directory, WAL area, partial area, the base's first segment). Only the WAL from the
# base's first segment on (log and segment number, any timeline: segment_before's rule) and
# the history files: the archive holds every segment since the oldest retained base, which a
# replay from a newer base never reads, and the app host would pull all of it.
STAGE_SCRIPT = r"""
set -e
staging="$1"; base="$2"; wal="$3"; partial="$4"; start="${5:-}"
rm -rf "$staging"; mkdir -p "$staging/wal"
cp -al "$base/base.tar.gz" "$staging/base.tar.gz"
[ -d "$wal" ] || { echo "The WAL archive $wal is missing" >&2; exit 1; }
from=${start#????????}
# awk compares as strings (the "" concatenations): hex positions may look like numbers.
# ls leaves out dot files (rsync's temporary files of a push under way).
(cd "$wal" && ls -1) | awk -v from="$from" '
  length($0) == 24 && $0 ~ /^[0-9A-F]+$/ && (substr($0, 9) "") < (from "") { next }
  { print }' | (cd "$wal" && xargs -r -d '\n' cp -al -t "$staging/wal/")
newest=$(ls -1 "$partial" 2>/dev/null | LC_ALL=C sort | tail -n 1)
if [ -n "$newest" ]; then
  seg=${newest%%.*}
  # a hard link first: the periodic check may drop this partial once a newer one arrives
  np="$staging/newest-partial.gz"; cp -al "$partial/$newest" "$np"
  if [ ! -e "$staging/wal/$seg" ]; then gzip -dc "$np" > "$staging/wal/$seg"; fi
  rm -f "$np"
fi
ls -1 "$staging/wal" | wc -l
"""


def _stage_on_backup_host(
    ctx: OperationContext,
    paths: WalPaths,
    base: BaseBackup,
    key: str,
    into: PointStore | None = None,
) -> tuple[str, int]:
    """Hard-link the base and the archived WAL into a staging directory the app host can read
    (``into``: another instance's area, for a copy on another app host), with the newest
    partial segment uncompressed under its segment's name. Returns the staging path and how
    many segments it holds."""
    staging = f"{(into or paths.store).area}/{PITR_STAGING}/{key}"
    script = STAGE_SCRIPT
    with host_connection(paths.store.backup_host, ctx=ctx) as bconn:
        out = bconn.run(
            [
                "sh",
                "-c",
                script,
                "sh",
                staging,
                f"{paths.bases}/{base.label}",
                paths.push_wal,
                paths.push_partial,
                base.start_wal,
            ],
            message=f"Staged base backup {base.label} and the archived WAL from its first "
            f"segment {base.start_wal or '(unknown: all of it)'} on (hard links)",
        ).stdout
    return staging, int(out.strip().splitlines()[-1] or 0)


def _home_point(instance: AtlassianInstance, target: datetime) -> Backup:
    point = (
        Backup.objects.filter(
            instance=instance, status=BackupStatus.SUCCEEDED, taken_at__lte=target
        )
        .order_by("-taken_at")
        .first()
    )
    if point is None:
        raise OperationFailed(
            f"No backup point of {instance.name}'s home was taken before "
            f"{target:%Y-%m-%d %H:%M:%S} UTC."
        )
    return point


def _base_for(instance: AtlassianInstance, target: datetime) -> BaseBackup:
    """The newest base backup finished at or before ``target``: the replay starts there."""
    base = (
        BaseBackup.objects.filter(
            instance=instance, status=BaseBackup.Status.SUCCEEDED, finished_at__lte=target
        )
        .order_by("-finished_at")
        .first()
    )
    if base is None:
        raise OperationFailed(
            f"No base backup of {instance.name} finished before {target:%Y-%m-%d %H:%M:%S} UTC."
        )
    return base


def _window_check(
    ctx: OperationContext, instance: AtlassianInstance, target: datetime, *, marker: bool = True
) -> None:
    """Refuse a target outside the window (or in a gap). ``marker``: write a commit and wait
    until it is archived first (a point of the archive wrote its own when it was taken)."""
    window = _window_with_marker(ctx, instance) if marker else recovery_window(instance)
    gap = recovery_gap(instance, target)
    if gap is not None:
        raise OperationFailed(
            f"{target:%Y-%m-%d %H:%M:%S} UTC lies on a timeline {instance.name} left when it was "
            f"restored to {gap[0]:%Y-%m-%d %H:%M:%S} UTC at {gap[1]:%Y-%m-%d %H:%M:%S} UTC: the "
            "archive cannot bring it back."
        )
    if window is None or not (window.start <= target <= window.end):
        span = (
            f"{window.start:%Y-%m-%d %H:%M:%S} to {window.end:%Y-%m-%d %H:%M:%S} UTC"
            if window
            else "empty"
        )
        raise OperationFailed(
            f"{target:%Y-%m-%d %H:%M:%S} UTC is outside {instance.name}'s recoverable window "
            f"({span})."
        )


def restore_to_time(
    ctx: OperationContext,
    instance: AtlassianInstance,
    target: datetime,
    *,
    point: Backup | None = None,
) -> dict[str, Any]:
    """Restore ``instance`` in place to ``target`` (a second inside its window): database
    replayed to that second, home from the newest point before it (or ``point``: a point of
    the archive restored in place, whose second ``target`` is). On failure after the stop,
    the previous data directory and home are put back and started."""
    _window_check(ctx, instance, target, marker=point is None)
    base = _base_for(instance, target)
    point = point or _home_point(instance, target)
    ctx.step(
        f"Database: base backup {base.label} replayed to {target:%Y-%m-%d %H:%M:%S} UTC; "
        f"home: point {point.point_name} ({point.taken_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    paths = wal_paths(instance)
    key = str(ctx.operation.pk)
    staging, segments = _stage_on_backup_host(ctx, paths, base, key)
    ctx.step(f"{segments} WAL files staged for the replay")
    idir = instance_dir(instance)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    aside_db, aside_home = f"{idir}/db.pre-restore-{stamp}", f"{idir}/home.pre-restore-{stamp}"
    source = source_prepare(ctx, point, instance)
    stopped = False
    try:
        with host_connection(_app_host(instance), ctx=ctx) as conn:
            pull = f"{idir}/{PITR_STAGING}"
            conn.run(["rm", "-rf", pull], record=False)
            rsync_run(
                ctx,
                conn,
                rsync_base(_app_host(instance))
                + [
                    rsync_remote(
                        _app_host(instance), paths.store.rsync_path(f"{PITR_STAGING}/{key}/")
                    ),
                    f"{pull}/",
                ],
                backup_host_name=paths.store.backup_host.name,
                message="Pulled the base backup and the WAL to the app host",
            )
            ctx.check_cancelled()
            conn.run(
                compose_argv(instance, "stop", "app", "wal", "db"),
                timeout=600,
                message="Stopped the app, the WAL receiver and the database",
            )
            stopped = True
            # The safety state stays on the app host: the old data directory moved aside,
            # the home hard-linked (rsync writes a new file and renames it, so the links keep
            # the old content).
            conn.run(["mv", f"{idir}/db", aside_db], message="Kept the current database aside")
            conn.run(
                ["cp", "-al", f"{idir}/home", aside_home],
                message="Kept the current home aside (hard links)",
            )
            home_pull(ctx, conn, instance, point, source, what="Pulled the point's home")
            _database_from_base(conn, idir, pull, target)
            conn.run(
                compose_argv(instance, "up", "-d", "--no-deps", "db"),
                timeout=300,
                message="Started the database: it replays the WAL to the target",
            )
            reached = _recovery_wait(ctx, conn, instance)
            ctx.step(f"Recovery finished; newest replayed transaction: {reached}")
            _reached_check(reached, target)
            psql(
                conn,
                instance,
                "ALTER SYSTEM RESET restore_command; ALTER SYSTEM RESET recovery_target_time;"
                " ALTER SYSTEM RESET recovery_target_action; SELECT pg_reload_conf();",
                database=instance.db_name,
                message="Removed the recovery settings",
            )
            conn.run(["rm", "-rf", f"{idir}/db/{PITR_WAL}", pull], record=False)
            # What the receiver wrote on the abandoned timeline would make it ask the new
            # timeline for a position past its fork; it starts from the new slot instead.
            conn.run(
                [
                    "sh",
                    "-c",
                    'rm -rf "$1"/* "$2"',
                    "sh",
                    f"{idir}/{WAL_DIR}",
                    f"{idir}/.wal-ship.partial",
                ],
                message="Emptied the WAL receiver's directory (a new timeline starts)",
            )
            conn.run(
                compose_argv(instance, "up", "-d"),
                timeout=300,
                message="Started the app and the WAL receiver",
            )
            wait_running(ctx, conn, instance, first=False)
            conn.run(["rm", "-rf", "--one-file-system", aside_db, aside_home], record=False)
    except BaseException as exc:
        if stopped:
            _put_back(ctx, instance, aside_db, aside_home)
        raise OperationFailed(f"Restore to {target:%Y-%m-%d %H:%M:%S} UTC failed: {exc}") from exc
    finally:
        source_release(ctx, point, source)
        with ctx.uncancellable(), host_connection(paths.store.backup_host, ctx=ctx) as bconn:
            bconn.run(["rm", "-rf", "--one-file-system", staging], record=False)
    # A new timeline began at the target: a base backup on it follows as an operation of its
    # own once this one ended (backups.services.base_after_restore), so the restore ends when
    # the instance answers, not a pg_basebackup later. Until it is taken, the points keep
    # their dump (point_database) and a restore to a later time replays from an older base.
    ctx.step("A base backup on the new timeline follows as its own operation")
    return {
        "target_time": target.isoformat(),
        "base_backup": base.label,
        "home_point": point.point_name,
        "home_taken_at": point.taken_at.isoformat(),
        "recovered_to": reached,
        "new_timeline": True,
    }


def database_to_time(source: AtlassianInstance, target_time: datetime) -> DatabaseBuilder:
    """How a copy of ``source`` gets its database for a restore to ``target_time`` into a new
    instance (given to :func:`backups.restore.restore_new`): the newest base backup before the
    time, replayed with the archived WAL on the copy's app host, then renamed to the copy's own
    database, user and password. Leaves the copy's database running."""
    return _database_replayed(source, target_time, reached=[])


def database_to_end(source: AtlassianInstance, reached: list[str]) -> DatabaseBuilder:
    """The database of ``source`` as of the end of its archive: the newest base backup replayed
    with every archived WAL file, the newest partial segment included, then promoted. For an
    instance whose host is gone (an evacuation): no marker commit can be written on it, and
    what was archived seconds before the failure comes back. ``source`` is the instance as it
    was on its old host (its archive is keyed by that host). The newest replayed transaction's
    time is appended to ``reached``."""
    return _database_replayed(source, None, reached=reached)


def _database_replayed(
    source: AtlassianInstance,
    target_time: datetime | None,
    *,
    reached: list[str],
    marker: bool = True,
) -> DatabaseBuilder:
    def build(ctx: OperationContext, conn: HostConnection, target: AtlassianInstance) -> None:
        if target_time is not None:
            _window_check(ctx, source, target_time, marker=marker)
            base = _base_for(source, target_time)
            ctx.step(
                f"Database: base backup {base.label} of {source.name} replayed to "
                f"{target_time:%Y-%m-%d %H:%M:%S} UTC"
            )
        else:
            base = _base_for(source, timezone.now())
            ctx.step(
                f"Database: base backup {base.label} of {source.name} replayed to the end of "
                "its archived WAL"
            )
        paths = wal_paths(source)
        if target.host is None:
            raise OperationFailed(f"{target.name} is not placed on an app host.")
        into = PointStore(paths.store.backup_host, target.host.name, target.name)
        key = str(ctx.operation.pk)
        staging = f"{into.area}/{PITR_STAGING}/{key}"
        idir = instance_dir(target)
        pull = f"{idir}/{PITR_STAGING}"
        try:
            _staging, segments = _stage_on_backup_host(ctx, paths, base, key, into=into)
            ctx.step(f"{segments} WAL files staged for the replay")
            conn.run(["rm", "-rf", pull], record=False)
            rsync_run(
                ctx,
                conn,
                rsync_base(target.host)
                + [
                    rsync_remote(target.host, into.rsync_path(f"{PITR_STAGING}/{key}/")),
                    f"{pull}/",
                ],
                backup_host_name=paths.store.backup_host.name,
                message="Pulled the base backup and the WAL to the app host",
            )
            # A new instance's database directory is empty (or not there): never replace data.
            conn.run(["sh", "-c", 'if [ -d "$1" ]; then rmdir "$1"; fi', "sh", f"{idir}/db"])
            _database_from_base(conn, idir, pull, target_time)
            conn.run(
                compose_argv(target, "up", "-d", "--no-deps", "db"),
                timeout=300,
                message="Started the copy's database: it replays the WAL to the target",
            )
            # Until it is renamed, the database has the source's name and owner.
            as_source = copy.copy(target)
            as_source.db_user, as_source.db_name = source.db_user, source.db_name
            newest = _recovery_wait(ctx, conn, as_source)
            ctx.step(f"Recovery finished; newest replayed transaction: {newest}")
            if target_time is not None:
                _reached_check(newest, target_time)
            reached.append(newest)
            psql(
                conn,
                as_source,
                "ALTER SYSTEM RESET restore_command; ALTER SYSTEM RESET recovery_target_time;"
                " ALTER SYSTEM RESET recovery_target_action; SELECT pg_reload_conf();",
                database=source.db_name,
                message="Removed the recovery settings",
            )
            if (source.db_name, source.db_user) != (target.db_name, target.db_user):
                with ctx.uncancellable():  # a half-renamed database is worse than either
                    _database_rename(ctx, conn, as_source, target)
            conn.run(["rm", "-rf", f"{idir}/db/{PITR_WAL}", pull], record=False)
        except BaseException:
            # The copy fails (restore_new marks it): no database left replaying or restarting,
            # and no pulled base and WAL left on its host.
            with ctx.uncancellable():
                conn.run(compose_argv(target, "stop", "db"), timeout=300, ok_codes=range(256))
                conn.run(["rm", "-rf", pull], record=False, ok_codes=range(256))
            raise
        finally:
            with ctx.uncancellable(), host_connection(paths.store.backup_host, ctx=ctx) as bconn:
                bconn.run(["rm", "-rf", "--one-file-system", staging], record=False)

    return build


def _reached_check(reached: str, target_time: datetime) -> None:
    """The replay must stop at or before the target (the first commit after it is not
    replayed): a later newest transaction means the copy holds data from after the time."""
    try:
        moment = datetime.fromisoformat(reached)
    except ValueError:
        return  # "unknown": nothing was replayed after the base, which is before the target
    if moment > target_time:
        raise OperationFailed(
            f"The replay went past the target: its newest transaction is from {reached}, "
            f"after {target_time:%Y-%m-%d %H:%M:%S} UTC."
        )


RENAME_ROLE = "panel_rename"


def _database_rename(
    ctx: OperationContext,
    conn: HostConnection,
    as_source: AtlassianInstance,
    target: AtlassianInstance,
) -> None:
    """Give the recovered database the copy's own name, owner and password. PostgreSQL will not
    rename the role a session runs as, so a short-lived superuser does it (trusted over the
    container's local socket, as the official image's pg_hba.conf allows) and is dropped."""
    ctx.add_secrets([target.db_password])
    psql(
        conn,
        as_source,
        f"CREATE ROLE {RENAME_ROLE} SUPERUSER LOGIN;",
        database="postgres",
        message="Made a short-lived role to rename the copy's database and owner",
    )
    as_renamer = copy.copy(as_source)
    as_renamer.db_user = RENAME_ROLE
    # The password goes on stdin (never in a command line); psql quotes it (:'password').
    if not re.fullmatch(r"[A-Za-z0-9_-]+", target.db_password):
        raise OperationFailed("The copy's database password has unexpected characters.")
    psql(
        conn,
        as_renamer,
        f"\\set password '{target.db_password}'\n"
        'ALTER DATABASE :"src_db" RENAME TO :"db";\n'
        'ALTER ROLE :"src_user" RENAME TO :"user";\n'
        "ALTER ROLE :\"user\" PASSWORD :'password';\n",
        database="postgres",
        variables={
            "src_db": as_source.db_name,
            "db": target.db_name,
            "src_user": as_source.db_user,
            "user": target.db_user,
        },
        message=f"Renamed the database to {target.db_name}, owned by {target.db_user}",
    )
    psql(
        conn,
        target,
        f"DROP ROLE {RENAME_ROLE};",
        database=target.db_name,
        message="Dropped the short-lived role",
    )


def gap_record(instance: AtlassianInstance, target: datetime) -> None:
    """Remember that a restore in place to ``target`` forked a new timeline there: the times
    from ``target`` to now can no longer be restored to (see ``WalArchive.gaps``)."""
    with transaction.atomic():
        archive, _ = WalArchive.objects.select_for_update().get_or_create(instance=instance)
        archive.gaps = [*archive.gaps, [target.isoformat(), timezone.now().isoformat()]]
        archive.save(update_fields=["gaps"])


def _database_from_base(
    conn: HostConnection, idir: str, pull: str, target: datetime | None
) -> None:
    """A data directory from the base backup, set to replay the pulled WAL to ``target``, or
    (None) to the end of the pulled WAL: with no recovery target, PostgreSQL replays until the
    restore command finds no next file and then promotes."""
    db = f"{idir}/db"
    settings_text = f"restore_command = 'cp /var/lib/postgresql/data/{PITR_WAL}/%f \"%p\"'\n"
    if target is not None:
        settings_text += (
            f"recovery_target_time = '{target.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00'\n"
            "recovery_target_action = 'promote'\n"
        )
    conn.run(
        [
            "sh",
            "-c",
            'set -e; mkdir -m 0700 "$1"; tar -xzf "$2/base.tar.gz" -C "$1" --same-owner; '
            'mv "$2/wal" "$1/$3"; printf "%s" "$4" >> "$1/postgresql.auto.conf"; '
            'touch "$1/recovery.signal"; chown -R 999:999 "$1"',
            "sh",
            db,
            pull,
            PITR_WAL,
            settings_text,
        ],
        message="Unpacked the base backup and set the recovery target",
    )


def _recovery_wait(ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance) -> str:
    """Wait until the database has replayed to its target and promoted; the newest replayed
    commit time. A database that stops (e.g. the target is past the archived WAL) fails with
    its log's last lines."""
    deadline = time.monotonic() + float(settings.PANEL_WAL_RECOVERY_TIMEOUT)
    probe = compose_argv(
        instance,
        "exec",
        "-T",
        "db",
        "psql",
        "-X",
        "-A",
        "-t",
        "-U",
        instance.db_user,
        "-d",
        instance.db_name,
        "-c",
        "SELECT pg_is_in_recovery(), coalesce(pg_last_xact_replay_timestamp()::text, '')",
    )
    while True:
        ctx.check_cancelled()
        result = conn.run(probe, ok_codes=range(256), record=False)
        if result.exit_code == 0 and result.stdout.strip().startswith("f"):
            return result.stdout.strip().split("|", 1)[-1] or "unknown"
        state = conn.run(
            compose_argv(instance, "ps", "--all", "--format", "{{.State}}", "db"),
            ok_codes=range(256),
            record=False,
        ).stdout.strip()
        # "restarting": the server stopped and its restart policy brings it back to fail the
        # same way (e.g. a segment the replay needs is missing); waiting would never end.
        if state in ("exited", "dead", "restarting") or time.monotonic() > deadline:
            log = conn.run(
                compose_argv(instance, "logs", "--tail", "15", "--no-color", "db"),
                ok_codes=range(256),
                record=False,
            ).stdout
            raise OperationFailed(f"The database did not finish its recovery: {log[-1500:]}")
        time.sleep(2)


def _put_back(
    ctx: OperationContext, instance: AtlassianInstance, aside_db: str, aside_home: str
) -> None:
    """Compensation: the data directory and home as they were before the restore, started."""
    idir = instance_dir(instance)
    with ctx.uncancellable(), host_connection(_app_host(instance), ctx=ctx) as conn:
        conn.run(
            compose_argv(instance, "stop", "app", "wal", "db"), timeout=600, ok_codes=range(256)
        )
        conn.run(
            [
                "sh",
                "-c",
                'set -e; if [ -d "$2" ]; then rm -rf --one-file-system "$1/db"; '
                'mv "$2" "$1/db"; fi; '
                'if [ -d "$3" ]; then rm -rf --one-file-system "$1/home"; mv "$3" "$1/home"; fi; '
                'rm -rf "$1/' + PITR_STAGING + '"',
                "sh",
                idir,
                aside_db,
                aside_home,
            ],
            message="Put the previous database and home back",
        )
        conn.run(compose_argv(instance, "up", "-d"), timeout=300, message="Started it again")
        wait_running(ctx, conn, instance, first=False)


def _window_with_marker(ctx: OperationContext, instance: AtlassianInstance) -> Window | None:
    """The window, after writing one commit on the running database and waiting until it is
    archived: recovery to a time stops at the first commit after it, and fails ("recovery
    ended before configured recovery target was reached") if the WAL holds none."""
    with host_connection(_app_host(instance), ctx=ctx) as conn:
        marked = marker_write(conn, instance, "Wrote a commit for the replay to stop at")
        wal_shipped_wait(ctx, conn, instance, marked)
    return recovery_window(instance)


def wal_window_now(ctx: OperationContext, instance: AtlassianInstance) -> Window | None:
    """The window with the archive's state read from the app host now."""
    with host_connection(_app_host(instance), ctx=ctx) as conn:
        wal_state_read(conn, instance)
    return recovery_window(instance)
