"""Reads of the backups app, always through ``for_user`` scoping: the catalogue, RPO state,
drills, restore requests, the DR dashboard, the size chart and host evacuations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from django.utils import timezone

from backups.evacuate import evacuation_plan
from backups.models import (
    Backup,
    BackupOperationKind,
    BackupPolicy,
    BackupStatus,
    BaseBackup,
    Restore,
    RestoreDrill,
    RestoreRequest,
    WalArchive,
)
from panel.access import Access
from provisioning.models import (
    AtlassianInstance,
    EvacuatedCopy,
    Host,
    InstanceStatus,
    Operation,
    OperationStatus,
)
from provisioning.services import host_fit_problem, host_free_memory_mb
from tenants.tiers import ServiceTier, objectives_for

WATCHED_STATUSES = (InstanceStatus.RUNNING, InstanceStatus.STOPPED)


def backup_list(access: Access) -> QuerySet:
    return Backup.objects.for_user(access).select_related(
        "instance", "instance__tenant", "backup_host"
    )


def backup_get(access: Access, backup_id: Any) -> Backup:
    return get_object_or_404(backup_list(access), pk=backup_id)


def instance_points(access: Access, instance: AtlassianInstance) -> QuerySet:
    """Retained points of an instance, newest first."""
    return backup_list(access).filter(instance=instance, status=BackupStatus.SUCCEEDED)


@dataclass(frozen=True)
class RestoreTarget:
    """An app host a copy of a point can go to, with what it has free (the page shows it)."""

    host: Host
    free_memory_mb: int
    free_disk_bytes: int

    @property
    def label(self) -> str:
        return (
            f"{self.host.name} ({max(self.free_memory_mb, 0)} MB memory, "
            f"{self.free_disk_bytes // 1024**3} GB disk free)"
        )


def restore_copy_of(source: AtlassianInstance, *, name: str = "") -> AtlassianInstance:
    """An unsaved instance with the resources a copy of ``source`` takes (for capacity checks:
    a new row, so the source keeps counting on its own host)."""
    return AtlassianInstance(
        tenant=source.tenant,
        name=name,
        product=source.product,
        version=source.version,
        heap_min_mb=source.heap_min_mb,
        heap_max_mb=source.heap_max_mb,
        tier=source.tier,
    )


def restore_target_hosts(access: Access, backup: Backup) -> list[RestoreTarget]:
    """The app hosts a copy of ``backup`` can go to: READY app hosts that read points on the
    point's backup host and have the memory and disk the copy needs, most free memory first.

    For every staff role: support chooses where a copy goes as well as platform admins (host
    rows are otherwise platform-admin only, see ``Host.objects``).
    """
    if not access.is_staff_role:
        raise PermissionDenied("Only support staff restore backups.")
    copy = restore_copy_of(backup.instance)
    candidates = Host.objects.filter(
        role=Host.Role.APP, status=Host.Status.READY, backup_host_id=backup.backup_host_id
    ).order_by("name")
    targets = [
        RestoreTarget(
            host=host,
            free_memory_mb=host_free_memory_mb(host, exclude=copy),
            free_disk_bytes=host.disk_free_bytes or 0,
        )
        for host in candidates
        if host_fit_problem(copy, host) is None
    ]
    return sorted(targets, key=lambda t: -t.free_memory_mb)


def policy_list(access: Access) -> QuerySet:
    return (
        BackupPolicy.objects.for_user(access)
        .select_related("instance", "instance__tenant", "backup_host")
        .order_by("instance__name")
    )


def restore_list(access: Access) -> QuerySet:
    return Restore.objects.for_user(access).select_related(
        "instance", "source", "backup", "operation"
    )


def drill_list(access: Access) -> QuerySet:
    return RestoreDrill.objects.for_user(access).select_related("instance", "instance__tenant")


def restore_request_list(access: Access) -> QuerySet:
    return RestoreRequest.objects.for_user(access).select_related(
        "instance", "instance__tenant", "backup", "requested_by", "handled_by"
    )


def rpo_state(
    instance: AtlassianInstance,
    last_good: datetime | None,
    *,
    now: datetime | None = None,
    wal_shipped: datetime | None = None,
    wal_enabled: datetime | None = None,
) -> dict[str, Any]:
    """The age of the newest good backup against the tier's RPO. A new instance is not in
    breach before one RPO has passed since it was created. With WAL archiving on, the age of
    the newest shipped WAL (``wal_shipped``) counts too: WAL lag over the RPO is a breach."""
    now = now or timezone.now()
    goals = objectives_for(instance.tier)
    age = now - last_good if last_good else None
    if age is None:
        breached = now - instance.created_at > goals.rpo
    else:
        breached = age > goals.rpo
    wal_age = None
    wal_breached = False
    if instance.wal_archiving:
        wal_age = now - wal_shipped if wal_shipped is not None else None
        # Never shipped yet: count from when archiving was turned on.
        reference = wal_shipped if wal_shipped is not None else (wal_enabled or instance.created_at)
        # a stopped instance writes nothing (its receiver stops with its database)
        wal_breached = now - reference > goals.rpo and instance.status == InstanceStatus.RUNNING
    watched = instance.status in WATCHED_STATUSES
    return {
        "rpo": goals.rpo,
        "rto": goals.rto,
        "last_good_at": last_good,
        "age": age,
        "wal_age": wal_age,
        "wal_breached": wal_breached and watched,
        "breached": (breached or wal_breached) and watched,
    }


def instance_backup_summary(access: Access, instance: AtlassianInstance) -> dict[str, Any]:
    """What the instance page shows about backups."""
    points = list(instance_points(access, instance)[:60])
    last_good = points[0].taken_at if points else None
    archive = (
        WalArchive.objects.filter(instance=instance).first() if instance.wal_archiving else None
    )
    policy = BackupPolicy.objects.for_user(access).filter(instance=instance).first()
    recent = list(backup_list(access).filter(instance=instance).order_by("-taken_at")[:8])
    return {
        "points": points,
        "point_count": instance_points(access, instance).count(),
        "recent": recent,
        "policy": policy,
        "rpo": rpo_state(
            instance,
            last_good,
            wal_shipped=archive.shipped_at if archive else None,
            wal_enabled=archive.enabled_at if archive else None,
        ),
        "last_drill": drill_list(access).filter(instance=instance).first(),
        "last_restore": restore_list(access).filter(instance=instance).first(),
        "open_requests": restore_request_list(access)
        .filter(instance=instance, status=RestoreRequest.Status.OPEN)
        .count(),
        "chart": size_chart(points),
    }


def rpo_overview(access: Access) -> dict[str, Any]:
    """Instances within / outside their RPO (two queries whatever the number of instances)."""
    rows = list(
        AtlassianInstance.objects.for_user(access)
        .filter(status__in=WATCHED_STATUSES)
        .annotate(
            last_good=Max("backups__taken_at", filter=Q(backups__status=BackupStatus.SUCCEEDED))
        )
        .values("id", "name", "tier", "status", "created_at", "last_good")
    )
    now = timezone.now()
    breaches = []
    for row in rows:
        goals = objectives_for(row["tier"])
        reference = row["last_good"] or row["created_at"]
        if now - reference > goals.rpo:
            breaches.append(
                {
                    **row,
                    "age": now - row["last_good"] if row["last_good"] else None,
                    "rpo": goals.rpo,
                }
            )
    breached = {row["id"] for row in breaches}
    # "Within its RPO" needs a backup: a new instance with none yet is not in breach (one RPO
    # has not passed since it was made), and it is counted apart, not as within.
    waiting = [r for r in rows if r["last_good"] is None and r["id"] not in breached]
    return {
        "total": len(rows),
        "within": len(rows) - len(breaches) - len(waiting),
        "no_backup_yet": len(waiting),
        "breaches": breaches[:10],
        "breach_count": len(breaches),
    }


def dr_dashboard(access: Access, *, days: int = 90) -> list[dict[str, Any]]:
    """Per tier: instances within RPO, drills run and passed, worst and median drill RTO."""
    since = timezone.now() - timedelta(days=days)
    overview_rows = list(
        AtlassianInstance.objects.for_user(access)
        .filter(status__in=WATCHED_STATUSES)
        .annotate(
            last_good=Max("backups__taken_at", filter=Q(backups__status=BackupStatus.SUCCEEDED))
        )
        .values("tier", "created_at", "last_good")
    )
    drills = (
        RestoreDrill.objects.for_user(access)
        .filter(started_at__gte=since)
        .values("tier")
        .annotate(
            run=Count("id"),
            passed=Count("id", filter=Q(status=RestoreDrill.Status.PASSED)),
            failed=Count("id", filter=Q(status=RestoreDrill.Status.FAILED)),
            worst=Max("rto_seconds", filter=Q(status=RestoreDrill.Status.PASSED)),
            last=Max("started_at"),
        )
    )
    by_tier = {row["tier"]: row for row in drills}
    now = timezone.now()
    result = []
    for tier in ServiceTier:
        goals = objectives_for(tier)
        rows = [r for r in overview_rows if r["tier"] == tier.value]
        within = sum(1 for r in rows if now - (r["last_good"] or r["created_at"]) <= goals.rpo)
        d = by_tier.get(tier.value, {})
        worst = d.get("worst")
        result.append(
            {
                "tier": tier.value,
                "label": tier.label,
                "rpo": goals.rpo,
                "rto": goals.rto,
                "rpo_seconds": goals.rpo.total_seconds(),
                "rto_seconds": goals.rto.total_seconds(),
                "instances": len(rows),
                "within_rpo": within,
                "outside_rpo": len(rows) - within,
                "drills_run": d.get("run", 0),
                "drills_passed": d.get("passed", 0),
                "drills_failed": d.get("failed", 0),
                "last_drill": d.get("last"),
                "worst_rto_seconds": worst,
                "worst_rto_ok": worst is None or worst <= goals.rto.total_seconds(),
            }
        )
    return result


def size_chart(points: list[Backup], width: int = 560, height: int = 150) -> dict[str, Any]:
    """Coordinates of a small SVG line chart of each point's logical size and new space on
    disk over time (oldest left), with room for the axis labels at the bottom."""
    data = [p for p in sorted(points, key=lambda p: p.taken_at) if p.logical_bytes is not None]
    if len(data) < 2:
        return {"ok": False}
    left, right, top_y, bottom = 8, width - 8, 8, height - 16
    t0, t1 = data[0].taken_at.timestamp(), data[-1].taken_at.timestamp()
    top = max(max(p.logical_bytes or 0 for p in data), 1)

    def xy(p: Backup, value: int) -> str:
        x = left + (right - left) * ((p.taken_at.timestamp() - t0) / max(t1 - t0, 1))
        y = bottom - (bottom - top_y) * (value / top)
        return f"{x:.1f},{y:.1f}"

    return {
        "ok": True,
        "width": width,
        "height": height,
        "right": right,
        "bottom": bottom,
        "logical": " ".join(xy(p, p.logical_bytes or 0) for p in data),
        "disk": " ".join(xy(p, p.disk_bytes or 0) for p in data),
        "top_bytes": top,
        "first": data[0].taken_at,
        "last": data[-1].taken_at,
        "count": len(data),
    }


def recovery_state(instance: AtlassianInstance) -> dict[str, Any]:
    """What the API and the instance's backups page show about point-in-time recovery."""
    archive = WalArchive.objects.filter(instance=instance).first()
    window = recovery_window(instance)
    lag = rpo_lag(instance)
    return {
        "instance": instance.pk,
        "wal_archiving": instance.wal_archiving,
        "shipped_at": archive.shipped_at if archive else None,
        "lag_seconds": round(lag.total_seconds(), 1) if lag is not None else None,
        "receiver_running": archive.receiver_running if archive else False,
        "error": archive.error if archive else "",
        "gaps": list(archive.gaps) if archive else [],
        "window_start": window.start if window else None,
        "window_end": window.end if window else None,
        "base_backups": list(
            BaseBackup.objects.filter(instance=instance).order_by("-started_at")[:20]
        ),
    }


def wal_problem(archive: WalArchive, now: datetime | None = None) -> str:
    """Why an instance's WAL archive is not working, in words ("" when it is): the receiver
    is not running, the shipper's last pass failed, or nothing was shipped for
    ``PANEL_WAL_BROKEN_AFTER`` seconds."""
    now = now or timezone.now()
    limit = timedelta(seconds=settings.PANEL_WAL_BROKEN_AFTER)
    if archive.error:
        return f"The WAL shipper failed: {archive.error}"
    if archive.checked_at is not None and not archive.receiver_running:
        return "The WAL receiver (pg_receivewal) is not running."
    reference = archive.shipped_at or archive.enabled_at
    if now - reference > limit:
        minutes = int((now - reference).total_seconds() // 60)
        if archive.shipped_at is None:
            return f"No WAL was shipped since archiving was turned on {minutes} minutes ago."
        return f"No WAL was shipped for {minutes} minutes."
    return ""


def recovery_gap(instance: AtlassianInstance, moment: datetime) -> tuple[datetime, datetime] | None:
    """The gap of the window ``moment`` falls in (see ``WalArchive.gaps``), or None."""
    archive = WalArchive.objects.filter(instance=instance).only("gaps").first()
    for start, end in (archive.gaps if archive else []) or []:
        begins, ends = datetime.fromisoformat(start), datetime.fromisoformat(end)
        if begins < moment <= ends:
            return begins, ends
    return None


@dataclass(frozen=True)
class Window:
    """From when to when an instance can be restored to any second."""

    start: datetime
    end: datetime
    bases: int


def recovery_window_start(instance: AtlassianInstance) -> datetime | None:
    """The earliest second a restore to a time can reach: the oldest retained base backup's
    end, or the oldest home point if that is later (None: no base backup or point yet)."""
    first = (
        BaseBackup.objects.filter(instance=instance, status=BaseBackup.Status.SUCCEEDED)
        .order_by("finished_at")
        .first()
    )
    home = (
        Backup.objects.filter(instance=instance, status=BackupStatus.SUCCEEDED)
        .order_by("taken_at")
        .first()
    )
    if first is None or first.finished_at is None or home is None:
        return None
    return max(first.finished_at, home.taken_at)


def recovery_window(instance: AtlassianInstance) -> Window | None:
    """The recoverable window: from the oldest retained base backup's end (with a home point
    at or before it) to the last WAL shipped. None when there is none yet."""
    archive = WalArchive.objects.filter(instance=instance).first()
    start = recovery_window_start(instance)
    if archive is None or archive.shipped_at is None or start is None:
        return None
    if archive.shipped_at <= start:
        return None
    bases = BaseBackup.objects.filter(instance=instance, status=BaseBackup.Status.SUCCEEDED)
    return Window(start=start, end=archive.shipped_at, bases=bases.count())


def rpo_lag(instance: AtlassianInstance, now: datetime | None = None) -> timedelta | None:
    """How old the newest archived WAL is (None when archiving is off or never shipped)."""
    archive = WalArchive.objects.filter(instance=instance).first()
    if archive is None or archive.shipped_at is None:
        return None
    return (now or timezone.now()) - archive.shipped_at


def wal_archive_overview(access: Access, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The DR dashboard's continuous archiving table: every instance the caller sees whose WAL
    is archived, with its lag against the tier's RPO, the receiver's state, the window's start
    and the newest base backup. One query whatever the number of instances."""
    now = now or timezone.now()
    bases = BaseBackup.objects.filter(instance=OuterRef("instance"))
    succeeded = bases.filter(status=BaseBackup.Status.SUCCEEDED)
    newest = bases.order_by("-started_at")
    archives = (
        WalArchive.objects.for_user(access)
        .filter(instance__wal_archiving=True)
        .exclude(instance__status=InstanceStatus.DELETED)
        .select_related("instance", "instance__tenant")
        .annotate(
            first_base_end=Subquery(
                succeeded.exclude(finished_at=None)
                .order_by("finished_at")
                .values("finished_at")[:1]
            ),
            first_point_at=Subquery(
                Backup.objects.filter(instance=OuterRef("instance"), status=BackupStatus.SUCCEEDED)
                .order_by("taken_at")
                .values("taken_at")[:1]
            ),
            last_base_status=Subquery(newest.values("status")[:1]),
            last_base_started_at=Subquery(newest.values("started_at")[:1]),
            last_base_finished_at=Subquery(newest.values("finished_at")[:1]),
        )
        .order_by("instance__tenant__name", "instance__name")
    )
    rows = []
    for archive in archives:
        instance = archive.instance
        rpo = objectives_for(instance.tier).rpo
        # As recovery_window(): the oldest base's end, or the oldest home point if later, up
        # to the last WAL shipped.
        start = None
        if archive.first_base_end is not None and archive.first_point_at is not None:
            start = max(archive.first_base_end, archive.first_point_at)
        if start is not None and (archive.shipped_at is None or archive.shipped_at <= start):
            start = None
        lag = now - archive.shipped_at if archive.shipped_at else None
        # Never shipped: late once one RPO has passed since archiving was turned on.
        over_rpo = now - (archive.shipped_at or archive.enabled_at) > rpo
        rows.append(
            {
                "instance": instance,
                "tenant": instance.tenant,
                "tier": instance.tier,
                "tier_label": instance.get_tier_display(),
                "rpo": rpo,
                "shipped_at": archive.shipped_at,
                "lag": lag,
                "over_rpo": over_rpo and instance.status in WATCHED_STATUSES,
                "receiver_running": archive.receiver_running,
                "checked_at": archive.checked_at,
                "window_start": start,
                "last_base_status": archive.last_base_status,
                "last_base_at": archive.last_base_finished_at or archive.last_base_started_at,
                "error": archive.error,
            }
        )
    return rows


# --- host evacuation -----------------------------------------------------------------------

# The host states an evacuation starts from (``backups.evacuate.host_evacuate_start``).
HOST_DOWN = (Host.Status.UNREACHABLE, Host.Status.ERROR)


def evacuation_hosts(access: Access) -> QuerySet:
    """The app hosts whose evacuation the caller sees: every app host for staff (support and
    platform admins), none for customers (so a host's id is a 404 to them, as any object they
    do not see). Hosts' own pages stay platform admins' (``Host.objects.for_user``)."""
    if not access.is_staff_role:
        return Host.objects.none()
    return Host.objects.filter(role=Host.Role.APP).select_related("backup_host")


def hosts_down(access: Access) -> QuerySet:
    """The app hosts the caller could evacuate now (down: unreachable or in error)."""
    return evacuation_hosts(access).filter(status__in=HOST_DOWN).order_by("name")


def _plan_row(row: Any) -> dict[str, Any]:
    """A :class:`backups.evacuate.PlanRow` as the pages and the API show it."""
    return {
        **row.as_dict(),
        "tier_label": row.instance.get_tier_display(),
        "instance": row.instance.pk,
        "point": row.point.pk if row.point else None,
        "point_name": row.point.point_name if row.point else "",
        "point_taken_at": row.point.taken_at if row.point else None,
    }


def _evacuation(operation: Operation, children: list[Operation]) -> dict[str, Any]:
    """The figures of one ``host.evacuate`` operation: per instance its part's status, target,
    RTO and data age (read from the parts, so they show while it runs), and the parent's totals
    once it ended (its result; kept on a failed evacuation too)."""
    result = operation.result or {}
    plan = operation.params.get("plan", []) if operation.params else []
    targets = {row.get("instance"): row.get("target", "") for row in plan}
    instances = []
    for child in children:
        outcome = child.result or {}
        instances.append(
            {
                "instance": child.instance.name if child.instance else "",
                "instance_id": child.instance_id,
                "status": child.status,
                "operation": child.pk,
                "to_host": outcome.get("to_host") or targets.get(str(child.instance_id), ""),
                "rto_seconds": outcome.get("rto_seconds"),
                "rto_objective_seconds": outcome.get("rto_objective_seconds"),
                "data_age_seconds": outcome.get("data_age_seconds"),
                "restore_seconds": outcome.get("restore_seconds"),
                "error": child.error,
            }
        )
    restores = [i["restore_seconds"] for i in instances if i["restore_seconds"] is not None]
    return {
        "operation": operation.pk,
        "host": operation.host_id,
        "host_name": operation.host.name if operation.host else result.get("host", ""),
        "status": operation.status,
        "automatic": bool((operation.params or {}).get("automatic")),
        "created_at": operation.created_at,
        "started_at": operation.started_at,
        "finished_at": operation.finished_at,
        "error": operation.error,
        "instances": instances,
        "not_moved": [row for row in plan if not row.get("target")],
        "succeeded": sum(1 for i in instances if i["status"] == OperationStatus.SUCCEEDED),
        "failed": sum(
            1
            for i in instances
            if i["status"] in (OperationStatus.FAILED, OperationStatus.CANCELLED)
        ),
        "seconds": result.get("seconds"),
        "sum_of_restores_seconds": round(sum(restores), 1) if restores else None,
    }


def _evacuation_of(operations: QuerySet) -> dict[str, Any] | None:
    """The newest of ``operations`` with its parts (two queries), or None."""
    operation = operations.select_related("host").order_by("-created_at").first()
    if operation is None:
        return None
    children = list(
        Operation.objects.filter(parent=operation).select_related("instance").order_by("created_at")
    )
    return _evacuation(operation, children)


def evacuation_state(host: Host, *, plan: bool = True) -> dict[str, Any]:
    """What the evacuation API and pages show of ``host``: its state, where each instance on it
    would go now (``plan``; the plan's own reads grow with the instances on the host, so the
    host page's panel leaves it out), its last evacuation and the copies of evacuated instances
    it keeps (pending: to be fenced when it comes back; fenced: kept aside until purged)."""
    copies = list(EvacuatedCopy.objects.filter(host=host).order_by("-evacuated_at")[:100])
    return {
        "host": host.pk,
        "name": host.name,
        "role": host.role,
        "status": host.status,
        "status_reason": host.status_reason,
        "last_seen_at": host.last_seen_at,
        "down": host.status in HOST_DOWN,
        "plan": [_plan_row(row) for row in evacuation_plan(host)] if plan else [],
        "last_evacuation": _evacuation_of(
            Operation.objects.filter(kind=BackupOperationKind.HOST_EVACUATE, host=host)
        ),
        "copies": copies,
        "copies_pending": sum(1 for c in copies if c.status == EvacuatedCopy.Status.PENDING),
        "copies_fenced": sum(1 for c in copies if c.status == EvacuatedCopy.Status.FENCED),
    }


def last_evacuation() -> dict[str, Any] | None:
    """The DR dashboard's last evacuation (of any host) with its figures, or None (two
    queries). Staff only: the dashboard's view checks the role."""
    return _evacuation_of(Operation.objects.filter(kind=BackupOperationKind.HOST_EVACUATE))
