"""One backup point onto the backup host: push, verify, commit (the dump is already written).

The app host's key may only *write* into its incoming area and only *read* its own points (the
forced command of :func:`provisioning.hosts.backup_access_line`: rrsync ``-wo -munge`` with
``--ignore-existing`` forced, or ``-ro -munge``). It pushes with ``--link-dest`` at ``base``, a
hard-link copy of the newest point the panel makes, so unchanged files are hard links to it
(rsync links a file only when content, owner, mode and mtime all match); ``--ignore-existing``
means no rsync session can change a file that already exists there, so the shared inodes of
committed points stay as they are. The panel's own connection then moves the copy out of the
write root while it holds rrsync's lock (no session of the app host runs meanwhile), verifies it
against the manifest, and renames it into ``points/``; only then does retention
(:mod:`backups.catalogue`) prune, from the catalogue in the database, never from directory
names. A failed or partial run therefore never ages out a good point, and nothing the app host
sends can delete, rewrite or forge a committed point.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from backups.catalogue import instances_backup_state_refresh, retention_apply
from backups.models import Backup, BackupMode, BackupStatus, PointDatabase
from backups.policies import policy_for
from backups.store import (
    DUMP_FILE,
    PointStore,
    disk_check,
    disk_usage,
    newest_point,
    store_of,
)
from backups.transfer import (
    HOME_ONLY,
    POINT_ENTRIES,
    Entry,
    manifest_check,
    manifest_compute,
    paths_remove,
    rsync_base,
    rsync_remote,
    rsync_run,
    stat_differences,
    stat_parse,
    stat_read,
)
from panel.operations import OperationContext, OperationFailed
from provisioning.compose import instance_dir
from provisioning.models import AtlassianInstance
from provisioning.remote import HostConnection, RemoteError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pushed:
    """A copy pushed into the incoming area, and the instance's manifests it matches."""

    sha: str  # manifest.sha256 text, computed on the app host
    source_stat: str  # manifest.stat text of the instance
    bytes_sent: int
    started: float  # time.monotonic() when the copy began


@dataclass(frozen=True)
class Verified:
    """A copy in the commit area that matches its manifests."""

    sha: str
    copy_stat: str
    entries: dict[str, Entry]
    changed: list[str]  # files a hot copy caught changing (stored as copied last)


def point_store(
    ctx: OperationContext,
    *,
    instance: AtlassianInstance,
    backup: Backup,
    app: HostConnection,
    bconn: HostConnection,
    dump_sha256: str,
    dump_bytes: int,
    database_check: Callable[[], None] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Push ``home`` and ``db.dump`` of the instance into a new point, verify it, commit it,
    apply retention and bring the catalogue in line. The dump must already be written; a point
    of the WAL archive (``backup.database``) has none, and ``database_check`` (that its WAL is
    archived) must pass before the point is committed. ``source``: the directory the home is
    read from (default the instance's; a cold point's frozen copy)."""
    store = store_of(backup)
    idir = source or instance_dir(instance)
    previous = newest_point(bconn, instance=instance, store=store)
    disk_check(ctx, bconn, app, store=store, idir=idir, dump_bytes=dump_bytes, previous=previous)
    pushed = point_push(
        ctx, backup=backup, app=app, bconn=bconn, store=store, idir=idir, previous=previous
    )
    commit = store.commit(backup.point_name)
    commit_move(bconn, store, store.incoming(backup.point_name), commit)
    # The hard links to compare with are no longer needed: left there, they would keep the
    # files of points that retention prunes alive on the backup host's disk.
    bconn.run(["rm", "-rf", "--one-file-system", store.base], record=False)
    try:
        verified = copy_verify(
            ctx,
            bconn,
            store=store,
            commit=commit,
            pushed=pushed,
            hot=backup.mode == BackupMode.HOT,
            dump_sha256=dump_sha256,
            dump_bytes=dump_bytes,
            parts=point_entries(backup),
        )
        if database_check is not None:
            database_check()
        result = point_commit(
            ctx,
            bconn,
            instance=instance,
            backup=backup,
            store=store,
            commit=commit,
            verified=verified,
            dump_sha256=dump_sha256,
            dump_bytes=dump_bytes,
            previous=previous,
        )
    except Exception:
        # Not a handler: whatever failed is re-raised; only the unverified copy goes first.
        try:
            bconn.run(["rm", "-rf", "--one-file-system", commit], record=False)
        except RemoteError:
            log.warning("could not remove %s on %s", commit, store.backup_host.name)
        raise
    duration = time.monotonic() - pushed.started
    Backup.objects.filter(pk=backup.pk).update(bytes_transferred=pushed.bytes_sent)
    kept = retention_apply(ctx, bconn, instance=instance, store=store, policy=policy_for(instance))
    return {
        **result,
        "bytes_transferred": pushed.bytes_sent,
        "copy_seconds": round(duration, 2),
        "label": kept.get(backup.point_name, ""),
        "retained_points": len(kept),
    }


def point_entries(backup: Backup) -> tuple[str, ...]:
    """What of the instance a point holds: home and dump, or only home (its database is the
    WAL archive)."""
    return HOME_ONLY if backup.database == PointDatabase.WAL else POINT_ENTRIES


# --- push -----------------------------------------------------------------------------------


def _incoming_prepare(
    bconn: HostConnection, store: PointStore, name: str, previous: Backup | None
) -> None:
    """An empty incoming directory for point ``name``, and the newest point's hard links as
    ``base`` to compare with; leftovers of earlier runs removed."""
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


def point_push(
    ctx: OperationContext,
    *,
    backup: Backup,
    app: HostConnection,
    bconn: HostConnection,
    store: PointStore,
    idir: str,
    previous: Backup | None,
) -> Pushed:
    """Push the instance's home and dump into the incoming area (unchanged files hard-linked
    to ``previous``), then copy again, comparing contents, whatever differs from the
    instance's manifests."""
    name = backup.point_name
    incoming = store.incoming(name)
    _incoming_prepare(bconn, store, name, previous)
    argv = rsync_base(backup.app_host) + ["--delete"]
    if previous is not None:
        argv.append(f"--link-dest={store.rsync_path('base')}")
    entries = point_entries(backup)
    argv += [
        *(f"{idir}/{entry}" for entry in entries),
        rsync_remote(backup.app_host, store.rsync_path(f"incoming/{name}/")),
    ]
    hot = backup.mode == BackupMode.HOT
    started = time.monotonic()
    bytes_sent = rsync_run(
        ctx,
        app,
        argv,
        allow_vanished=hot,
        backup_host_name=store.backup_host.name,
        message=f"Pushed {'home and dump' if DUMP_FILE in entries else 'home'} to "
        f"{store.backup_host.name}"
        + (f" (unchanged files hard-linked to {previous.point_name})" if previous else ""),
    ).bytes_sent
    ctx.check_cancelled()

    sha, source_stat = manifest_compute(app, idir, entries)
    bconn.upload(
        f"{incoming}/manifest.sha256",
        sha,
        mode=0o600,
        message="Wrote the checksum manifest computed on the app host",
    )
    differing = _push_differences(bconn, incoming, source_stat, entries)
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
        paths_remove(bconn, incoming, differing)
        bytes_sent += rsync_run(
            ctx,
            app,
            [argv[0], "--checksum", *argv[1:]],
            allow_vanished=hot,
            backup_host_name=store.backup_host.name,
            message="Copied the differing files again (--checksum)",
        ).bytes_sent
        sha, source_stat = manifest_compute(app, idir, entries)
    return Pushed(sha=sha, source_stat=source_stat, bytes_sent=bytes_sent, started=started)


def _push_differences(
    bconn: HostConnection, directory: str, source_stat: str, entries: tuple[str, ...]
) -> list[str]:
    """Entries of the copy in ``directory`` whose content (against its manifest.sha256) or
    type, owner, mode, size or mtime differ from the instance's."""
    bad = manifest_check(bconn, directory)
    copy_stat = stat_read(bconn, directory, entries)
    return sorted(set(bad) | set(stat_differences(stat_parse(source_stat), stat_parse(copy_stat))))


def commit_move(bconn: HostConnection, store: PointStore, incoming: str, commit: str) -> None:
    """Move the pushed copy out of the app host's write root while holding rrsync's own lock
    on that root: no rsync session of the app host runs meanwhile (rrsync allows one at a
    time), so none can keep writing into the copy through a directory it has open."""
    wait = int(settings.PANEL_BACKUP_RRSYNC_BUSY_WAIT)
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


# --- verify and commit ----------------------------------------------------------------------


def copy_verify(
    ctx: OperationContext,
    bconn: HostConnection,
    *,
    store: PointStore,
    commit: str,
    pushed: Pushed,
    hot: bool,
    dump_sha256: str,
    dump_bytes: int,
    parts: tuple[str, ...] = POINT_ENTRIES,
) -> Verified:
    """Verify the copy in ``commit`` (out of the app host's reach) against the instance's
    manifests and the dump pg_dump wrote (``parts``: what of the instance the point holds); a
    hot copy's files that kept changing are stored as copied last, with a manifest describing
    exactly that."""
    sha = pushed.sha
    source = stat_parse(pushed.source_stat)
    copy_stat = stat_read(bconn, commit, parts)
    entries = stat_parse(copy_stat)
    # Entries the instance does not have (deleted during a hot copy, or sent by something
    # else than the panel's push) are not part of the point.
    stray = sorted(set(entries) - set(source))
    if stray:
        ctx.step(
            f"Removed {len(stray)} entries the instance does not have from the copy",
            level="warning",
            output="\n".join(stray[:50]),
        )
        paths_remove(bconn, commit, stray)
        copy_stat = stat_read(bconn, commit, parts)
        entries = stat_parse(copy_stat)
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
        sha, _ = manifest_compute(bconn, commit, parts)
        bconn.upload(
            f"{commit}/manifest.sha256",
            sha,
            mode=0o600,
            message="Rewrote the manifest from the stored copy",
        )
        if manifest_check(bconn, commit):
            raise OperationFailed(f"The copy on {store.backup_host.name} cannot be verified.")
    if DUMP_FILE not in parts:
        if DUMP_FILE in entries:
            raise OperationFailed("The copy holds a database dump the point does not carry.")
        return Verified(sha=sha, copy_stat=copy_stat, entries=entries, changed=changed)
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
    return Verified(sha=sha, copy_stat=copy_stat, entries=entries, changed=changed)


def point_commit(
    ctx: OperationContext,
    bconn: HostConnection,
    *,
    instance: AtlassianInstance,
    backup: Backup,
    store: PointStore,
    commit: str,
    verified: Verified,
    dump_sha256: str,
    dump_bytes: int,
    previous: Backup | None,
) -> dict[str, Any]:
    """Write the verified copy's manifests and point.json and rename it into ``points/``; the
    catalogue row becomes SUCCEEDED."""
    name = backup.point_name
    entries = verified.entries
    file_count = sum(1 for p, e in entries.items() if e.kind == "f" and p.startswith("home/"))
    logical = sum(e.size for e in entries.values() if e.kind == "f")
    manifest_sha = hashlib.sha256(verified.sha.encode()).hexdigest()
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
        "database": backup.database,
        "database_at": backup.database_at.isoformat() if backup.database_at else None,
        "dump_sha256": dump_sha256,
        "dump_bytes": dump_bytes,
        "file_count": file_count,
        "logical_bytes": logical,
        "manifest_sha256": manifest_sha,
        "changed_during_backup": len(verified.changed),
        "app_host": backup.app_host.name,
    }
    bconn.upload(
        f"{commit}/manifest.stat",
        verified.copy_stat,
        mode=0o600,
        message="Wrote the owner/mode manifest",
    )
    bconn.upload(
        f"{commit}/point.json",
        json.dumps(info, indent=2) + "\n",
        mode=0o600,
        message="Wrote point.json",
    )
    bconn.run(
        ["mv", "-T", commit, store.point(name)],
        message=f"Committed point {name} (verified: {file_count} files, "
        + (
            f"dump {dump_bytes} bytes)"
            if backup.database == PointDatabase.DUMP
            else f"database from the archive at {backup.database_at:%H:%M:%S} UTC)"
        ),
    )
    verified_at = timezone.now()
    earlier = [store.point(previous.point_name)] if previous else []
    disk = disk_usage(bconn, earlier, store.point(name))
    Backup.objects.filter(pk=backup.pk).update(
        logical_bytes=logical,
        disk_bytes=disk,
        file_count=file_count,
        dump_bytes=dump_bytes if backup.database == PointDatabase.DUMP else None,
        dump_sha256=dump_sha256,
        manifest_sha256=manifest_sha,
        verified_at=verified_at,
        changed_during_backup=len(verified.changed),
        status=BackupStatus.SUCCEEDED,
    )
    instances_backup_state_refresh(instance_ids=[backup.instance_id])
    return {
        "point": name,
        "logical_bytes": logical,
        "disk_bytes": disk,
        "file_count": file_count,
        "dump_bytes": dump_bytes,
        "changed_during_backup": len(verified.changed),
    }
