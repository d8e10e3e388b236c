"""Taking a backup point: database dump, home copy, verification, retention, catalogue.

Layout on the backup host::

    <backup data_root>/incoming/<app host>/          the app host's write-only rsync root
        <instance>/incoming/<point>/   being pushed by the app host
        <instance>/base/home/          hard links of the newest point, for --link-dest
    <backup data_root>/hosts/<app host>/             the app host's read-only rsync root
        <instance>/commit/<point>/     moved out of the write root, being verified (panel only)
        <instance>/points/<point>/     committed points
            home/              the product's home directory (numeric owners, modes, hard links)
            db.dump            pg_dump --format=custom of the instance's database
            manifest.sha256    sha256 of every file, computed on the app host
            manifest.stat      type, mode, owner, size and mtime of every entry
            point.json         what the catalogue needs to know about the point

The app host's key may only *write* into its incoming area and only *read* its own points (the
forced command of :func:`provisioning.hosts.backup_access_line`: rrsync ``-wo -munge`` with
``--ignore-existing`` forced, or ``-ro -munge``). It pushes with ``--link-dest`` at ``base``, a
hard-link copy of the newest point the panel makes, so unchanged files are hard links to it
(rsync links a file only when content, owner, mode and mtime all match); ``--ignore-existing``
means no rsync session can change a file that already exists there, so the shared inodes of
committed points stay as they are. The panel's own connection then moves the copy out of the
write root while it holds rrsync's lock (no session of the app host runs meanwhile), verifies it
against the manifest, and renames it into ``points/``; only then does retention
(:mod:`backups.retention`) prune, from the catalogue in the database, never from directory
names. A failed or partial run therefore never ages out a good point, and nothing the app host
sends can delete, rewrite or forge a committed point.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from backups.models import Backup, BackupKind, BackupMode, BackupPolicy, BackupStatus
from backups.retention import EXTRA_SUFFIX, Point, point_name, point_parse, retention_plan
from panel.operations import OperationContext, OperationFailed, OperationFenced
from provisioning.compose import instance_dir
from provisioning.hosts import host_backup_ssh_argv, host_connection
from provisioning.models import AtlassianInstance, Host, Operation, OperationKind
from provisioning.remote import HostConnection, RemoteError
from provisioning.rollout import instance_probe, wait_running

log = logging.getLogger(__name__)

DUMP_FILE = "db.dump"
RESTORE_DUMP_FILE = "restore.dump"

_SHA_SCRIPT = (
    'set -e; cd "$1"; shift; '
    'find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --'
)
_STAT_SCRIPT = 'set -e; cd "$1"; shift; find "$@" -printf "%y %#m %U %G %s %T@ %p\\0%l\\0"'
_DUMP_SCRIPT = """set -eu
umask 077
dir="$1"; project="$2"; user="$3"; db="$4"; out="$1/db.dump"
trap 'rm -f "$out.partial"' EXIT
dc() { docker compose --project-directory "$dir" --project-name "$project" "$@"; }
dc exec -T db pg_dump --format=custom --username="$user" --dbname="$db" > "$out.partial"
dc exec -T db pg_restore --list < "$out.partial" > /dev/null
mv -f "$out.partial" "$out"
sha256sum "$out" | cut -d' ' -f1
stat -c %s "$out"
"""
_RSYNC_EXIT = {
    1: "a syntax or usage error",
    3: "errors selecting input/output files or directories",
    5: "an error starting the client-server protocol",
    10: "an error in socket I/O",
    11: "an error in file I/O",
    12: "the connection to the backup host broke (error in the rsync protocol data stream)",
    23: "a partial transfer (some files could not be copied)",
    24: "files vanished while they were copied",
    30: "a timeout while waiting for the backup host",
    35: "a timeout waiting for the backup host's rsync",
    255: "the SSH connection to the backup host failed",
}


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- layout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointStore:
    """Where one instance's points live on a backup host, seen by the panel and by rsync."""

    backup_host: Host
    app_host_name: str
    instance_name: str

    @property
    def area(self) -> str:
        """Absolute path on the backup host (the panel's own connection): the instance's
        directory in the app host's read-only root, where committed points live."""
        return f"{self.backup_host.data_root}/hosts/{self.app_host_name}/{self.instance_name}"

    @property
    def push_root(self) -> str:
        """The app host's write-only rsync root (its incoming area); rrsync locks it."""
        return f"{self.backup_host.data_root}/incoming/{self.app_host_name}"

    @property
    def push_area(self) -> str:
        return f"{self.push_root}/{self.instance_name}"

    @property
    def base(self) -> str:
        """Hard links of the newest point inside the write root, for ``--link-dest``."""
        return f"{self.push_area}/base"

    def point(self, name: str) -> str:
        return f"{self.area}/points/{name}"

    def incoming(self, name: str) -> str:
        """Where the app host pushes a new point (inside its write-only root)."""
        return f"{self.push_area}/incoming/{name}"

    def commit(self, name: str) -> str:
        """Where the panel verifies a point after moving it out of the write root."""
        return f"{self.area}/commit/{name}"

    def rsync_path(self, sub: str) -> str:
        """A path as the app host's restricted rsync sees it (anchored at its root: the read
        root for pulls, the write root for pushes; both hold one directory per instance)."""
        return f"/{self.instance_name}/{sub}"


def store_for(instance: AtlassianInstance, app_host: Host) -> PointStore:
    backup_host = effective_backup_host(instance, app_host)
    return PointStore(backup_host, app_host.name, instance.name)


def store_of(backup: Backup) -> PointStore:
    return PointStore(backup.backup_host, backup.app_host.name, backup.instance.name)


def effective_backup_host(instance: AtlassianInstance, app_host: Host | None = None) -> Host:
    """The backup host of ``instance``: its policy's, else its app host's.

    The app host's key is authorised only on the app host's own backup host, so a policy may
    name another one only once the app host has been provisioned with it.
    """
    app_host = app_host or instance.host
    if app_host is None:
        raise OperationFailed(f"{instance.name} is not placed on an app host.")
    policy = BackupPolicy.objects.filter(instance=instance).select_related("backup_host").first()
    wanted = policy.backup_host if policy is not None and policy.backup_host_id else None
    current = app_host.backup_host
    if current is None:
        raise OperationFailed(
            f"App host {app_host.name} has no backup host; a platform admin must give it one "
            "and provision it again."
        )
    if wanted is not None and wanted.pk != current.pk:
        raise OperationFailed(
            f"The backup policy names {wanted.name}, but {app_host.name} is provisioned to push "
            f"its backups to {current.name}. Provision {app_host.name} with {wanted.name} as "
            "its backup host first."
        )
    return current


# --- rsync ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RsyncResult:
    exit_code: int
    bytes_sent: int
    output: str


def _stats_number(output: str, label: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith(label):
            digits = "".join(ch for ch in line.split(":", 1)[1].split()[0] if ch.isdigit())
            return int(digits or 0)
    return 0


def rsync_run(
    ctx: OperationContext | None,
    conn: HostConnection,
    argv: list[str],
    *,
    message: str,
    allow_vanished: bool = False,
    backup_host_name: str = "the backup host",
) -> RsyncResult:
    """Run rsync on ``conn``; wait while the backup host's rrsync is busy with another copy of
    the same app host (it allows one at a time per directory); readable errors otherwise."""
    wait_until = time.monotonic() + float(_setting("PANEL_BACKUP_RRSYNC_BUSY_WAIT", 300))
    while True:
        result = conn.run(
            argv,
            ok_codes=range(256),
            timeout=_setting("PANEL_BACKUP_RSYNC_TIMEOUT", 4 * 3600),
            message=message,
        )
        text = result.stderr + result.stdout
        if result.exit_code != 0 and "Another instance of rrsync" in text:
            if time.monotonic() > wait_until:
                raise OperationFailed(
                    f"{backup_host_name} kept refusing the copy: another copy of the same app "
                    "host was running the whole time."
                )
            if ctx is not None:
                ctx.step(
                    f"{backup_host_name} is busy with another copy of this app host; waiting",
                    level="debug",
                )
                ctx.check_cancelled()
            time.sleep(3)
            continue
        break
    ok = result.exit_code == 0 or (allow_vanished and result.exit_code == 24)
    if not ok:
        reason = _RSYNC_EXIT.get(result.exit_code, f"exit code {result.exit_code}").replace(
            "the backup host", backup_host_name
        )
        if "No space left on device" in text:
            reason = f"{backup_host_name}'s disk is full (No space left on device)"
        detail = (result.stderr.strip() or result.stdout.strip())[-400:]
        raise OperationFailed(
            f"Copying with rsync failed: {reason} (rsync exit {result.exit_code}). {detail}"
        )
    return RsyncResult(
        result.exit_code, _stats_number(result.stdout, "Total bytes sent"), result.stdout
    )


def rsync_base(app_host: Host) -> list[str]:
    """rsync options shared by every copy between an app host and its backup host."""
    argv = [
        "rsync",
        "-aH",
        "--numeric-ids",
        "--stats",
        f"--timeout={int(_setting('PANEL_BACKUP_RSYNC_IO_TIMEOUT', 60))}",
        "-e",
        shlex.join(host_backup_ssh_argv(app_host)),
    ]
    bwlimit = int(_setting("PANEL_BACKUP_RSYNC_BWLIMIT", 0) or 0)
    if bwlimit:
        argv.append(f"--bwlimit={bwlimit}")
    return argv


def rsync_remote(app_host: Host, path: str) -> str:
    backup = app_host.backup_host
    assert backup is not None
    return f"{backup.ssh_user}@{backup.peer_address}:{path}"


# --- manifest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of ``manifest.stat``."""

    kind: str
    mode: str
    uid: int
    gid: int
    size: int
    mtime: int
    target: str

    def comparable(self) -> tuple:
        # Directory sizes and times depend on the file system and on rsync's order of work.
        if self.kind == "d":
            return (self.kind, self.mode, self.uid, self.gid)
        if self.kind == "l":
            return (self.kind, self.uid, self.gid, self.target)
        return (self.kind, self.mode, self.uid, self.gid, self.size, self.mtime)


# rrsync -munge makes the backup host store a pushed symlink's target behind this prefix (so it
# leads nowhere there); pulling through rrsync -munge takes it off again.
MUNGE_PREFIX = "/rsyncd-munged/"


def stat_parse(text: str) -> dict[str, Entry]:
    """``manifest.stat`` text as {path: Entry}; symlink targets as the instance sees them."""
    fields = text.split("\0")
    entries: dict[str, Entry] = {}
    for i in range(0, len(fields) - 1, 2):
        parts = fields[i].split(" ", 6)
        if len(parts) < 7:
            continue
        kind, mode, uid, gid, size, mtime, path = parts
        target = fields[i + 1]
        if kind == "l":
            target = target.removeprefix(MUNGE_PREFIX)
        entries[path] = Entry(kind, mode, int(uid), int(gid), int(size), int(float(mtime)), target)
    return entries


def stat_differences(source: dict[str, Entry], copy: dict[str, Entry]) -> list[str]:
    paths = set(source) | set(copy)
    return sorted(
        p
        for p in paths
        if p not in source or p not in copy or source[p].comparable() != copy[p].comparable()
    )


def _manifest(conn: HostConnection, base: str, entries: list[str]) -> tuple[str, str]:
    sha = conn.run(["sh", "-c", _SHA_SCRIPT, "sh", base, *entries], record=False).stdout
    stat = conn.run(["sh", "-c", _STAT_SCRIPT, "sh", base, *entries], record=False).stdout
    return sha, stat


def manifest_check(bconn: HostConnection, directory: str) -> list[str]:
    """Check every file of a point against its ``manifest.sha256`` on the backup host; the
    paths that do not match (empty when the point is intact)."""
    result = bconn.run(
        [
            "sh",
            "-c",
            'cd "$1" && sha256sum --check --strict --quiet manifest.sha256',
            "sh",
            directory,
        ],
        ok_codes=range(256),
        timeout=_setting("PANEL_BACKUP_VERIFY_TIMEOUT", 4 * 3600),
        message=f"Verified {directory} against its checksum manifest",
    )
    if result.exit_code == 0:
        return []
    bad = [
        line.rsplit(":", 1)[0].removeprefix("sha256sum: ")
        for line in (result.stdout + result.stderr).splitlines()
        if "FAILED" in line or "No such file" in line
    ]
    return bad or [f"(sha256sum exit {result.exit_code}: {result.stderr.strip()[-200:]})"]


# --- database dump --------------------------------------------------------------------------


def compose_argv(instance: AtlassianInstance, *args: str) -> list[str]:
    return [
        "docker",
        "compose",
        "--project-directory",
        instance_dir(instance),
        "--project-name",
        instance.name,
        *args,
    ]


def running_services(conn: HostConnection, instance: AtlassianInstance) -> set[str]:
    result = conn.run(
        compose_argv(instance, "ps", "--status", "running", "--services"),
        ok_codes=range(256),
        record=False,
        timeout=60,
    )
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def db_wait_ready(
    ctx: OperationContext | None,
    conn: HostConnection,
    instance: AtlassianInstance,
    timeout: float = 120,
) -> None:
    """Wait until the database container accepts TCP connections (its entrypoint's temporary
    socket-only server during initdb does not count)."""
    deadline = time.monotonic() + timeout
    while True:
        result = conn.run(
            compose_argv(
                instance,
                "exec",
                "-T",
                "db",
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-U",
                instance.db_user,
                "-d",
                instance.db_name,
            ),
            ok_codes=range(256),
            record=False,
            timeout=30,
        )
        if result.exit_code == 0:
            if ctx is not None:
                ctx.step(f"The database of {instance.name} accepts connections")
            return
        if time.monotonic() > deadline:
            raise OperationFailed(
                f"The database of {instance.name} did not accept connections within "
                f"{timeout:g} s: {(result.stdout + result.stderr).strip()[-200:]}"
            )
        if ctx is not None:
            ctx.check_cancelled()
        time.sleep(1)


def dump_create(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance
) -> tuple[str, int]:
    """``pg_dump --format=custom`` inside the db container into ``<instance dir>/db.dump`` on
    the app host (the data never passes through the panel); checked with ``pg_restore
    --list``. Returns (sha256, size)."""
    result = conn.run(
        [
            "sh",
            "-c",
            _DUMP_SCRIPT,
            "sh",
            instance_dir(instance),
            instance.name,
            instance.db_user,
            instance.db_name,
        ],
        timeout=_setting("PANEL_BACKUP_DUMP_TIMEOUT", 4 * 3600),
        message=f"Dumped database {instance.db_name} with pg_dump inside the db container",
    )
    lines = result.stdout.split()
    if len(lines) < 2:
        raise OperationFailed(f"pg_dump printed no checksum: {result.stdout[-200:]}")
    return lines[0], int(lines[1])


# --- one backup -----------------------------------------------------------------------------


def backup_record_start(
    instance: AtlassianInstance,
    *,
    kind: str,
    mode: str,
    taken_at: datetime | None = None,
    operation: Operation | None = None,
) -> Backup:
    """The catalogue row of a backup that starts now (status running)."""
    taken_at = (taken_at or timezone.now()).replace(microsecond=0)
    app_host = instance.host
    return Backup.objects.create(
        instance=instance,
        operation=operation,
        kind=kind,
        mode=mode,
        backup_host=effective_backup_host(instance, app_host),
        app_host=app_host,
        point_name=point_name(taken_at, kind=kind),
        taken_at=taken_at,
        product=instance.product,
        version=instance.version,
        started_at=timezone.now(),
        status=BackupStatus.RUNNING,
    )


def point_store(
    ctx: OperationContext,
    *,
    instance: AtlassianInstance,
    backup: Backup,
    app: HostConnection,
    bconn: HostConnection,
    dump_sha256: str,
    dump_bytes: int,
) -> dict[str, Any]:
    """Push ``home`` and ``db.dump`` of the instance into a new point, verify it, commit it,
    apply retention and bring the catalogue in line. The dump must already be written."""
    app_host = backup.app_host
    store = store_of(backup)
    name = backup.point_name
    idir = instance_dir(instance)
    incoming = store.incoming(name)
    previous = newest_point(bconn, instance=instance, store=store)
    disk_check(ctx, bconn, app, store=store, idir=idir, dump_bytes=dump_bytes, previous=previous)
    bconn.run(
        [
            "sh",
            "-c",
            'set -e; mkdir -p -m 0750 "$1/points" "$1/commit" "$2/incoming"; '
            # "$1/incoming": where points were pushed before the write root was split off.
            'rm -rf --one-file-system "$1/commit/"* "$1/incoming" "$2/incoming/"* "$2/base"; '
            'mkdir -m 0750 "$2/incoming/$3"; '
            'if [ -n "$4" ]; then mkdir -m 0750 "$2/base"; '
            'cp -al "$1/points/$4/home" "$2/base/home"; fi',
            "sh",
            store.area,
            store.push_area,
            name,
            previous.point_name if previous else "",
        ],
        message="Prepared the incoming area on the backup host"
        + (f" (hard links of {previous.point_name} to compare with)" if previous else ""),
    )
    argv = rsync_base(app_host) + ["--delete"]
    if previous is not None:
        argv.append(f"--link-dest={store.rsync_path('base')}")
    argv += [
        f"{idir}/home",
        f"{idir}/{DUMP_FILE}",
        rsync_remote(app_host, store.rsync_path(f"incoming/{name}/")),
    ]
    hot = backup.mode == BackupMode.HOT
    started = time.monotonic()
    pushed = rsync_run(
        ctx,
        app,
        argv,
        allow_vanished=hot,
        backup_host_name=store.backup_host.name,
        message=f"Pushed home and dump to {store.backup_host.name}"
        + (f" (unchanged files hard-linked to {previous.point_name})" if previous else ""),
    )
    bytes_sent = pushed.bytes_sent
    ctx.check_cancelled()

    sha, source_stat = _manifest(app, idir, ["home", DUMP_FILE])
    bconn.upload(
        f"{incoming}/manifest.sha256",
        sha,
        mode=0o600,
        message="Wrote the checksum manifest computed on the app host",
    )
    differing = _point_differences(bconn, incoming, source_stat)
    if differing:
        # rsync's quick check compares sizes and whole-second mtimes, so a file rewritten
        # with the same size within the second the previous point read it looks unchanged
        # and --link-dest links the stale copy; in hot mode files may also just have
        # changed while they were copied. A second pass comparing contents fixes both. The
        # write root forces --ignore-existing, so the panel removes those entries first.
        ctx.step(
            f"{len(differing)} entries differ from the instance; copying them again, "
            "comparing contents",
            level="warning",
            output="\n".join(differing[:50]),
        )
        _paths_remove(bconn, incoming, differing)
        bytes_sent += rsync_run(
            ctx,
            app,
            [argv[0], "--checksum", *argv[1:]],
            allow_vanished=hot,
            backup_host_name=store.backup_host.name,
            message="Copied the differing files again (--checksum)",
        ).bytes_sent
        sha, source_stat = _manifest(app, idir, ["home", DUMP_FILE])

    commit = store.commit(name)
    _commit_move(bconn, store, incoming, commit)
    # The hard links to compare with are no longer needed: left there, they would keep the
    # files of points that retention prunes alive on the backup host's disk.
    bconn.run(["rm", "-rf", "--one-file-system", store.base], record=False)
    try:
        result = _point_commit(
            ctx,
            bconn,
            instance=instance,
            backup=backup,
            store=store,
            commit=commit,
            sha=sha,
            source_stat=source_stat,
            hot=hot,
            dump_sha256=dump_sha256,
            dump_bytes=dump_bytes,
            previous=previous,
        )
    except Exception:
        try:
            bconn.run(["rm", "-rf", "--one-file-system", commit], record=False)
        except RemoteError:
            log.warning("could not remove %s on %s", commit, store.backup_host.name)
        raise
    duration = time.monotonic() - started
    Backup.objects.filter(pk=backup.pk).update(bytes_transferred=bytes_sent)
    kept = retention_apply(ctx, bconn, instance=instance, store=store)
    return {
        **result,
        "bytes_transferred": bytes_sent,
        "copy_seconds": round(duration, 2),
        "label": kept.get(name, ""),
        "retained_points": len(kept),
    }


def _point_differences(bconn: HostConnection, directory: str, source_stat: str) -> list[str]:
    """Entries of the copy in ``directory`` whose content (against its manifest.sha256) or
    type, owner, mode, size or mtime differ from the instance's."""
    bad = manifest_check(bconn, directory)
    copy_stat = bconn.run(
        ["sh", "-c", _STAT_SCRIPT, "sh", directory, "home", DUMP_FILE], record=False
    ).stdout
    return sorted(set(bad) | set(stat_differences(stat_parse(source_stat), stat_parse(copy_stat))))


def _safe_entry(path: str) -> bool:
    """A path of the point's own tree (``home/...`` or the dump) with no way out of it."""
    parts = path.split("/")
    return (
        parts[0] in ("home", DUMP_FILE)
        and ".." not in parts
        and "" not in parts
        and not any(ch in path for ch in "\0\n")
    )


def _paths_remove(bconn: HostConnection, directory: str, paths: list[str]) -> None:
    """Remove entries of a point being built (never anything outside ``directory``)."""
    safe = [p for p in paths if _safe_entry(p)]
    for i in range(0, len(safe), 500):
        bconn.run(
            [
                "sh",
                "-c",
                'd="$1"; shift; for p in "$@"; do rm -rf --one-file-system -- "$d/$p"; done',
                "sh",
                directory,
                *safe[i : i + 500],
            ],
            record=False,
        )


def _commit_move(bconn: HostConnection, store: PointStore, incoming: str, commit: str) -> None:
    """Move the pushed copy out of the app host's write root while holding rrsync's own lock
    on that root: no rsync session of the app host runs meanwhile (rrsync allows one at a
    time), so none can keep writing into the copy through a directory it has open."""
    wait = int(_setting("PANEL_BACKUP_RRSYNC_BUSY_WAIT", 300))
    bconn.run(
        [
            "flock",
            "--exclusive",
            "--timeout",
            str(wait),
            store.push_root,
            "mv",
            "-T",
            incoming,
            commit,
        ],
        timeout=wait + 60,
        message="Moved the copy out of the app host's incoming area (under rrsync's lock)",
    )


def _point_commit(
    ctx: OperationContext,
    bconn: HostConnection,
    *,
    instance: AtlassianInstance,
    backup: Backup,
    store: PointStore,
    commit: str,
    sha: str,
    source_stat: str,
    hot: bool,
    dump_sha256: str,
    dump_bytes: int,
    previous: Backup | None,
) -> dict[str, Any]:
    """Verify the copy in ``commit`` (out of the app host's reach) and rename it into
    ``points/``; the catalogue row becomes SUCCEEDED."""
    name = backup.point_name
    source = stat_parse(source_stat)

    def copy_entries() -> tuple[str, dict[str, Entry]]:
        text = bconn.run(
            ["sh", "-c", _STAT_SCRIPT, "sh", commit, "home", DUMP_FILE], record=False
        ).stdout
        return text, stat_parse(text)

    copy_stat, entries = copy_entries()
    # Entries the instance does not have (deleted during a hot copy, or sent by something
    # else than the panel's push) are not part of the point.
    stray = sorted(set(entries) - set(source))
    if stray:
        ctx.step(
            f"Removed {len(stray)} entries the instance does not have from the copy",
            level="warning",
            output="\n".join(stray[:50]),
        )
        _paths_remove(bconn, commit, stray)
        copy_stat, entries = copy_entries()
    bconn.upload(
        f"{commit}/manifest.sha256",
        sha,
        mode=0o600,
        message="Wrote the checksum manifest computed on the app host",
    )
    bad = manifest_check(bconn, commit)
    differing = sorted(set(bad) | set(stat_differences(source, entries)))
    changed: list[str] = []
    if differing:
        if not hot:
            raise OperationFailed(
                f"The copy on {store.backup_host.name} does not match the instance: "
                f"{len(differing)} entries differ ({', '.join(differing[:5])})."
            )
        changed = differing
        ctx.step(
            f"{len(changed)} files kept changing during the hot backup; the point holds the "
            "version copied last and its manifest describes exactly what was stored",
            level="warning",
            output="\n".join(changed[:50]),
        )
        sha, _ = _manifest(bconn, commit, ["home", DUMP_FILE])
        bconn.upload(
            f"{commit}/manifest.sha256",
            sha,
            mode=0o600,
            message="Rewrote the manifest from the stored copy",
        )
        if manifest_check(bconn, commit):
            raise OperationFailed(f"The copy on {store.backup_host.name} cannot be verified.")
    dump_entry = entries.get(DUMP_FILE)
    if (
        dump_entry is None
        or dump_entry.size != dump_bytes
        or (f"{dump_sha256}  {DUMP_FILE}" not in sha.splitlines())
    ):
        raise OperationFailed(
            "The database dump on the backup host does not match the one "
            "pg_dump wrote on the app host."
        )
    file_count = sum(1 for p, e in entries.items() if e.kind == "f" and p.startswith("home/"))
    logical = sum(e.size for e in entries.values() if e.kind == "f")
    manifest_sha = hashlib.sha256(sha.encode()).hexdigest()
    info = {
        "instance": instance.name,
        "instance_id": str(instance.pk),
        "tenant": instance.tenant.slug,
        "product": instance.product,
        "version": instance.version,
        "point": name,
        "taken_at": backup.taken_at.isoformat(),
        "kind": backup.kind,
        "mode": backup.mode,
        "dump_sha256": dump_sha256,
        "dump_bytes": dump_bytes,
        "file_count": file_count,
        "logical_bytes": logical,
        "manifest_sha256": manifest_sha,
        "changed_during_backup": len(changed),
        "app_host": backup.app_host.name,
    }
    bconn.upload(
        f"{commit}/manifest.stat", copy_stat, mode=0o600, message="Wrote the owner/mode manifest"
    )
    bconn.upload(
        f"{commit}/point.json",
        json.dumps(info, indent=2) + "\n",
        mode=0o600,
        message="Wrote point.json",
    )
    bconn.run(
        ["mv", "-T", commit, store.point(name)],
        message=f"Committed point {name} (verified: {file_count} files, dump {dump_bytes} bytes)",
    )
    verified_at = timezone.now()
    earlier = [store.point(previous.point_name)] if previous else []
    disk = _disk_usage(bconn, earlier, store.point(name))
    Backup.objects.filter(pk=backup.pk).update(
        logical_bytes=logical,
        disk_bytes=disk,
        file_count=file_count,
        dump_bytes=dump_bytes,
        dump_sha256=dump_sha256,
        manifest_sha256=manifest_sha,
        verified_at=verified_at,
        changed_during_backup=len(changed),
        status=BackupStatus.SUCCEEDED,
    )
    return {
        "point": name,
        "logical_bytes": logical,
        "disk_bytes": disk,
        "file_count": file_count,
        "dump_bytes": dump_bytes,
        "changed_during_backup": len(changed),
    }


def disk_check(
    ctx: OperationContext,
    bconn: HostConnection,
    app: HostConnection,
    *,
    store: PointStore,
    idir: str,
    dump_bytes: int,
    previous: Backup | None,
) -> None:
    """Refuse a new point when the backup host's disk would pass
    ``PANEL_BACKUP_DISK_MAX_PERCENT`` with it: a full disk fails every tenant's backups on that
    host. The estimate is the dump plus what the newest point added (the whole home for a
    first point)."""
    limit = float(_setting("PANEL_BACKUP_DISK_MAX_PERCENT", 90))
    if limit <= 0 or limit >= 100:
        return
    if previous is not None:
        home = max(0, (previous.disk_bytes or 0) - (previous.dump_bytes or 0))
    else:
        out = app.run(["du", "-s", "-B1", f"{idir}/home"], record=False, ok_codes=range(256))
        home = int((out.stdout.split() or ["0"])[0] or 0) if out.exit_code == 0 else 0
    estimate = dump_bytes + home
    out = bconn.run(
        ["df", "-P", "-B1", store.backup_host.data_root], record=False
    ).stdout.splitlines()
    fields = out[-1].split() if len(out) > 1 else []
    if len(fields) < 4 or not fields[1].isdigit():
        raise OperationFailed("Could not read the free space of the backup host's disk.")
    total, used = int(fields[1]), int(fields[2])
    after = 100.0 * (used + estimate) / total if total else 100.0
    if after > limit:
        log.error(
            "backup host %s: disk would be %.1f%% full (limit %.0f%%)",
            store.backup_host.name,
            after,
            limit,
        )
        raise OperationFailed(
            f"Not enough space for a new point: the backup host's disk would be {after:.0f} % "
            f"full with it (limit {limit:g} %, about {estimate} bytes needed). Nothing was "
            "written; a platform admin must free space or move instances to another backup "
            "host."
        )
    ctx.step(
        f"The backup host's disk will be about {after:.0f} % full with this point "
        f"(limit {limit:g} %)",
        level="debug",
    )


def newest_point(
    bconn: HostConnection, *, instance: AtlassianInstance, store: PointStore
) -> Backup | None:
    """The newest committed point of the catalogue that is still on the backup host."""
    on_disk = {p.name for p in points_present(bconn, store)}
    rows = _catalogued(instance, store).filter(status=BackupStatus.SUCCEEDED)
    return next((r for r in rows.order_by("-taken_at") if r.point_name in on_disk), None)


def _catalogued(instance: AtlassianInstance, store: PointStore) -> Any:
    return Backup.objects.filter(
        instance=instance, backup_host=store.backup_host, app_host__name=store.app_host_name
    ).exclude(point_name="")


def _disk_usage(bconn: HostConnection, earlier: list[str], path: str) -> int:
    """New bytes ``path`` occupies beyond ``earlier`` (du counts a hard-linked file once)."""
    out = bconn.run(["du", "-s", "-B1", *earlier, path], record=False).stdout
    line = out.strip().splitlines()[-1] if out.strip() else "0"
    return int(line.split()[0])


def points_present(bconn: HostConnection, store: PointStore) -> list[Point]:
    result = bconn.run(
        ["sh", "-c", 'ls -1 "$1/points" 2>/dev/null || true', "sh", store.area], record=False
    )
    return [p for p in (point_parse(n.strip()) for n in result.stdout.splitlines()) if p]


def pinned_point_names(instance: AtlassianInstance) -> set[str]:
    """Points a restore or drill in progress reads: never pruned under their feet."""
    ids = [
        str(op.params.get("backup"))
        for op in Operation.objects.filter(
            kind__in=[OperationKind.BACKUP_RESTORE, OperationKind.BACKUP_DRILL],
            status__in=["pending", "running"],
        ).only("params")
        if op.params.get("backup")
    ]
    if not ids:
        return set()
    return set(
        Backup.objects.filter(instance=instance, pk__in=ids).values_list("point_name", flat=True)
    )


def retention_apply(
    ctx: OperationContext | None,
    bconn: HostConnection,
    *,
    instance: AtlassianInstance,
    store: PointStore,
    now: datetime | None = None,
    prune: bool = True,
) -> dict[str, str]:
    """Prune the points the policy no longer keeps and label the rest; sync the catalogue.
    Returns {point name: label} of what is kept."""
    from backups.policies import policy_retention
    from backups.services import policy_for

    policy = policy_for(instance)
    listed_at = timezone.now()
    on_disk = {p.name for p in points_present(bconn, store)}
    # What retention weighs comes from the catalogue (the panel's own records of what it
    # committed), not from directory names on the backup host; a directory without a
    # catalogue row is never counted and never pruned here.
    present = [
        Point(name=row.point_name, taken_at=row.taken_at, extra=EXTRA_SUFFIX.get(row.kind, ""))
        for row in _catalogued(instance, store).filter(
            status__in=[BackupStatus.SUCCEEDED, BackupStatus.MISSING]
        )
        if row.point_name in on_disk
    ]
    now = now or timezone.now()
    plan = retention_plan(
        present,
        policy_retention(policy),
        now=now,
        extra_days=int(_setting("PANEL_BACKUP_EXTRA_KEEP_DAYS", 7)),
        pinned=pinned_point_names(instance),
    )
    if prune and plan.prune:
        bconn.run(
            ["rm", "-rf", "--one-file-system", *(store.point(name) for name in plan.prune)],
            message=f"Retention: removed {len(plan.prune)} point(s) the policy no longer "
            f"keeps ({policy.retention_text})",
        )
        if ctx is not None:
            ctx.step("Aged out: " + ", ".join(plan.prune))
    remaining = [p for p in present if p.name not in plan.prune] if prune else present
    catalogue_sync(
        bconn,
        instance=instance,
        store=store,
        present=sorted(on_disk - set(plan.prune if prune else [])),
        labels=plan.keep,
        pruned=plan.prune if prune else [],
        listed_at=listed_at,
    )
    total = bconn.run(
        ["sh", "-c", 'du -s -B1 "$1/points" | cut -f1', "sh", store.area], record=False
    ).stdout.strip()
    BackupPolicy.objects.filter(pk=policy.pk).update(stored_bytes=int(total or 0))
    if policy.offsite_enabled and prune and plan.prune:
        from backups import offsite

        if offsite.offsite_configured():
            try:
                offsite.offsite_prune(ctx, instance=instance, keep=[p.name for p in remaining])
            except Exception as exc:  # noqa: BLE001 - the local points are what matters here
                if ctx is not None:
                    ctx.step(
                        f"Off-site: could not delete aged-out copies yet: {exc}", level="warning"
                    )
    return {name: label for name, label in plan.keep.items() if name in {p.name for p in remaining}}


def catalogue_sync(
    bconn: HostConnection,
    *,
    instance: AtlassianInstance,
    store: PointStore,
    present: list[str],
    labels: dict[str, str],
    pruned: list[str],
    listed_at: datetime | None = None,
) -> None:
    """Make the catalogue say what is really on the backup host: labels of kept points, aged
    out or missing ones, and points the panel had no row for (read from their point.json).

    ``listed_at`` is when ``present`` was read: a point committed after that (a backup that
    ran meanwhile) is not marked missing."""
    now = timezone.now()
    listed_at = listed_at or now
    # A run whose operation ended without finishing it (its worker died) is not in progress.
    Backup.objects.filter(
        instance=instance, status=BackupStatus.RUNNING, operation__isnull=False
    ).exclude(operation__status__in=["pending", "running"]).update(
        status=BackupStatus.FAILED, error="Interrupted: its operation ended first.", finished_at=now
    )
    rows = Backup.objects.filter(
        instance=instance, backup_host=store.backup_host, app_host__name=store.app_host_name
    ).exclude(point_name="")
    known = set()
    for row in rows:
        known.add(row.point_name)
        if row.status == BackupStatus.SUCCEEDED:
            if row.point_name in pruned:
                Backup.objects.filter(pk=row.pk).update(
                    status=BackupStatus.EXPIRED, pruned_at=now, label=""
                )
            elif row.point_name not in present:
                if row.verified_at is None or row.verified_at >= listed_at:
                    continue  # committed after the listing was taken
                Backup.objects.filter(pk=row.pk).update(
                    status=BackupStatus.MISSING,
                    label="",
                    error="The point is no longer on the backup host.",
                )
            elif row.label != labels.get(row.point_name, ""):
                Backup.objects.filter(pk=row.pk).update(label=labels.get(row.point_name, ""))
        elif row.status == BackupStatus.MISSING and row.point_name in present:
            Backup.objects.filter(pk=row.pk).update(
                status=BackupStatus.SUCCEEDED, error="", label=labels.get(row.point_name, "")
            )
    for name in present:
        if name in known:
            continue
        data = bconn.read(f"{store.point(name)}/point.json", missing_ok=True)
        parsed = point_parse(name)
        try:
            info = json.loads(data or b"{}")
        except ValueError:
            info = {}
        # Only points the panel wrote for this instance (point.json names it) are imported,
        # and never one dated in the future: it would count as the newest and push real
        # points out of retention.
        if (
            parsed is None
            or info.get("instance_id") != str(instance.pk)
            or info.get("point") != name
            or parsed.taken_at > now + timedelta(minutes=5)
        ):
            continue
        Backup.objects.create(
            instance=instance,
            backup_host=store.backup_host,
            app_host=Host.objects.filter(name=store.app_host_name).first(),
            kind=info.get("kind", BackupKind.SCHEDULED),
            mode=info.get("mode", BackupMode.HOT),
            status=BackupStatus.SUCCEEDED,
            point_name=name,
            label=labels.get(name, ""),
            taken_at=parsed.taken_at,
            product=info.get("product", instance.product),
            version=info.get("version", ""),
            dump_sha256=info.get("dump_sha256", ""),
            dump_bytes=info.get("dump_bytes"),
            file_count=info.get("file_count"),
            logical_bytes=info.get("logical_bytes"),
            manifest_sha256=info.get("manifest_sha256", ""),
            error="Found on the backup host without a catalogue entry; imported.",
        )


def catalogue_refresh(
    instance: AtlassianInstance, *, ctx: OperationContext | None = None
) -> dict[str, str]:
    """Re-read the backup host and update the catalogue (no pruning). Periodic and on demand."""
    if instance.host is None or instance.host.backup_host is None:
        return {}
    store = store_for(instance, instance.host)
    with host_connection(store.backup_host, ctx=ctx) as bconn:
        return retention_apply(ctx, bconn, instance=instance, store=store, prune=False)


def backup_take(
    ctx: OperationContext,
    instance: AtlassianInstance,
    *,
    kind: str,
    mode: str,
    taken_at: datetime | None = None,
) -> Backup:
    """Take one backup point of ``instance`` (the caller holds the instance's lock).

    Hot: dump while everything runs, copy home. Cold: stop the app, dump the idle database,
    stop the database, copy, start again and wait for RUNNING; the downtime is recorded.
    """
    instance = AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
        pk=instance.pk
    )
    backup = backup_record_start(
        instance, kind=kind, mode=mode, taken_at=taken_at, operation=ctx.operation
    )
    ctx.step(
        f"Backup point {backup.point_name} of {instance.name} ({kind}, {mode}) to "
        f"{backup.backup_host.name}"
    )
    started = time.monotonic()
    downtime = 0.0
    stopped_at: float | None = None
    try:
        with (
            host_connection(instance.host, ctx=ctx) as app,
            host_connection(backup.backup_host, ctx=ctx) as bconn,
        ):
            running = running_services(app, instance)
            was_running = "app" in running
            started_db = False
            try:
                if mode == BackupMode.COLD and was_running:
                    stopped_at = time.monotonic()
                    app.run(
                        compose_argv(instance, "stop", "--timeout", "120", "app"),
                        timeout=300,
                        message=f"Cold backup: stopped the app of {instance.name}",
                    )
                if "db" not in running:
                    app.run(
                        compose_argv(instance, "up", "--detach", "db"),
                        timeout=300,
                        message="Started the database for the dump",
                    )
                    started_db = True
                    db_wait_ready(ctx, app, instance)
                dump_sha, dump_bytes = dump_create(ctx, app, instance)
                if mode == BackupMode.COLD or started_db:
                    app.run(
                        compose_argv(instance, "stop", "--timeout", "60", "db"),
                        timeout=300,
                        message="Stopped the database",
                    )
                ctx.check_cancelled()
                point_store(
                    ctx,
                    instance=instance,
                    backup=backup,
                    app=app,
                    bconn=bconn,
                    dump_sha256=dump_sha,
                    dump_bytes=dump_bytes,
                )
            finally:
                # Compensation: a cancel (or a soft time limit) that stopped the copy must not
                # also stop the restart, or a cold backup leaves the app down.
                with ctx.uncancellable():
                    if stopped_at is not None:
                        app.run(
                            compose_argv(instance, "up", "--detach"),
                            timeout=900,
                            message=f"Started {instance.name} again",
                        )
                        wait_running(ctx, app, instance, first=False)
                        downtime = time.monotonic() - stopped_at
                    elif started_db and "db" in running_services(app, instance):
                        app.run(
                            compose_argv(instance, "stop", "--timeout", "60", "db"),
                            timeout=300,
                            message="Stopped the database again",
                        )
                    app.run(["rm", "-f", f"{instance_dir(instance)}/{DUMP_FILE}"], record=False)
            if mode == BackupMode.HOT and was_running:
                healthy, state, _ = instance_probe(app, instance)
                if not healthy:
                    ctx.step(
                        f"{instance.name} answers {state or 'nothing'} after the backup",
                        level="warning",
                    )
    except OperationFenced:
        raise  # reaped: the reaper's abort hook ends the point; the next run removes incoming/
    except (RemoteError, OperationFailed) as exc:
        reason = str(exc)
        _backup_failed(backup, reason, started)
        _incoming_cleanup(ctx, backup)
        kept = Backup.objects.filter(instance=instance, status=BackupStatus.SUCCEEDED).count()
        raise OperationFailed(
            f"Backup of {instance.name} failed: {reason} No retained point was touched "
            f"({kept} still on {backup.backup_host.name})."
        ) from exc
    except BaseException as exc:  # a cancel, a soft time limit: no half-written point stays
        _backup_failed(backup, str(exc) or type(exc).__name__, started)
        _incoming_cleanup(ctx, backup)
        raise
    Backup.objects.filter(pk=backup.pk).update(
        finished_at=timezone.now(),
        duration_seconds=round(time.monotonic() - started, 2),
        downtime_seconds=round(downtime, 2),
    )
    backup.refresh_from_db()
    ctx.step(
        f"Backup {backup.point_name} done: {backup.file_count} files, "
        f"{backup.bytes_transferred} bytes sent, {backup.disk_bytes} new bytes on disk, "
        f"downtime {downtime:.1f} s, label {backup.label or '-'}"
    )
    policy = BackupPolicy.objects.filter(instance=instance).first()
    if policy is not None and policy.offsite_enabled:
        from backups import offsite

        offsite.offsite_copy(ctx, backup)
    return backup


def _backup_failed(backup: Backup, reason: str, started: float) -> None:
    Backup.objects.filter(pk=backup.pk).update(
        status=BackupStatus.FAILED,
        error=reason[:4000],
        finished_at=timezone.now(),
        duration_seconds=round(time.monotonic() - started, 2),
    )


def _incoming_cleanup(ctx: OperationContext, backup: Backup) -> None:
    """Remove the half-written point (never a committed one) on a fresh connection: the one
    the copy used may be what broke."""
    store = store_of(backup)
    try:
        with ctx.uncancellable(), host_connection(store.backup_host, ctx=ctx) as bconn:
            bconn.run(
                ["rm", "-rf", "--one-file-system", store.incoming(backup.point_name)],
                message="Removed the unfinished copy",
            )
    except OperationFenced:
        raise
    except Exception as exc:  # noqa: BLE001 - reported; the next backup removes it
        ctx.step(
            f"Could not remove the unfinished copy yet ({exc}); the next backup removes it",
            level="warning",
        )
