"""Writes of the backups app: policies, starting backups, restores and drills, restore
requests, and the central dispatchers the beat schedule calls. Every change is audited;
remote work is an Operation carried out by the handlers in :mod:`backups.operations`."""

from __future__ import annotations

import logging
import random
import secrets
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import CharField, Exists, F, Max, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat
from django.urls import reverse
from django.utils import timezone

from backups import wal
from backups.catalogue import catalogue_refresh, instances_backup_state_refresh
from backups.models import (
    Backup,
    BackupKind,
    BackupMode,
    BackupOperationKind,
    BackupPolicy,
    BackupStatus,
    BaseBackup,
    PointDatabase,
    RestoreDrill,
    RestoreMode,
    RestoreRequest,
    WalArchive,
)
from backups.policies import (
    deadline_expression,
    next_run_after,
    policy_for,
    run_deadline,
    run_missed,
    window_minutes,
    window_of,
)
from backups.restore import copy_marks
from backups.selectors import (
    recovery_gap,
    recovery_window,
    recovery_window_start,
    restore_copy_of,
    wal_problem,
)
from backups.store import PointStore
from panel.access import Access
from panel.audit import audit_record
from panel.notices import notify, notify_resolved
from panel.operation_requests import operation_by_key, operation_conflict_check
from panel.operations import OperationConflict, operation_start
from provisioning import validators
from provisioning.models import (
    ACTIVE_STATUSES,
    AtlassianInstance,
    Host,
    InstanceStatus,
    Operation,
    OperationKind,
    OperationStatus,
)
from provisioning.ports import HostPortsExhausted, instance_host_port_allocate
from provisioning.remote import RemoteError
from provisioning.services import host_fit_problem, instance_lock_key
from tenants.tiers import objectives_for

log = logging.getLogger(__name__)

BACKUP_FROM = {InstanceStatus.RUNNING, InstanceStatus.STOPPED}
RESTORE_IN_PLACE_FROM = {InstanceStatus.RUNNING, InstanceStatus.STOPPED, InstanceStatus.FAILED}
POLICY_FIELDS = (
    "enabled",
    "interval_minutes",
    "window_start",
    "jitter_minutes",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "mode",
    "backup_host",
    "offsite_enabled",
)


# --- policies -------------------------------------------------------------------------------


def policy_update(*, actor: Access, policy: BackupPolicy, **changes: Any) -> BackupPolicy:
    """Staff change an instance's policy; the next run is recomputed from the new schedule."""
    if not (actor.is_staff_role and actor.can_write):
        raise PermissionDenied("Only support staff change backup policies.")
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown policy fields: {', '.join(sorted(unknown))}.")
    before = {name: getattr(policy, name) for name in changes}
    for name, value in changes.items():
        setattr(policy, name, value)
    if policy.backup_host is not None and policy.backup_host.role != Host.Role.BACKUP:
        raise ValidationError({"backup_host": f"{policy.backup_host.name} is not a backup host."})
    host = policy.instance.host
    if (
        policy.backup_host is not None
        and host is not None
        and (host.backup_host_id != policy.backup_host_id)
    ):
        raise ValidationError(
            {
                "backup_host": (
                    f"{host.name} pushes its backups to "
                    f"{host.backup_host.name if host.backup_host else 'no backup host'}; "
                    f"provision it with {policy.backup_host.name} first, or leave this empty."
                )
            }
        )
    if policy.keep_hourly + policy.keep_daily + policy.keep_weekly + policy.keep_monthly == 0:
        raise ValidationError("Keep at least one point (daily, weekly, monthly or hourly).")
    policy.full_clean()
    if {"interval_minutes", "window_start", "jitter_minutes", "enabled"} & set(changes):
        policy.next_run_at = next_run_after(policy, timezone.now())
    policy.save()
    audit_record(
        actor=actor,
        action="backup.policy.update",
        target=policy.instance,
        changes={
            k: [str(before[k]), str(getattr(policy, k))]
            for k in changes
            if before[k] != getattr(policy, k)
        },
    )
    return policy


# --- backups --------------------------------------------------------------------------------


def backup_check_possible(instance: AtlassianInstance) -> None:
    if instance.status not in BACKUP_FROM:
        raise ValidationError(
            f"{instance.name} is {instance.get_status_display().lower()}; only running or "
            "stopped instances are backed up."
        )
    if instance.host is None or instance.host.backup_host_id is None:
        raise ValidationError(
            f"{instance.name} has no backup host: its app host must be given one first."
        )


def manual_backups_check_quota(instance: AtlassianInstance) -> None:
    """Refuse another extra backup once the instance or its tenant started its daily share
    (``PANEL_BACKUP_MANUAL_PER_*_PER_DAY``): each extra point holds a full dump on the shared
    backup host for days, so a loop of them would fill it for every tenant. Failed or
    cancelled runs hold no point and do not count."""
    since = timezone.now() - timedelta(days=1)
    started = Operation.objects.filter(
        kind=BackupOperationKind.BACKUP_CREATE,
        params__kind=BackupKind.MANUAL,
        created_at__gte=since,
        requested_by__isnull=False,
    ).exclude(status__in=["failed", "cancelled"])
    limits = (
        (
            settings.PANEL_BACKUP_MANUAL_PER_INSTANCE_PER_DAY,
            started.filter(instance=instance),
            f"{instance.name} already had",
        ),
        (
            settings.PANEL_BACKUP_MANUAL_PER_TENANT_PER_DAY,
            started.filter(instance__tenant_id=instance.tenant_id),
            "this organisation's instances already had",
        ),
    )
    for limit, rows, who in limits:
        if limit and rows.count() >= limit:
            oldest = rows.order_by("created_at").values_list("created_at", flat=True)[0]
            again = oldest + timedelta(days=1)
            raise ValidationError(
                f"Limit of extra backups reached: {who} {limit} in the last 24 hours. "
                f"The next one can start after {again:%Y-%m-%d %H:%M} UTC; scheduled "
                "backups continue as usual."
            )


def backup_start(
    *,
    actor: Access | None,
    instance: AtlassianInstance,
    mode: str | None = None,
    kind: str = BackupKind.MANUAL,
    idempotency_key: str = "",
) -> Operation:
    """Start a backup of ``instance`` now (tenant admins: an extra backup; the dispatcher:
    scheduled ones). Refused with 409 while another operation holds the instance."""
    if actor is not None and not actor.administers_tenant(instance.tenant_id):
        raise PermissionDenied("Only the tenant's administrators can start a backup.")
    # 409 naming the running operation before "is restoring" and the other state checks.
    operation_conflict_check(instance_lock_key(instance))
    backup_check_possible(instance)
    if kind == BackupKind.MANUAL and actor is not None and not actor.is_staff_role:
        manual_backups_check_quota(instance)
    policy = policy_for(instance)
    mode = mode or policy.mode
    if mode not in BackupMode.values:
        raise ValidationError({"mode": f"Choose one of {', '.join(BackupMode.values)}."})
    return operation_start(
        kind=BackupOperationKind.BACKUP_CREATE,
        actor=actor,
        instance=instance,
        params={
            "kind": kind,
            "mode": mode,
            "backup_host": str(instance.host.backup_host_id),
            "app_host": str(instance.host_id),
        },
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )


# --- point-in-time recovery -----------------------------------------------------------------


def wal_enable_start(
    *, actor: Access | None, instance: AtlassianInstance, idempotency_key: str = ""
) -> Operation:
    """Turn on continuous WAL archiving (the database restarts once) and take the first base
    backup. Staff, or the panel itself (no actor) for a new instance."""
    if actor is not None:
        _require_staff(actor)
    operation_conflict_check(instance_lock_key(instance))
    if instance.wal_archiving and WalArchive.objects.filter(instance=instance).exists():
        raise ValidationError(f"{instance.name} archives its WAL already.")
    backup_check_possible(instance)
    return operation_start(
        kind=BackupOperationKind.WAL_ENABLE,
        actor=actor,
        instance=instance,
        params={},
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )


def wal_base_start(
    *, actor: Access | None, instance: AtlassianInstance, idempotency_key: str = ""
) -> Operation:
    """Take a base backup now (staff, or the scheduler with no actor)."""
    if actor is not None:
        _require_staff(actor)
    if not instance.wal_archiving:
        raise ValidationError(f"{instance.name} does not archive its WAL.")
    operation_conflict_check(instance_lock_key(instance))
    return operation_start(
        kind=BackupOperationKind.WAL_BASE,
        actor=actor,
        instance=instance,
        params={},
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )


def restore_to_time_start(
    *,
    actor: Access,
    instance: AtlassianInstance,
    target_time: datetime,
    confirm_name: str = "",
    idempotency_key: str = "",
    mode: str = RestoreMode.IN_PLACE,
    name: str = "",
    hostname: str = "",
    host: Host | None = None,
) -> Operation:
    """Restore ``instance`` to ``target_time`` (UTC, to the second), inside its recoverable
    window: in place (the instance's name typed to confirm), or into a new instance with its
    own ``name`` and ``hostname`` (on ``host``, default the source's) whose home comes from the
    newest point before the time and its database replayed to it. Staff only."""
    _require_staff(actor)
    in_place = mode == RestoreMode.IN_PLACE
    if mode not in (RestoreMode.IN_PLACE, RestoreMode.NEW_INSTANCE):
        raise ValidationError({"mode": "Choose in_place or new_instance."})
    if in_place:
        operation_conflict_check(instance_lock_key(instance))
    if not instance.wal_archiving:
        raise ValidationError(
            {"target_time": f"{instance.name} does not archive its WAL; restore a point instead."}
        )
    if in_place and confirm_name.strip() != instance.name:
        raise ValidationError({"confirm": f"Type {instance.name} to confirm the restore."})
    if in_place and instance.status not in RESTORE_IN_PLACE_FROM:
        raise ValidationError(
            f"{instance.name} is {instance.get_status_display().lower()}; it cannot be "
            "restored in place now."
        )
    if timezone.is_naive(target_time):
        raise ValidationError({"target_time": "Give the time with its zone (e.g. ...Z)."})
    target_time = target_time.replace(microsecond=0)
    start = recovery_window_start(instance)
    if start is None or not (start <= target_time <= timezone.now()):
        span = (
            f"{start:%Y-%m-%d %H:%M:%S} UTC to now"
            if start is not None
            else "not open yet (it opens with the first base backup and backup point)"
        )
        raise ValidationError(
            {"target_time": f"Choose a time inside the recoverable window: {span}."}
        )
    gap = recovery_gap(instance, target_time)
    if gap is not None:
        raise ValidationError(
            {
                "target_time": f"{instance.name} was restored to {gap[0]:%Y-%m-%d %H:%M:%S} UTC "
                f"at {gap[1]:%Y-%m-%d %H:%M:%S} UTC; the times in between cannot be restored. "
                "Choose a time before or after them."
            }
        )
    if not in_place and instance.status != InstanceStatus.RUNNING:
        # The copy writes one commit on the source and waits for it to be archived (a replay
        # stops at the first commit after its target).
        raise ValidationError(
            f"{instance.name} is {instance.get_status_display().lower()}; a copy to a time "
            "needs it running."
        )
    if not in_place:
        point = (
            Backup.objects.filter(
                instance=instance, status=BackupStatus.SUCCEEDED, taken_at__lte=target_time
            )
            .order_by("-taken_at")
            .first()
        )
        if point is None:  # the window starts at the oldest point: not reached
            raise ValidationError({"target_time": "No backup point was taken before that time."})
        return _restore_new_start(
            actor=actor,
            backup=point,
            params={
                "backup": str(point.pk),
                "mode": RestoreMode.NEW_INSTANCE,
                "source": str(instance.pk),
                "target_time": target_time.isoformat(),
            },
            name=name,
            hostname=hostname,
            host=host,
            idempotency_key=idempotency_key,
        )
    return operation_start(
        kind=BackupOperationKind.RESTORE_TIME,
        actor=actor,
        instance=instance,
        params={"target_time": target_time.isoformat()},
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )


# --- restores -------------------------------------------------------------------------------


def _require_staff(actor: Access) -> None:
    if not (actor.is_staff_role and actor.can_write):
        raise PermissionDenied("Only support staff and platform admins restore backups.")


def restore_start(
    *,
    actor: Access,
    backup: Backup,
    mode: str,
    confirm_name: str = "",
    name: str = "",
    hostname: str = "",
    host: Host | None = None,
    skip_safety: bool = False,
    idempotency_key: str = "",
) -> Operation:
    """Restore a retained point, in place (the instance's name typed to confirm) or into a new
    instance with its own name and hostname. Staff only. ``skip_safety`` restores in place
    without a safety backup first (for an instance whose current state cannot be backed up)."""
    _require_staff(actor)
    source = backup.instance
    if mode == RestoreMode.IN_PLACE:
        # 409 naming the running operation before "is restoring" and the other state checks.
        operation_conflict_check(instance_lock_key(source))
    if not backup.is_restorable:
        raise ValidationError(
            {"backup": f"Point {backup.point_name} is {backup.get_status_display().lower()}."}
        )
    if backup.database == PointDatabase.WAL:
        _wal_point_check(backup, in_place=mode == RestoreMode.IN_PLACE)
    params = {"backup": str(backup.pk), "mode": mode, "source": str(source.pk)}
    if mode == RestoreMode.IN_PLACE:
        if confirm_name.strip() != source.name:
            raise ValidationError({"confirm": f"Type {source.name} to confirm the restore."})
        if source.status not in RESTORE_IN_PLACE_FROM:
            raise ValidationError(
                f"{source.name} is {source.get_status_display().lower()}; it cannot be "
                "restored in place now."
            )
        if skip_safety:
            params["skip_safety"] = True
        return operation_start(
            kind=BackupOperationKind.BACKUP_RESTORE,
            actor=actor,
            instance=source,
            params=params,
            lock_key=instance_lock_key(source),
            idempotency_key=idempotency_key,
        )
    if mode != RestoreMode.NEW_INSTANCE:
        raise ValidationError({"mode": "Choose in_place or new_instance."})
    return _restore_new_start(
        actor=actor,
        backup=backup,
        params=params,
        name=name,
        hostname=hostname,
        host=host,
        idempotency_key=idempotency_key,
    )


def _wal_point_check(backup: Backup, *, in_place: bool) -> None:
    """Refuse, before anything starts, a point of the archive whose database the archive can
    no longer give: its second lies on a timeline a later restore left, or (in place) the
    instance runs on another host than the one whose archive holds it."""
    source = backup.instance
    moment = backup.database_at
    gap = recovery_gap(source, moment) if moment is not None else None
    if moment is None or gap is not None:
        why = (
            f"{source.name} was restored to {gap[0]:%Y-%m-%d %H:%M:%S} UTC at "
            f"{gap[1]:%Y-%m-%d %H:%M:%S} UTC, which left the timeline it is on"
            if gap is not None
            else "it has no database time"
        )
        raise ValidationError(
            {"backup": f"Point {backup.point_name}'s database is the WAL archive, and {why}."}
        )
    if in_place and backup.app_host_id != source.host_id:
        raise ValidationError(
            {
                "mode": f"Point {backup.point_name}'s database is the WAL archive of the host "
                f"{source.name} ran on then; restore it into a new instance."
            }
        )


@transaction.atomic
def _restore_new_start(
    *,
    actor: Access,
    backup: Backup,
    params: dict[str, str],
    name: str,
    hostname: str,
    host: Host | None,
    idempotency_key: str,
) -> Operation:
    from provisioning.products import versions_for

    # The new instance's row is made before the operation: a repeated request must find its
    # operation first, or the name it already took would refuse it.
    existing = operation_by_key(actor, idempotency_key, kind=BackupOperationKind.BACKUP_RESTORE)
    if existing is not None:
        return existing
    source = backup.instance
    host = host or source.host
    errors = {}
    # The same rules as a new instance's (reserved names, the platform's own hostnames, names
    # that already exist in a managed zone): a copy must not take over a name either.
    for field, value, check, missing in (
        ("name", name, validators.validate_instance_name, "Name the new instance."),
        (
            "hostname",
            hostname,
            validators.validate_instance_hostname,
            "Give the new instance its own hostname.",
        ),
    ):
        if not value:
            errors[field] = missing
            continue
        try:
            check(value)
        except ValidationError as exc:
            errors[field] = " ".join(exc.messages)
    if host is None or host.role != Host.Role.APP or host.status != Host.Status.READY:
        errors["host"] = "Choose a ready app host."
    elif host.backup_host_id != backup.backup_host_id:
        errors["host"] = (
            f"{host.name} cannot read points on "
            f"{backup.backup_host.name}; choose an app host that backs up there."
        )
    else:
        # The copy is a new instance next to the source: the host needs room for it as well as
        # for everything already on it (the same reckoning as placing a new instance).
        problem = host_fit_problem(restore_copy_of(source, name=name), host)
        if problem is not None:
            errors["host"] = f"{problem} Choose an app host with room for the copy."
    if errors:
        raise ValidationError(errors)
    params = {**params, "host": host.name}
    version = backup.version if backup.version in versions_for(source.product) else source.version
    target = AtlassianInstance(
        tenant=source.tenant,
        name=name,
        product=source.product,
        version=version,
        hostname=hostname,
        context_path=source.context_path,
        host=host,
        heap_min_mb=source.heap_min_mb,
        heap_max_mb=source.heap_max_mb,
        tier=source.tier,
        db_name=name.replace("-", "_"),
        db_user=name.replace("-", "_"),
        db_password=secrets.token_urlsafe(24),
        extra_env=dict(source.extra_env or {}),
        **copy_marks(source, backup),
    )
    target.full_clean()
    target.save()
    # The copy's own git-over-SSH / agent port on the target host (not the source's).
    assert host is not None  # a missing host was refused above
    try:
        instance_host_port_allocate(target, host)
    except HostPortsExhausted as exc:
        raise ValidationError({"host": str(exc)}) from exc
    audit_record(
        actor=actor,
        action="instance.create",
        target=target,
        changes={
            "restored_from": source.name,
            "point": backup.point_name,
            "hostname": hostname,
            "host": host.name,
        },
    )
    return operation_start(
        kind=BackupOperationKind.BACKUP_RESTORE,
        actor=actor,
        instance=target,
        params={**params, "target": str(target.pk)},
        lock_key=instance_lock_key(target),
        idempotency_key=idempotency_key,
    )


# --- drills ---------------------------------------------------------------------------------


def latest_good_backup(instance: AtlassianInstance) -> Backup | None:
    return (
        Backup.objects.filter(instance=instance, status=BackupStatus.SUCCEEDED)
        .exclude(point_name="")
        .select_related("backup_host", "app_host")
        .order_by("-taken_at")
        .first()
    )


def drill_candidates() -> Any:
    """Instances with a retained point, least recently drilled first."""
    return (
        AtlassianInstance.objects.filter(
            status__in=list(BACKUP_FROM), backups__status=BackupStatus.SUCCEEDED
        )
        .annotate(last_drill=Max("drills__started_at"))
        .distinct()
        .order_by("last_drill")
    )


def drill_start(
    *, actor: Access | None, instance: AtlassianInstance | None = None, idempotency_key: str = ""
) -> Operation:
    """Start a restore drill of ``instance`` (or of the least recently drilled one)."""
    if actor is not None:
        _require_staff(actor)
    if instance is None:
        candidates = list(drill_candidates()[:20])
        if not candidates:
            raise ValidationError("No instance has a retained point to drill yet.")
        never = [c for c in candidates if c.last_drill is None]
        instance = random.choice(never) if never else candidates[0]
    operation_conflict_check(f"drill:{instance.pk}")
    backup = latest_good_backup(instance)
    if backup is None:
        raise ValidationError(f"{instance.name} has no retained point to drill.")
    params = {"backup": str(backup.pk), "scratch": f"drill-{secrets.token_hex(4)}"}
    running = instance.status == InstanceStatus.RUNNING  # the replay needs a marker commit
    window = recovery_window(instance) if instance.wal_archiving and running else None
    if window is not None:
        # With point-in-time recovery, a drill restores a random second of the window: every
        # part of the archive gets tried over time, not only the newest point.
        span = int((window.end - window.start).total_seconds())
        # To the second, never before the window's start (truncation takes less than 1 s).
        offset = timedelta(seconds=random.randint(1, max(span, 1)))
        target = (window.start + offset).replace(microsecond=0)
        gap = recovery_gap(instance, target)
        if gap is not None:  # past a restore's fork: the first second after it
            target = (gap[1] + timedelta(seconds=1)).replace(microsecond=0)
        point = (
            Backup.objects.filter(
                instance=instance, status=BackupStatus.SUCCEEDED, taken_at__lte=target
            )
            .order_by("-taken_at")
            .first()
        )
        if point is not None and target <= window.end:
            params = {**params, "backup": str(point.pk), "target_time": target.isoformat()}
    return operation_start(
        kind=BackupOperationKind.BACKUP_DRILL,
        actor=actor,
        instance=instance,
        params=params,
        lock_key=f"drill:{instance.pk}",
        idempotency_key=idempotency_key,
    )


# --- restore requests -----------------------------------------------------------------------

# The notices this app raises (declared from BackupsConfig.ready(); told by panel.notices).
BACKUP_FAILED = "backup.failed"
RPO_BREACHED = "backup.rpo_breached"
RESTORE_REQUESTED = "backup.restore_requested"
WAL_BROKEN = "backup.wal_broken"
NOTIFICATION_EVENTS = (
    (BACKUP_FAILED, "A backup was missed or failed", False),
    (RPO_BREACHED, "The recovery point objective was breached", False),
    (RESTORE_REQUESTED, "A tenant asked for a restore (staff)", True),
    (WAL_BROKEN, "An instance's WAL archiving stopped (staff)", True),
    ("host.evacuation_due", "A failed host is about to be evacuated automatically (staff)", True),
    ("host.evacuated", "A failed host was evacuated (staff)", True),
    ("instance.evacuated", "An instance was brought back on another host", False),
)


def restore_request_create(
    *, actor: Access, instance: AtlassianInstance, backup: Backup | None = None, note: str = ""
) -> RestoreRequest:
    """A tenant admin asks support to restore a point (customers have no restore button)."""
    if not actor.administers_tenant(instance.tenant_id):
        raise PermissionDenied("Only the tenant's administrators can request a restore.")
    if backup is not None and backup.instance_id != instance.pk:
        raise ValidationError({"backup": "That point belongs to another instance."})
    request = RestoreRequest.objects.create(
        instance=instance, backup=backup, requested_by=actor.user, note=note.strip()[:2000]
    )
    audit_record(
        actor=actor,
        action="backup.restore_request",
        target=instance,
        changes={"request": str(request.pk), "point": backup.point_name if backup else None},
    )
    # Staff are told as a platform notice (PANEL_BACKUP_ALERT_EMAILS always get it by email).
    notify(
        event=RESTORE_REQUESTED,
        tenant=None,
        obj=request,
        dedupe_key=f"restore-request:{request.pk}",
        subject=f"Restore requested for {instance.name}",
        body=f"{actor.user} asked to restore {instance.name} "
        f"({backup.point_name if backup else 'no point chosen'}).\n\n{request.note}",
        url=reverse("backups:restore_requests"),
    )
    return request


def restore_request_handle(
    *, actor: Access, request: RestoreRequest, status: str, response: str = ""
) -> RestoreRequest:
    _require_staff(actor)
    if status not in (RestoreRequest.Status.DONE, RestoreRequest.Status.DECLINED):
        raise ValidationError({"status": "Mark the request done or declined."})
    request.status = status
    request.response = response.strip()[:2000]
    request.handled_by = actor.user
    request.handled_at = timezone.now()
    request.save(update_fields=["status", "response", "handled_by", "handled_at"])
    audit_record(
        actor=actor,
        action="backup.restore_request.handle",
        target=request.instance,
        changes={"request": str(request.pk), "status": status},
    )
    return request


# --- central orchestration ------------------------------------------------------------------


def _active_backup_counts() -> tuple[dict[str, int], dict[str, int]]:
    """Active backups per backup host and per app host (from the operations' params)."""
    per_backup: dict[str, int] = {}
    per_app: dict[str, int] = {}
    for params in Operation.objects.filter(
        kind=BackupOperationKind.BACKUP_CREATE, status__in=ACTIVE_STATUSES
    ).values_list("params", flat=True):
        b, a = str(params.get("backup_host", "")), str(params.get("app_host", ""))
        per_backup[b] = per_backup.get(b, 0) + 1
        per_app[a] = per_app.get(a, 0) + 1
    return per_backup, per_app


# The dispatchers' PostgreSQL advisory lock (any fixed number the panel uses for nothing else).
DISPATCH_LOCK = zlib.crc32(b"backups.backups_dispatch")


def _dispatch_lock() -> None:
    """Make dispatchers take turns until the surrounding transaction ends (beat's tick and the
    one each ended backup runs may meet): each reads the active backups after the previous
    one's are committed, so two never fill the same free slot."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK])


# Beat's dispatcher gives policies to new instances every this many minutes: the one read of
# the whole fleet (an anti-join of instances and policies), so not every minute. A new
# instance's first run is due at its next window anyway.
POLICIES_ENSURE_EVERY = 10


def _policies_ensure() -> None:
    """Give a policy to each instance that should be backed up and has none yet."""
    for instance in AtlassianInstance.objects.filter(
        status__in=list(BACKUP_FROM), backup_policy__isnull=True, host__backup_host__isnull=False
    ):
        policy_for(instance)


def _uuids(values: Any) -> list[uuid.UUID]:
    """The values that are UUIDs (operation params are free-form JSON)."""
    found = []
    for value in values:
        try:
            found.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return found


@dataclass(frozen=True)
class DueRun:
    """A due scheduled run as the dispatcher's plan reads it (the policy itself is loaded
    only for the runs it starts)."""

    policy_id: Any
    due: datetime
    interval_minutes: int
    backup_host_id: Any
    app_host_id: Any

    @property
    def deadline(self) -> datetime:
        return self.due + window_of(self.interval_minutes)


def _due_runs(
    now: datetime,
    *,
    backup_hosts: list[Any],
    busy_app_hosts: list[uuid.UUID],
    tried: list[Any],
    limit: int,
) -> list[DueRun]:
    """Up to ``limit`` runs due at ``now`` of the instances backed up to ``backup_hosts``,
    earliest deadline first (:func:`backups.policies.run_deadline`), without those whose app
    host is at its cap, those another operation holds (they stay due with their deadline and
    start once it ends) and those already tried in this pass.

    Two index scans that stop at ``limit``, merged by deadline: the policies whose window is
    the nightly one (every daily or weekly policy: deadline = due + the same window, so due
    order is deadline order) straight from ``next_run_at``'s index, however long the queue;
    and the more frequent ones (their own partial index), sorted by deadline."""
    held = Operation.objects.filter(
        status__in=ACTIVE_STATUSES,
        lock_key=Concat(Value("instance:"), Cast(OuterRef("instance_id"), CharField())),
    )
    due = (
        BackupPolicy.objects.filter(
            enabled=True,
            next_run_at__lte=now,
            instance__status__in=list(BACKUP_FROM),
            instance__host__backup_host_id__in=backup_hosts,
        )
        .exclude(instance__host_id__in=busy_app_hosts)
        .exclude(pk__in=tried)
        .filter(~Exists(held))
    )
    fields = ("pk", "next_run_at", "interval_minutes", "instance__host__backup_host_id")
    window = window_minutes()
    # Ordered by the indexed column alone, so PostgreSQL walks the index and stops early.
    nightly = (
        due.filter(interval_minutes__gte=window)
        .order_by("next_run_at")
        .values_list(*fields, "instance__host_id")[:limit]
    )
    frequent = (
        due.filter(interval_minutes__lt=window)
        .order_by(deadline_expression().asc(), "next_run_at", "pk")
        .values_list(*fields, "instance__host_id")[:limit]
    )
    runs = [DueRun(*row) for row in (*nightly, *frequent)]
    runs.sort(key=lambda r: (r.deadline, r.due, str(r.policy_id)))
    return runs[:limit]


def backups_dispatch(
    now: datetime | None = None, *, backup_host_id: Any = None
) -> dict[str, list[str]]:
    """Start the scheduled backups that are due, earliest deadline first within the caps, and
    note the runs that start after their window (missed).

    Beat calls it every minute for every backup host, and each backup that ends calls it for
    its own backup host (:func:`backup_ended_dispatch`), so a freed slot is filled at once,
    not on the next minute. It reads the due runs of the backup hosts with a free slot in
    deadline order (:func:`_due_runs`), leaving out app hosts at
    ``PANEL_BACKUP_MAX_PER_APP_HOST`` (the slot goes to the next instance on a free app host
    instead of idling) and instances another operation holds, and stops once the
    ``PANEL_BACKUP_MAX_PER_BACKUP_HOST`` slots are full: a call costs index scans as long as
    the runs it starts, however long the queue. Dispatchers take turns
    (:func:`_dispatch_lock`); beat's call gives new instances their policy every
    :data:`POLICIES_ENSURE_EVERY` minutes. A policy is claimed by moving its ``next_run_at``
    with a conditional UPDATE, so no run starts twice. A run that starts after its deadline
    (:func:`backups.policies.run_missed`) is missed: counted on the policy, audited and
    notified, and started now, once.
    """
    now = now or timezone.now()
    cap_backup = settings.PANEL_BACKUP_MAX_PER_BACKUP_HOST
    cap_app = settings.PANEL_BACKUP_MAX_PER_APP_HOST
    started: list[str] = []
    missed: list[str] = []
    with transaction.atomic():
        _dispatch_lock()
        if backup_host_id is None and now.minute % POLICIES_ENSURE_EVERY == 0:
            _policies_ensure()
        per_backup, per_app = _active_backup_counts()
        hosts = Host.objects.filter(role=Host.Role.BACKUP)
        if backup_host_id is not None:
            hosts = hosts.filter(pk__in=_uuids([backup_host_id]))
        free = {
            b: cap_backup - per_backup.get(str(b), 0)
            for b in hosts.values_list("pk", flat=True)
            if per_backup.get(str(b), 0) < cap_backup
        }
        tried: list[Any] = []
        while free:
            busy = _uuids(a for a, n in per_app.items() if n >= cap_app)
            batch = _due_runs(
                now,
                backup_hosts=list(free),
                busy_app_hosts=busy,
                tried=tried,
                limit=sum(free.values()),
            )
            if not batch:
                break
            for run in batch:
                tried.append(run.policy_id)
                b, a_key = run.backup_host_id, str(run.app_host_id)
                # Filled by an earlier run of this batch: the rest wait for the next pass.
                if free.get(b, 0) <= 0 or per_app.get(a_key, 0) >= cap_app:
                    continue
                op = _scheduled_run_start(run, now, missed)
                if op is None:
                    continue
                free[b] -= 1
                per_app[a_key] = per_app.get(a_key, 0) + 1
                started.append(str(op.id))
            free = {b: n for b, n in free.items() if n > 0}
    return {"started": started, "missed": missed}


def _scheduled_run_start(run: DueRun, now: datetime, missed: list[str]) -> Any:
    """Claim a due run and start its backup (None when it was claimed elsewhere or cannot
    start); a start after the run's deadline is recorded as missed."""
    policy = BackupPolicy.objects.select_related("instance__host", "instance__tenant").get(
        pk=run.policy_id
    )
    instance = policy.instance
    claimed = BackupPolicy.objects.filter(pk=policy.pk, next_run_at=run.due).update(
        next_run_at=next_run_after(policy, now), last_dispatched_at=now
    )
    if not claimed:
        return None
    try:
        op = backup_start(actor=None, instance=instance, kind=BackupKind.SCHEDULED)
    except OperationConflict:
        # Taken by another operation since it was read: the run stays due with its deadline
        # (the next pass leaves it out until that operation ends).
        BackupPolicy.objects.filter(pk=policy.pk).update(
            next_run_at=run.due, last_dispatched_at=policy.last_dispatched_at
        )
        return None
    except ValidationError as exc:
        log.warning("scheduled backup of %s not started: %s", instance.name, exc)
        return None
    if run_missed(policy, run.due, now):
        missed.append(instance.name)
        _missed_record(policy, run.due, now)
    return op


def _missed_record(policy: BackupPolicy, due: datetime, started: datetime) -> None:
    """Count, audit and notify a run that started after its deadline."""
    instance = policy.instance
    deadline = run_deadline(policy, due)
    BackupPolicy.objects.filter(pk=policy.pk).update(
        missed_count=F("missed_count") + 1, last_missed_at=due
    )
    audit_record(
        actor=None,
        action="backup.missed",
        target=instance,
        changes={
            "due": due.isoformat(),
            "deadline": deadline.isoformat(),
            "started": started.isoformat(),
            "late_seconds": int((started - deadline).total_seconds()),
        },
    )
    _missed_notify(instance, due, deadline, started)


def backup_ended_dispatch(operation: Operation) -> dict[str, list[str]] | None:
    """The runner's listener for ended operations (succeeded and failed): when a backup ends,
    record how long it held its slot (the policy's ``last_run_seconds``, which the DR
    dashboard's capacity plan reads) and start the next due backups of its backup host, as of
    the moment it ended."""
    if operation.kind != BackupOperationKind.BACKUP_CREATE:
        return None
    ended = operation.finished_at or timezone.now()
    if (
        operation.status == OperationStatus.SUCCEEDED
        and operation.started_at is not None
        and operation.instance_id is not None
    ):
        BackupPolicy.objects.filter(instance_id=operation.instance_id).update(
            last_run_seconds=max(0.0, (ended - operation.started_at).total_seconds())
        )
    backup_host = _uuids([(operation.params or {}).get("backup_host", "")])
    if not backup_host:
        return None
    return backups_dispatch(ended, backup_host_id=backup_host[0])


def wal_after_create(operation: Operation) -> str | None:
    """The runner's listener for succeeded operations: a new instance archives its WAL from
    the start (``PANEL_WAL_ON_CREATE``), so its points carry no dump and it can be restored
    to any second. Returns the enabling operation's id (None: off, or it could not start; an
    instance without a backup host has nowhere to archive to)."""
    if (
        operation.kind != OperationKind.INSTANCE_CREATE
        or operation.instance_id is None
        or not settings.PANEL_WAL_ON_CREATE
    ):
        return None
    instance = (
        AtlassianInstance.objects.select_related("host__backup_host")
        .filter(pk=operation.instance_id)
        .first()
    )
    if instance is None or instance.wal_archiving:
        return None
    return _panel_start(wal_enable_start, instance, "WAL archiving not turned on")


def base_after_restore(operation: Operation) -> str | None:
    """The runner's listener for succeeded operations: a restore in place that forked a new
    timeline (its result says ``new_timeline``) is followed by a base backup on it, started
    once the restore ended and released the instance. Returns the base operation's id."""
    if not (operation.result or {}).get("new_timeline") or operation.instance_id is None:
        return None
    instance = AtlassianInstance.objects.filter(pk=operation.instance_id).first()
    if instance is None or not instance.wal_archiving:
        return None
    # If it cannot start, the daily base (backups-wal-bases) takes one later; meanwhile points
    # keep a dump.
    return _panel_start(wal_base_start, instance, "no base backup after the restore")


def _panel_start(start: Any, instance: AtlassianInstance, failed: str) -> str | None:
    """Start an operation on ``instance`` for the panel itself (no actor) from a listener: its
    id, or None, logged, when it cannot start (another operation holds the instance, or it
    is refused); a listener must not raise."""
    try:
        return str(start(actor=None, instance=instance).pk)
    except (OperationConflict, ValidationError) as exc:
        log.warning("%s: %s: %s", failed, instance.name, exc)
        return None


def drills_dispatch(now: datetime | None = None) -> str | None:
    """Start the next scheduled drill when ``PANEL_BACKUP_DRILL_INTERVAL_HOURS`` have passed
    since the last one (0 turns scheduled drills off); one drill at a time."""
    now = now or timezone.now()
    hours = float(settings.PANEL_BACKUP_DRILL_INTERVAL_HOURS)
    if hours <= 0:
        return None
    if Operation.objects.filter(
        kind=BackupOperationKind.BACKUP_DRILL, status__in=ACTIVE_STATUSES
    ).exists():
        return None
    last = RestoreDrill.objects.aggregate(last=Max("started_at"))["last"]
    if last is not None and now - last < timedelta(hours=hours):
        return None
    try:
        return str(drill_start(actor=None).id)
    except (ValidationError, OperationConflict) as exc:
        log.info("no drill started: %s", exc)
        return None


def rpo_check(now: datetime | None = None) -> dict[str, list[str]]:
    """Find instances whose newest good backup is older than their tier's RPO; alert once per
    breach (mail to the tenant's contact and the staff list, and an audit event), and clear
    the alert when a new backup brings them back within it."""
    from backups.selectors import rpo_state

    now = now or timezone.now()
    breached, recovered = [], []
    instances = (
        AtlassianInstance.objects.filter(status__in=list(BACKUP_FROM))
        .select_related("tenant", "backup_policy")
        .annotate(
            last_good=Max("backups__taken_at", filter=Q(backups__status=BackupStatus.SUCCEEDED)),
            wal_shipped=F("wal_archive__shipped_at"),
            wal_enabled=F("wal_archive__enabled_at"),
        )
    )
    for instance in instances:
        state = rpo_state(
            instance,
            instance.last_good,
            now=now,
            wal_shipped=instance.wal_shipped,
            wal_enabled=instance.wal_enabled,
        )
        policy = getattr(instance, "backup_policy", None)
        if state["breached"]:
            if policy is None:
                policy = policy_for(instance)
            if policy.rpo_alerted_at is None:
                BackupPolicy.objects.filter(pk=policy.pk).update(rpo_alerted_at=now)
                _rpo_alert(instance, state)
                breached.append(instance.name)
        elif policy is not None and policy.rpo_alerted_at is not None:
            BackupPolicy.objects.filter(pk=policy.pk).update(rpo_alerted_at=None)
            _rpo_resolved(instance)
            recovered.append(instance.name)
    return {"breached": breached, "recovered": recovered}


def _rpo_alert(instance: AtlassianInstance, state: dict[str, Any]) -> None:
    goals = objectives_for(instance.tier)
    age = state["age"]
    text = (
        f"The newest good backup of {instance.name} is "
        f"{'missing' if age is None else f'{age.total_seconds() / 3600:.1f} hours old'}; "
        f"the recovery point objective of {instance.get_tier_display()} is "
        f"{goals.rpo.total_seconds() / 3600:.0f} hours."
    )
    if state.get("wal_breached"):
        wal_age = state.get("wal_age")
        text += (
            " Its WAL archive "
            + (
                "never shipped anything"
                if wal_age is None
                else f"last shipped {wal_age.total_seconds() / 3600:.1f} hours ago"
            )
            + ", so a restore to a time cannot reach within the objective either."
        )
    audit_record(
        actor=None,
        action="backup.rpo_breach",
        target=instance,
        changes={"age_seconds": int(age.total_seconds()) if age else None},
    )
    notify(
        event=RPO_BREACHED,
        tenant=instance.tenant,
        obj=instance,
        dedupe_key=f"rpo:{instance.pk}",
        subject=f"Backup objective missed: {instance.name}",
        body=text,
        url=reverse("backups:instance_backups", args=[instance.pk]),
    )


def _rpo_resolved(instance: AtlassianInstance) -> None:
    notify_resolved(event=RPO_BREACHED, tenant=instance.tenant, dedupe_key=f"rpo:{instance.pk}")


def _missed_notify(
    instance: AtlassianInstance, due: datetime, deadline: datetime, started: datetime
) -> None:
    window_hours = (deadline - due).total_seconds() / 3600
    late_minutes = int((started - deadline).total_seconds() // 60)
    notify(
        event=BACKUP_FAILED,
        tenant=instance.tenant,
        obj=instance,
        dedupe_key=f"missed:{instance.pk}:{due.isoformat()}",
        subject=f"Scheduled backup of {instance.name} was missed",
        body=(
            f"The backup of {instance.name} due at {due:%Y-%m-%d %H:%M} UTC should have "
            f"started by {deadline:%Y-%m-%d %H:%M} UTC (within its {window_hours:g}-hour "
            f"window) and started at {started:%H:%M} UTC, {late_minutes} minutes after the "
            "window closed: the backup hosts had no free slot in time, or the scheduler was "
            "down. It runs now."
        ),
        url=reverse("backups:instance_backups", args=[instance.pk]),
    )


def catalogue_refresh_all() -> int:
    """Re-read every backup host's points into the catalogue (labels, missing, imported)."""
    from provisioning.remote import RemoteError

    count = 0
    with_points = Backup.objects.values("instance_id")
    for instance in (
        AtlassianInstance.objects.filter(pk__in=with_points, host__backup_host__isnull=False)
        .exclude(status=InstanceStatus.DELETED)
        .select_related("host__backup_host", "tenant")
    ):
        try:
            catalogue_refresh(instance)
            count += 1
        except (RemoteError, OSError, ValueError) as exc:  # one host must not stop the rest
            log.warning("catalogue refresh of %s failed: %s", instance.name, exc)
    return count


def backups_purge_deleted(now: datetime | None = None) -> list[str]:
    """Remove the backup points of instances deleted more than
    ``PANEL_DELETED_RETENTION_DAYS`` ago from their backup hosts (the instance purge removes
    only the app host's data); their catalogue rows become EXPIRED. Audited per instance."""
    from provisioning.hosts import host_connection
    from provisioning.remote import RemoteError

    now = now or timezone.now()
    cutoff = now - timedelta(days=int(settings.PANEL_DELETED_RETENTION_DAYS))
    alive = [BackupStatus.SUCCEEDED, BackupStatus.MISSING, BackupStatus.RUNNING]
    rows = Backup.objects.filter(
        instance__status=InstanceStatus.DELETED,
        instance__deleted_at__lte=cutoff,
        status__in=alive,
    ).select_related("instance", "backup_host", "app_host")
    purged: list[str] = []
    areas: dict[tuple, PointStore] = {}
    for row in rows:
        if row.app_host is None:
            continue
        store = PointStore(row.backup_host, row.app_host.name, row.instance.name)
        areas[(row.instance_id, row.backup_host_id, row.app_host.name)] = store
    for (instance_id, _, _), store in areas.items():
        try:
            with host_connection(store.backup_host) as bconn:
                bconn.run(
                    ["rm", "-rf", "--one-file-system", store.area, store.push_area],
                    message=f"Purged the points of deleted instance {store.instance_name}",
                )
        except RemoteError as exc:  # one host must not stop the rest; the next run retries
            log.warning("purging the points of %s failed: %s", store.instance_name, exc)
            continue
        done = Backup.objects.filter(
            instance_id=instance_id,
            backup_host=store.backup_host,
            app_host__name=store.app_host_name,
            status__in=alive,
        ).update(status=BackupStatus.EXPIRED, pruned_at=now, label="")
        instances_backup_state_refresh(instance_ids=[instance_id])
        instance = AtlassianInstance.objects.get(pk=instance_id)
        audit_record(
            actor=None,
            action="backup.purge_deleted",
            target=instance,
            changes={"points": done, "deleted_at": str(instance.deleted_at)},
        )
        purged.append(store.instance_name)
    return purged


# --- point-in-time recovery: the periodic check and the base backup schedule ----------------


def wal_check(now: datetime | None = None) -> dict[str, list[str]]:
    """Read every archiving instance's WAL state from its app host (one connection per host),
    drop superseded partial segments on the backup hosts, and alert staff once when an
    archive is broken (receiver down, shipper failing, or nothing shipped for
    ``PANEL_WAL_BROKEN_AFTER`` seconds); the alert is resolved when it works again."""
    instances = list(
        # Running only: a stopped instance's receiver is stopped with its database.
        AtlassianInstance.objects.filter(
            wal_archiving=True, status=InstanceStatus.RUNNING, host__isnull=False
        ).select_related("host__backup_host", "tenant")
    )
    by_app: dict[Any, list[AtlassianInstance]] = {}
    for instance in instances:
        by_app.setdefault(instance.host, []).append(instance)
    by_backup: dict[Any, list[AtlassianInstance]] = {}
    for app_host, group in by_app.items():
        wal.wal_states_refresh(app_host, group)
        if app_host.backup_host is not None:
            by_backup.setdefault(app_host.backup_host, []).extend(group)
    for backup_host, group in by_backup.items():
        try:
            wal.partials_prune(backup_host, group)
        except RemoteError as exc:  # the next check retries
            log.warning("pruning partial WAL on %s failed: %s", backup_host.name, exc)
    now = now or timezone.now()
    broken, recovered = [], []
    for archive in WalArchive.objects.filter(instance__in=instances).select_related(
        "instance__tenant"
    ):
        problem = wal_problem(archive, now)
        if problem and archive.alerted_at is None:
            WalArchive.objects.filter(pk=archive.pk).update(alerted_at=now)
            _wal_alert(archive.instance, problem)
            broken.append(archive.instance.name)
        elif not problem and archive.alerted_at is not None:
            WalArchive.objects.filter(pk=archive.pk).update(alerted_at=None)
            notify_resolved(event=WAL_BROKEN, tenant=None, dedupe_key=f"wal:{archive.instance.pk}")
            recovered.append(archive.instance.name)
    return {"broken": broken, "recovered": recovered}


def _wal_alert(instance: AtlassianInstance, problem: str) -> None:
    audit_record(
        actor=None, action="backup.wal_broken", target=instance, changes={"problem": problem}
    )
    notify(
        event=WAL_BROKEN,
        tenant=None,
        obj=instance,
        dedupe_key=f"wal:{instance.pk}",
        subject=f"WAL archiving of {instance.name} stopped",
        body=(
            f"{problem}\n\nUntil it works again, a restore to a time can reach only the last "
            "moment that was shipped."
        ),
        url=reverse("backups:instance_backups", args=[instance.pk]),
    )


def wal_bases_dispatch(now: datetime | None = None) -> list[str]:
    """Start a base backup for every archiving instance whose newest one is older than
    ``PANEL_WAL_BASE_INTERVAL_HOURS`` (a shorter replay on restore, and the point from which
    retention can drop older WAL), at most ``PANEL_BACKUP_MAX_PER_BACKUP_HOST`` at a time per
    backup host; the rest wait for the next tick."""
    now = now or timezone.now()
    hours = float(settings.PANEL_WAL_BASE_INTERVAL_HOURS)
    if hours <= 0:
        return []
    fresh = BaseBackup.objects.filter(
        status=BaseBackup.Status.SUCCEEDED, finished_at__gt=now - timedelta(hours=hours)
    ).values("instance_id")
    running = Operation.objects.filter(
        kind=BackupOperationKind.WAL_BASE, status__in=ACTIVE_STATUSES
    ).values_list("instance__host__backup_host_id", flat=True)
    busy: dict[Any, int] = {}
    for backup_host_id in running:
        busy[backup_host_id] = busy.get(backup_host_id, 0) + 1
    started = []
    due = (
        AtlassianInstance.objects.filter(
            wal_archiving=True, status__in=list(BACKUP_FROM), host__backup_host__isnull=False
        )
        .exclude(pk__in=fresh)
        .select_related("host")
        .order_by("created_at")
    )
    for instance in due:
        backup_host_id = instance.host.backup_host_id if instance.host else None
        if busy.get(backup_host_id, 0) >= settings.PANEL_BACKUP_MAX_PER_BACKUP_HOST:
            continue
        try:
            wal_base_start(actor=None, instance=instance)
        except (ValidationError, OperationConflict) as exc:
            log.info("no base backup of %s started: %s", instance.name, exc)
            continue
        busy[backup_host_id] = busy.get(backup_host_id, 0) + 1
        started.append(instance.name)
    return started
