"""Handlers of backup, restore and drill operations (registered with the operation runner),
and the pre-upgrade hook that takes a backup before an instance is upgraded."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from backups import wal
from backups.models import (
    Backup,
    BackupKind,
    BackupMode,
    BackupOperationKind,
    BackupStatus,
    BaseBackup,
    PointDatabase,
    Restore,
    RestoreDrill,
)
from backups.restore import (
    Outcome,
    RestoreCancelled,
    RestoreRefused,
    RestoreRolledBack,
    restore_in_place,
    restore_new,
    scratch_instance,
    scratch_remove,
)
from backups.take import backup_take
from panel.operations import (
    OperationCancelled,
    OperationContext,
    OperationFailed,
    OperationFenced,
    operation_handler,
)
from provisioning.models import AtlassianInstance, Host, InstanceHealth, Operation
from provisioning.operations import instance_abort, instance_published
from provisioning.remote import RemoteError
from provisioning.services import instance_transition
from tenants.tiers import objectives_for


def _instance(ctx: OperationContext) -> AtlassianInstance:
    return AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
        pk=ctx.operation.instance_id
    )


def _backup(ctx: OperationContext) -> Backup:
    try:
        return Backup.objects.select_related(
            "instance__tenant", "instance__host", "backup_host", "app_host"
        ).get(pk=ctx.operation.params["backup"])
    except (Backup.DoesNotExist, KeyError):
        raise OperationFailed(
            "The backup point to restore is no longer in the catalogue."
        ) from None


def _words(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _point_words(backup: Backup) -> str:
    return f"{backup.point_name}" + (f" ({backup.label})" if backup.label else "")


# --- backup ---------------------------------------------------------------------------------


def backup_abort(operation: Any, reason: str) -> None:
    """A backup that ends badly (also when its worker died) leaves no point 'in progress'."""
    Backup.objects.filter(operation_id=operation.pk, status=BackupStatus.RUNNING).update(
        status=BackupStatus.FAILED, error=reason[:4000], finished_at=timezone.now()
    )


@operation_handler(BackupOperationKind.BACKUP_CREATE, on_abort=backup_abort)
def backup_create_run(ctx: OperationContext) -> dict:
    """Take one backup point (scheduled, extra, hot or cold)."""
    instance = _instance(ctx)
    params = ctx.operation.params or {}
    ctx.progress(0, 3)
    try:
        backup = backup_take(
            ctx,
            instance,
            kind=params.get("kind", BackupKind.MANUAL),
            mode=params.get("mode", BackupMode.HOT),
        )
    except RemoteError as exc:
        raise OperationFailed(str(exc)) from exc
    return {
        "backup": str(backup.pk),
        "point": backup.point_name,
        "label": backup.label,
        "mode": backup.mode,
        "downtime_seconds": backup.downtime_seconds,
        "duration_seconds": backup.duration_seconds,
        "file_count": backup.file_count,
        "bytes_transferred": backup.bytes_transferred,
        "disk_bytes": backup.disk_bytes,
        "logical_bytes": backup.logical_bytes,
        "dump_bytes": backup.dump_bytes,
    }


# --- upgrades -------------------------------------------------------------------------------
# An upgrade is one-way (the new version upgrades the database; the old one refuses it after),
# so its only roll-back is Atlassian's: restore database and home taken before it
# (http://confluence.atlassian.com/display/JIRA/Rolling+Back+a+JIRA+Upgrade). Both hooks run
# inside the upgrade operation, which holds the instance's lock; BackupsConfig.ready()
# registers them as the "pre_upgrade" and "upgrade_failed" instance hooks.


def backup_before_upgrade(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """Pre-upgrade hook: take the point a failed upgrade is rolled back to, or fail the
    upgrade. In ``PANEL_UPGRADE_BACKUP_MODE`` "cold" (the default) the app is stopped for the
    point and left stopped, so nothing is written between the point and the new version.
    The point's id goes to ``ctx.operation.params["pre_upgrade_point"]`` (saved)."""
    instance = AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
        pk=instance.pk
    )
    if instance.host is None or instance.host.backup_host is None:
        host = instance.host.name if instance.host is not None else "(none)"
        raise OperationFailed(
            f"The upgrade was not started: {instance.name}'s app host {host} has no backup "
            "host, so no point could be taken to roll a failed upgrade back to."
        )
    mode = BackupMode.HOT if settings.PANEL_UPGRADE_BACKUP_MODE == "hot" else BackupMode.COLD
    try:
        backup = backup_take(ctx, instance, kind=BackupKind.PRE_UPGRADE, mode=mode, restart=False)
    except (OperationFailed, RemoteError) as exc:
        raise OperationFailed(
            f"The backup before the upgrade failed, so the upgrade was not started. {exc}"
        ) from exc
    params = {**(ctx.operation.params or {}), "pre_upgrade_point": str(backup.pk)}
    Operation.objects.filter(pk=ctx.operation.pk).update(params=params)
    ctx.operation.params = params
    ctx.step(
        f"Point {_point_words(backup)} ({backup.taken_at:%Y-%m-%d %H:%M:%S} UTC, {mode}) taken "
        "before the upgrade"
        + ("; the app stays stopped until the new version starts" if mode == "cold" else "")
    )


def restore_after_failed_upgrade(ctx: OperationContext, instance: AtlassianInstance) -> str:
    """Upgrade-failed hook: restore the pre-upgrade point in place with the previous compose
    files (the rollout put them back, unstarted), uncancellable. Returns the sentence for the
    operation's error; raises ``OperationFailed`` with the instance left stopped and FAILED
    if there is no point or its restore fails (never the old image on the upgraded DB)."""
    target = _instance(ctx)
    point_id = (ctx.operation.params or {}).get("pre_upgrade_point")
    backup = (
        Backup.objects.select_related("instance", "backup_host", "app_host")
        .filter(pk=point_id, status=BackupStatus.SUCCEEDED)
        .first()
        if point_id
        else None
    )
    if backup is None:
        reason = (
            f"No point taken before the upgrade is in the catalogue, so {target.name} was left "
            f"stopped: {target.product} {target.version} refuses a database a newer version "
            "upgraded."
        )
        _transition(ctx, target, "failed", reason)
        raise OperationFailed(reason)
    words = f"point {_point_words(backup)} ({backup.taken_at:%Y-%m-%d %H:%M:%S} UTC)"
    ctx.step(
        f"Bringing {target.product} {target.version} back by restoring {words}, taken before "
        "the upgrade"
    )
    restore = Restore.objects.create(
        instance=target,
        source=target,
        backup=backup,
        point_name=backup.point_name,
        point_label=backup.label,
        mode="in_place",
        operation=ctx.operation,
    )
    _transition(ctx, target, "restoring", f"Restoring {words} after a failed upgrade")
    try:
        with ctx.uncancellable():
            outcome = restore_in_place(
                ctx, target, backup, safety_backup=False, on_failure="leave_stopped"
            )
    except OperationFenced:
        raise
    except (OperationFailed, OperationCancelled, RemoteError) as exc:
        reason = f"Restoring {words} after the failed upgrade failed too: {exc}"
        if isinstance(exc, RestoreRefused):  # _leave_stopped says this when it ran
            reason += (
                f" {target.name} was left stopped: its database {target.db_name} holds the "
                "state the failed upgrade left."
            )
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.FAILED, error=str(exc)[:4000], finished_at=timezone.now()
        )
        _transition(ctx, target, "failed", reason[:4000])
        raise OperationFailed(reason) from exc
    Restore.objects.filter(pk=restore.pk).update(
        status=Restore.Status.SUCCEEDED, finished_at=timezone.now(), health=outcome.health
    )
    _transition(ctx, target, "running", "")
    AtlassianInstance.objects.filter(pk=target.pk).update(
        health=InstanceHealth.HEALTHY, health_changed_at=timezone.now()
    )
    return (
        f"Rolled back by restoring {words} with {target.product} {target.version}; "
        f"{target.name} is running again (health: {outcome.health})."
    )


# --- restore --------------------------------------------------------------------------------


def restore_abort(operation: Any, reason: str) -> None:
    backup_abort(operation, reason)  # a safety backup it was taking
    Restore.objects.filter(operation_id=operation.pk, status=Restore.Status.RUNNING).update(
        status=Restore.Status.FAILED, error=reason[:4000], finished_at=timezone.now()
    )
    instance_abort(operation, reason)


def _transition(ctx: OperationContext, instance: AtlassianInstance, to: str, reason: str) -> None:
    # Fenced: a handler whose operation was reaped must not overwrite the reaper's state.
    with ctx.owned():
        instance_transition(instance, to, reason)


# Only staff may cancel restores and drills: a cancel stops them at the next step and rolls
# back, which a tenant admin must not impose on a support person's restore half-way.
@operation_handler(BackupOperationKind.BACKUP_RESTORE, on_abort=restore_abort, staff_cancel=True)
def backup_restore_run(ctx: OperationContext) -> dict:
    """Restore a point in place, or into the new instance this operation targets."""
    started = time.monotonic()
    backup = _backup(ctx)
    target = _instance(ctx)
    mode = ctx.operation.params.get("mode")
    goals = objectives_for(target.tier)
    restore = Restore.objects.create(
        instance=target,
        source=backup.instance,
        backup=backup,
        point_name=backup.point_name,
        point_label=backup.label,
        mode=mode,
        operation=ctx.operation,
    )
    # Where the copy goes is the support person's choice (params["host"]); the step names the
    # host the instance really is on.
    host_name = target.host.name if target.host is not None else ""
    where = "in place" if mode == "in_place" else f"into {target.name} on host {host_name}"
    ctx.step(
        f"Restoring point {_point_words(backup)} ({backup.taken_at:%Y-%m-%d %H:%M} UTC) "
        f"of {backup.instance.name} {where}"
    )
    if backup.version and backup.version != target.version:
        ctx.step(
            f"The point was taken on version {backup.version}; {target.name} runs {target.version}",
            level="warning",
        )
    try:
        wal_in_place = mode == "in_place" and backup.database == PointDatabase.WAL
        if wal_in_place:
            outcome = _restore_wal_point_in_place(ctx, target, backup, restore)
        elif mode == "in_place":
            outcome = _restore_in_place_run(ctx, target, backup, restore)
        else:
            _transition(ctx, target, "provisioning", f"Restoring point {backup.point_name}")
            database = _database_to_time(ctx, backup, "To") or wal.point_database_builder(backup)
            outcome = restore_new(ctx, target, backup, database=database)
            instance_published(ctx, target)
    except RemoteError as exc:
        raise OperationFailed(str(exc)) from exc
    _transition(ctx, target, "running", "")
    AtlassianInstance.objects.filter(pk=target.pk).update(
        health=InstanceHealth.HEALTHY, health_changed_at=timezone.now()
    )
    seconds = time.monotonic() - started
    Restore.objects.filter(pk=restore.pk).update(
        status=Restore.Status.SUCCEEDED,
        finished_at=timezone.now(),
        rto_seconds=round(seconds, 1),
        health=outcome.health,
    )
    ctx.step(
        f"Restored point {_point_words(backup)} ({backup.taken_at:%Y-%m-%d %H:%M:%S} UTC) "
        f"{'in place' if mode == 'in_place' else 'into ' + target.name} in {_words(seconds)} "
        f"(RTO of {target.get_tier_display()}: {_words(goals.rto.total_seconds())}); "
        f"health: {outcome.health}"
    )
    return {
        "restore": str(restore.pk),
        "point": backup.point_name,
        "label": backup.label,
        "taken_at": backup.taken_at.isoformat(),
        "mode": mode,
        "instance": target.name,
        "host": host_name,
        "rto_seconds": round(seconds, 1),
        "rto_objective_seconds": goals.rto.total_seconds(),
        "health": outcome.health,
        "base_url": outcome.base_url or target.base_url,
        # A point of the archive restored in place forked a new timeline (see restore_time_run)
        **({"new_timeline": True} if wal_in_place else {}),
    }


def _restore_in_place_run(
    ctx: OperationContext, target: AtlassianInstance, backup: Backup, restore: Restore
) -> Outcome:
    """The in-place branch of a restore: the instance is RESTORING meanwhile and ends as it
    was (refused), running (rolled back or cancelled after the stop) or restored; the
    ``Restore`` row records a failure or a roll-back here."""
    previous = target.status
    _transition(ctx, target, "restoring", f"Restoring point {backup.point_name}")
    try:
        return restore_in_place(
            ctx,
            target,
            backup,
            on_safety=lambda s: Restore.objects.filter(pk=restore.pk).update(safety_backup=s),
            safety_backup=not ctx.operation.params.get("skip_safety"),
        )
    except RestoreRefused as exc:
        _transition(ctx, target, previous, "")
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.FAILED, error=str(exc)[:4000], finished_at=timezone.now()
        )
        raise
    except (RestoreRolledBack, RestoreCancelled) as exc:
        unchanged = isinstance(exc, RestoreCancelled) and not exc.changed
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.FAILED if unchanged else Restore.Status.ROLLED_BACK,
            error=str(exc)[:4000],
            finished_at=timezone.now(),
        )
        _transition(ctx, target, previous if unchanged else "running", "")
        raise


def _restore_wal_point_in_place(
    ctx: OperationContext, target: AtlassianInstance, backup: Backup, restore: Restore
) -> Outcome:
    """A point of the archive restored in place: its home, and the database replayed to the
    point's second (a restore to that time with this point's home). The current database and
    home are kept aside on the app host until it runs (no safety point over the network); the
    times after the point are a gap of the window from then on."""
    started = time.monotonic()
    assert backup.database_at is not None
    if backup.app_host_id != target.host_id:
        taken_on = backup.app_host.name if backup.app_host else "another host"
        raise OperationFailed(
            f"Point {backup.point_name} was taken on {taken_on} and its database is that "
            f"host's WAL archive; {target.name} runs on another host now. Restore the point "
            "into a new instance."
        )
    previous = target.status
    _transition(ctx, target, "restoring", f"Restoring point {backup.point_name}")
    try:
        result = wal.restore_to_time(ctx, target, backup.database_at, point=backup)
    except BaseException as exc:
        _transition(ctx, target, previous, "")
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.FAILED, error=str(exc)[:4000], finished_at=timezone.now()
        )
        raise
    wal.gap_record(target, backup.database_at)
    ctx.step(
        f"Database replayed to {result['recovered_to']} (the point's second "
        f"{backup.database_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    return Outcome(seconds=time.monotonic() - started, health="RUNNING")


def _database_to_time(
    ctx: OperationContext, backup: Backup, words: str
) -> wal.DatabaseBuilder | None:
    """For a copy to a time (``params["target_time"]``): the point gives the home, the
    source's base backup and archived WAL the database at that second. None: a point copy."""
    target_time = ctx.operation.params.get("target_time")
    if not target_time:
        return None
    moment = datetime.fromisoformat(target_time)
    ctx.step(
        f"{words} {moment:%Y-%m-%d %H:%M:%S} UTC: home from point {backup.point_name}, "
        "database replayed from the archived WAL"
    )
    return wal.database_to_time(backup.instance, moment)


# --- drill ----------------------------------------------------------------------------------


def drill_abort(operation: Any, reason: str) -> None:
    backup_abort(operation, reason)
    RestoreDrill.objects.filter(
        operation_id=operation.pk, status=RestoreDrill.Status.RUNNING
    ).update(status=RestoreDrill.Status.FAILED, error=reason[:4000], finished_at=timezone.now())


@operation_handler(BackupOperationKind.BACKUP_DRILL, on_abort=drill_abort, staff_cancel=True)
def backup_drill_run(ctx: OperationContext) -> dict:
    """Restore the chosen point into a scratch instance, check it answers RUNNING, time it,
    remove it. The source instance is not touched."""
    backup = _backup(ctx)
    source = _instance(ctx)
    host_name = settings.PANEL_BACKUP_DRILL_HOST
    host = (
        Host.objects.select_related("backup_host").filter(name=host_name).first()
        if host_name
        else source.host
    )
    if host is None:
        raise OperationFailed(f"No drill host: {host_name or source.name + ' has no host'}.")
    goals = objectives_for(source.tier)
    scratch = scratch_instance(
        source,
        backup,
        host,
        ctx.operation.params.get("scratch") or f"drill-{str(ctx.operation.pk)[:8]}",
    )
    drill = RestoreDrill.objects.create(
        instance=source,
        backup=backup,
        point_name=backup.point_name,
        operation=ctx.operation,
        tier=source.tier,
        scratch_name=scratch.name,
        scratch_host=host,
        rto_objective_seconds=goals.rto.total_seconds(),
    )
    ctx.add_secrets([scratch.db_password])
    ctx.step(
        f"Drill: restoring {_point_words(backup)} of {source.name} into scratch instance "
        f"{scratch.name} on {host.name}"
    )
    started = time.monotonic()
    error = ""
    outcome = None
    interrupted: BaseException | None = None
    target_time = ctx.operation.params.get("target_time")
    database = _database_to_time(
        ctx, backup, "Drill to a random second of the window:"
    ) or wal.point_database_builder(backup)
    try:
        outcome = restore_new(ctx, scratch, backup, database=database)
    except OperationFenced:
        raise  # reaped: the drill record keeps the scratch name for whoever cleans up
    except (OperationFailed, RemoteError) as exc:
        error = str(exc)
    except BaseException as exc:  # noqa: BLE001 - a cancel or time limit: clean up, re-raised below
        interrupted = exc
        error = "Cancelled on request." if isinstance(exc, OperationCancelled) else str(exc)
    seconds = time.monotonic() - started
    # Uncancellable: the scratch copy holds the customer's data and must not stay behind.
    cleaned = scratch_remove(ctx, scratch)
    passed = outcome is not None and outcome.health == "RUNNING"
    RestoreDrill.objects.filter(pk=drill.pk).update(
        status=RestoreDrill.Status.PASSED if passed else RestoreDrill.Status.FAILED,
        finished_at=timezone.now(),
        rto_seconds=round(seconds, 1) if passed else None,
        within_rto=passed and seconds <= goals.rto.total_seconds(),
        cleaned_up=cleaned,
        error=error[:4000],
    )
    if interrupted is not None:
        raise interrupted
    if not passed:
        raise OperationFailed(f"Drill of {source.name} failed: {error or 'not healthy'}")
    ctx.step(
        f"Drill passed: {source.name} came back in {_words(seconds)} "
        f"(RTO objective {_words(goals.rto.total_seconds())}); scratch instance removed"
    )
    return {
        "drill": str(drill.pk),
        "point": backup.point_name,
        "rto_seconds": round(seconds, 1),
        "within_rto": seconds <= goals.rto.total_seconds(),
        "cleaned_up": cleaned,
        **({"target_time": target_time} if target_time else {}),
    }


# --- point-in-time recovery -----------------------------------------------------------------


def wal_base_abort(operation: Any, reason: str) -> None:
    """A base backup that ends badly leaves no base 'in progress'."""
    BaseBackup.objects.filter(operation_id=operation.pk, status=BaseBackup.Status.RUNNING).update(
        status=BaseBackup.Status.FAILED, error=reason[:4000], finished_at=timezone.now()
    )


@operation_handler(BackupOperationKind.WAL_ENABLE, on_abort=wal_base_abort)
def wal_enable_run(ctx: OperationContext) -> dict:
    """Turn on continuous WAL archiving for the instance and take its first base backup."""
    instance = _instance(ctx)
    try:
        base = wal.wal_enable(ctx, instance)
    except RemoteError as exc:
        raise OperationFailed(str(exc)) from exc
    return {"base_backup": base.label, "size_bytes": base.size_bytes}


@operation_handler(BackupOperationKind.WAL_BASE, on_abort=wal_base_abort)
def wal_base_run(ctx: OperationContext) -> dict:
    """Take a base backup of an instance whose WAL is archived."""
    instance = _instance(ctx)
    if not instance.wal_archiving:
        raise OperationFailed(f"{instance.name} does not archive its WAL.")
    try:
        base = wal.base_backup_take(ctx, instance)
        pruned = wal.wal_prune(ctx, instance)
    except RemoteError as exc:
        raise OperationFailed(str(exc)) from exc
    return {"base_backup": base.label, "size_bytes": base.size_bytes, **pruned}


@operation_handler(BackupOperationKind.RESTORE_TIME, staff_cancel=True)
def restore_time_run(ctx: OperationContext) -> dict:
    """Restore the instance in place to a second inside its recoverable window."""
    started = time.monotonic()
    instance = _instance(ctx)
    target = datetime.fromisoformat(ctx.operation.params["target_time"])
    previous = instance.status
    _transition(ctx, instance, "restoring", f"Restoring to {target:%Y-%m-%d %H:%M:%S} UTC")
    try:
        result = wal.restore_to_time(ctx, instance, target)
    except BaseException:
        _transition(ctx, instance, previous, "")
        raise
    _transition(ctx, instance, "running", "")
    wal.gap_record(instance, target)
    seconds = round(time.monotonic() - started, 1)
    ctx.step(
        f"Restored {instance.name} to {target:%Y-%m-%d %H:%M:%S} UTC in {_words(seconds)} "
        f"(database replayed to {result['recovered_to']}; home from point "
        f"{result['home_point']})"
    )
    return {**result, "rto_seconds": seconds}
