"""Taking a backup point: the catalogue row, the instance's services around the dump (hot or
cold), the point itself (:mod:`backups.point`), what a failure leaves behind, and the off-site
copy after it."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from backups import offsite
from backups.catalogue import instances_backup_state_refresh
from backups.dump import compose_argv, db_wait_ready, dump_create, running_services
from backups.models import Backup, BackupMode, BackupPolicy, BackupStatus, PointDatabase
from backups.point import point_store
from backups.retention import point_name
from backups.store import DUMP_FILE, effective_backup_host, store_of
from panel.operations import OperationContext, OperationFailed, OperationFenced
from provisioning.compose import instance_dir
from provisioning.hosts import host_connection
from provisioning.models import AtlassianInstance, Operation
from provisioning.remote import HostConnection, RemoteError
from provisioning.rollout import instance_probe, wait_running


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
    backup = Backup.objects.create(
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
    instances_backup_state_refresh(instance_ids=[instance.pk])
    return backup


@dataclass
class _Services:
    """What the backup changed about the instance's services, so it can put them back."""

    running: set[str]
    started_db: bool = False
    stopped_at: float | None = None  # time.monotonic() when a cold backup stopped the app

    @property
    def app_was_running(self) -> bool:
        return "app" in self.running


def backup_take(
    ctx: OperationContext,
    instance: AtlassianInstance,
    *,
    kind: str,
    mode: str,
    taken_at: datetime | None = None,
    restart: bool = True,
) -> Backup:
    """Take one backup point of ``instance`` (the caller holds the instance's lock).

    Hot: dump while everything runs, copy home. Cold: stop the app, dump the idle database,
    stop the database, copy, start again and wait for RUNNING; the downtime is recorded.
    An instance whose WAL is archived mostly needs no dump (:func:`backups.wal.point_database`):
    the point records the second its database is at (hot: when it starts; cold: once the app
    stopped), writes a commit after it and is committed only once the archive holds that
    commit, so a dump's time (most of a point's) is neither spent nor, cold, inside the
    downtime.
    ``restart=False`` (cold only): once the point is stored, leave the app and its database
    stopped for the caller (an upgrade starts the new image on exactly the state of the
    point, with nothing written in between); the downtime is then counted up to the
    hand-over. If the backup fails the instance is started again as usual.
    """
    from backups import wal  # wal -> restore -> this module (a restore's safety point)

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
    try:
        with (
            host_connection(instance.host, ctx=ctx) as app,
            host_connection(backup.backup_host, ctx=ctx) as bconn,
        ):
            services = _Services(running=running_services(app, instance))
            if instance.wal_archiving:
                wal.wal_state_read(app, instance)  # the archive's health, read now
            policy = BackupPolicy.objects.filter(instance=instance).first()
            database, why = wal.point_database(
                instance,
                kind=kind,
                taken_at=backup.taken_at,
                offsite=policy is not None and policy.offsite_enabled,
                db_running="db" in services.running,
            )
            ctx.step(f"Database of the point: {why}")
            stored = restored = False
            source = instance_dir(instance)  # where the pushed home is read from
            try:
                check: Callable[[], None] | None = None
                if database == PointDatabase.WAL:
                    dump_sha, dump_bytes = "", 0
                    database_at = _wal_point_start(ctx, app, instance, backup, mode, services)
                    if services.stopped_at is not None and restart:
                        frozen = _home_freeze(ctx, app, instance)
                        if frozen:
                            # Only the freeze was inside the downtime: the app runs again
                            # while the frozen copy goes to the backup host.
                            source, restored = frozen, True
                            with ctx.uncancellable():
                                downtime = _services_restore(ctx, app, instance, services)
                    # A commit after the point's second (cold and frozen: once the app runs
                    # again, outside the downtime); the point is committed once it is archived.
                    marked = wal.point_wal_mark(ctx, app, instance, database_at)
                    check = functools.partial(wal.point_wal_wait, ctx, app, instance, marked)
                else:
                    dump_sha, dump_bytes = _dump_take(
                        ctx, app, instance, mode=mode, services=services
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
                    database_check=check,
                    source=source,
                )
                stored = True
            finally:
                # Compensation: a cancel (or a soft time limit) that stopped the copy must not
                # also stop the restart, or a cold backup leaves the app down.
                if not restored:
                    with ctx.uncancellable():
                        downtime = _services_restore(
                            ctx, app, instance, services, restart=restart or not stored
                        )
            if mode == BackupMode.HOT and services.app_was_running:
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
    if policy is not None and policy.offsite_enabled:
        offsite.offsite_copy(ctx, backup)
    return backup


def _app_stop(
    app: HostConnection, instance: AtlassianInstance, services: _Services, words: str
) -> None:
    """A cold backup's stop of the app; ``services`` records when (the downtime starts)."""
    services.stopped_at = time.monotonic()
    app.run(
        compose_argv(instance, "stop", "--timeout", "120", "app"),
        timeout=300,
        message=f"Cold backup: stopped the app of {words}",
    )


# <instance dir>/point-staging/home: a cold point's frozen home, kept for the next one's delta.
POINT_STAGING = "point-staging"

# Copies the stopped instance's home into the staging copy (made the first time if the disk has
# room for it and a tenth more). --modify-window=-1 compares mtimes to the nanosecond, so a
# file rewritten with the same size within the second of the last freeze is still copied.
_FREEZE_SCRIPT = """set -e
home="$1/home"; staging="$1/$2"
if [ ! -d "$staging/home" ]; then
  need=$(du -s -B1 "$home" | cut -f1); free=$(df -P -B1 "$1" | awk 'NR == 2 {print $4}')
  if [ "$free" -lt $((need + need / 10)) ]; then
    echo "no room: $need bytes needed, $free free"; exit 0
  fi
  mkdir -p -m 0700 "$staging"
fi
rsync -aH --numeric-ids --delete --modify-window=-1 --stats "$home/" "$staging/home/"
echo frozen
"""


def _home_freeze(
    ctx: OperationContext, app: HostConnection, instance: AtlassianInstance
) -> str | None:
    """A cold point of the archive: copy the stopped instance's home on the app host itself
    into its staging copy (a delta: only what changed since the last cold point), so the app
    can start again before the copy over the network. Hard links would not freeze it: files
    are written in place. The directory that holds the frozen ``home``, or None (no room on
    the app host's disk for the first copy: the home is pushed live, inside the downtime)."""
    if not settings.PANEL_BACKUP_COLD_STAGING:
        return None
    idir = instance_dir(instance)
    out = app.run(
        ["sh", "-c", _FREEZE_SCRIPT, "sh", idir, POINT_STAGING],
        timeout=settings.PANEL_BACKUP_RSYNC_TIMEOUT,
        message="Froze the home in its staging copy on the app host (rsync, delta)",
    ).stdout
    if "frozen" not in out.splitlines():
        ctx.step(
            f"No staging copy of the home ({out.strip()}); it is copied to the backup host "
            "while the app is stopped",
            level="warning",
        )
        return None
    return f"{idir}/{POINT_STAGING}"


def _wal_point_start(
    ctx: OperationContext,
    app: HostConnection,
    instance: AtlassianInstance,
    backup: Backup,
    mode: str,
    services: _Services,
) -> datetime:
    """A point of the archive: a cold one stops the app (the database keeps running: its WAL
    is what the point holds); the point's second is recorded and returned."""
    if mode == BackupMode.COLD and services.app_was_running:
        _app_stop(app, instance, services, f"{instance.name} (the database runs on)")
    # The next whole second (a replay to a second keeps the commits before it): every commit
    # before the point started (cold: before the app stopped) is in the point's database, and
    # the home is copied after it.
    database_at = datetime.fromtimestamp(math.ceil(timezone.now().timestamp()), tz=UTC)
    backup.database, backup.database_at = PointDatabase.WAL, database_at
    Backup.objects.filter(pk=backup.pk).update(database=PointDatabase.WAL, database_at=database_at)
    return database_at


def _dump_take(
    ctx: OperationContext,
    app: HostConnection,
    instance: AtlassianInstance,
    *,
    mode: str,
    services: _Services,
) -> tuple[str, int]:
    """Dump the database with the services a ``mode`` backup needs: a cold one stops the app
    first and the database after; a stopped instance gets its database started for the dump.
    ``services`` records each change as it is made. Returns (sha256, size) of the dump."""
    if mode == BackupMode.COLD and services.app_was_running:
        _app_stop(app, instance, services, instance.name)
    if "db" not in services.running:
        app.run(
            compose_argv(instance, "up", "--detach", "db"),
            timeout=300,
            message="Started the database for the dump",
        )
        services.started_db = True
        db_wait_ready(ctx, app, instance)
    dump = dump_create(ctx, app, instance)
    if mode == BackupMode.COLD or services.started_db:
        app.run(
            compose_argv(instance, "stop", "--timeout", "60", "db"),
            timeout=300,
            message="Stopped the database",
        )
    return dump


def _services_restore(
    ctx: OperationContext,
    app: HostConnection,
    instance: AtlassianInstance,
    services: _Services,
    *,
    restart: bool = True,
) -> float:
    """Put the instance's services back as they were (``restart=False``: leave a cold
    backup's stopped services stopped) and remove the dump from the app host; returns the
    downtime of a cold backup (0 otherwise)."""
    downtime = 0.0
    if services.stopped_at is not None and not restart:
        ctx.step(f"{instance.name} left stopped after the point, as asked")
        downtime = time.monotonic() - services.stopped_at
    elif services.stopped_at is not None:
        app.run(
            compose_argv(instance, "up", "--detach"),
            timeout=900,
            message=f"Started {instance.name} again",
        )
        wait_running(ctx, app, instance, first=False)
        downtime = time.monotonic() - services.stopped_at
    elif services.started_db and "db" in running_services(app, instance):
        app.run(
            compose_argv(instance, "stop", "--timeout", "60", "db"),
            timeout=300,
            message="Stopped the database again",
        )
    app.run(["rm", "-f", f"{instance_dir(instance)}/{DUMP_FILE}"], record=False)
    return downtime


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
    except Exception as exc:  # noqa: BLE001 - runs while the backup's own error propagates:
        # raising here would replace that error (the reason the backup failed) with this one;
        # reported, and the next backup removes the copy.
        ctx.step(
            f"Could not remove the unfinished copy yet ({exc}); the next backup removes it",
            level="warning",
        )
