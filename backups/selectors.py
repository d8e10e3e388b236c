"""Reads of the backups app, always through ``for_user`` scoping: the catalogue, RPO state,
drills, restore requests, the DR dashboard, the size chart and host evacuations."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models import Window as Over
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.utils import timezone

from backups.evacuate import evacuation_plan
from backups.models import (
    Backup,
    BackupOperationKind,
    BackupPolicy,
    BackupStatus,
    BaseBackup,
    InstanceBackupState,
    Restore,
    RestoreDrill,
    RestoreRequest,
    WalArchive,
)
from backups.policies import runs_per_window, window_minutes
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


def backup_count(access: Access) -> int:
    """How many rows :func:`backup_list` holds for the caller, summed from the materialised
    per-instance counts (:class:`InstanceBackupState`) instead of counting the points."""
    return InstanceBackupState.objects.for_user(access).aggregate(n=Sum("rows"))["n"] or 0


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


def _instance_backup_extras(access: Access, instance: AtlassianInstance) -> dict[str, Any]:
    """The instance's backup policy, its last drill (start, result, time back) and how many
    restore requests are open. In one query when the instance has a policy (nearly all have:
    it is made with the instance): the drill's columns and the count ride on the policy's row
    as subqueries, each read through its own scoped list; two more queries without one."""
    drills = (
        drill_list(access)
        .select_related(None)
        .filter(instance=OuterRef("instance"))
        # the id breaks a tie, so that every subquery below reads the same drill
        .order_by("-started_at", "-pk")
    )
    open_requests = (
        restore_request_list(access)
        .select_related(None)
        .filter(instance=OuterRef("instance"), status=RestoreRequest.Status.OPEN)
        .order_by()
        .values("instance")
        .annotate(n=Count("pk"))
        .values("n")
    )
    policy = (
        BackupPolicy.objects.for_user(access)
        .filter(instance=instance)
        .annotate(
            drill_id=Subquery(drills.values("pk")[:1]),
            drill_started_at=Subquery(drills.values("started_at")[:1]),
            drill_status=Subquery(drills.values("status")[:1]),
            drill_rto_seconds=Subquery(drills.values("rto_seconds")[:1]),
            open_requests=Coalesce(Subquery(open_requests), 0),
        )
        .first()
    )
    if policy is None:
        drill = (
            drill_list(access)
            .filter(instance=instance)
            .values("pk", "started_at", "status", "rto_seconds")
            .first()
        )
        count = (
            restore_request_list(access)
            .filter(instance=instance, status=RestoreRequest.Status.OPEN)
            .count()
        )
        return {"policy": None, "last_drill": drill, "open_requests": count}
    drill = None
    if policy.drill_id is not None:
        drill = {
            "pk": policy.drill_id,
            "started_at": policy.drill_started_at,
            "status": policy.drill_status,
            "rto_seconds": policy.drill_rto_seconds,
        }
    return {"policy": policy, "last_drill": drill, "open_requests": policy.open_requests}


def instance_backup_summary(access: Access, instance: AtlassianInstance) -> dict[str, Any]:
    """What the instance page shows about backups. The points are the instance's own rows
    (no joined instance, tenant and backup host to build and decrypt for each of them): the
    card and the points table read only their own columns. Two queries: the points with
    their total, the policy with the last drill and the open restore requests (one more for
    the WAL archive of an instance that archives it; two more without a policy)."""
    # The total rides on the points' own query as a window count: it is computed over every
    # retained point before the LIMIT, so it is the same number a COUNT(*) would give.
    points = list(
        instance_points(access, instance)
        .select_related(None)
        .annotate(retained_total=Over(Count("pk")))[:60]
    )
    for point in points:
        point.instance = instance
    last_good = points[0].taken_at if points else None
    archive = (
        WalArchive.objects.filter(instance=instance).first() if instance.wal_archiving else None
    )
    return {
        "points": points,
        "point_count": points[0].retained_total if points else 0,
        # policy, last_drill (a dict of the columns the card shows, or None), open_requests
        **_instance_backup_extras(access, instance),
        "rpo": rpo_state(
            instance,
            last_good,
            wal_shipped=archive.shipped_at if archive else None,
            wal_enabled=archive.enabled_at if archive else None,
        ),
        "chart": size_chart(points),
    }


def _rpo_deadline() -> Case:
    """When each instance leaves its tier's RPO: its newest retained point (materialised in
    its ``InstanceBackupState``), or its creation when it has none, plus the tier's RPO."""
    reference = Coalesce(F("backup_state__last_good_at"), F("created_at"))
    return Case(
        *(
            When(tier=tier.value, then=reference + Value(objectives_for(tier).rpo))
            for tier in ServiceTier
        ),
        output_field=DateTimeField(),
    )


def rpo_overview(access: Access) -> dict[str, Any]:
    """Instances within / outside their RPO, the longest overdue first, in one query that reads
    the materialised newest point of each instance (:class:`InstanceBackupState`), never the
    points themselves, and counts in the database."""
    now = timezone.now()
    breached = Q(rpo_deadline__lt=now)
    # "Within its RPO" needs a backup: a new instance with none yet is not in breach (one RPO
    # has not passed since it was made), and it is counted apart, not as within.
    waiting = Q(last_good__isnull=True) & ~breached
    rows = list(
        AtlassianInstance.objects.for_user(access)
        .filter(status__in=WATCHED_STATUSES)
        .annotate(last_good=F("backup_state__last_good_at"), rpo_deadline=_rpo_deadline())
        .annotate(
            # Counted over every watched instance, beside the ten soonest deadlines.
            total=Over(Count("pk")),
            breach_count=Over(Count("pk", filter=breached)),
            no_backup_yet=Over(Count("pk", filter=waiting)),
        )
        .order_by("rpo_deadline", "name")
        .values(
            "id",
            "name",
            "tier",
            "status",
            "created_at",
            "last_good",
            "rpo_deadline",
            "total",
            "breach_count",
            "no_backup_yet",
        )[:10]
    )
    counts = {
        key: rows[0][key] if rows else 0 for key in ("total", "breach_count", "no_backup_yet")
    }
    breaches = [
        {
            **{key: row[key] for key in ("id", "name", "tier", "status", "created_at")},
            "last_good": row["last_good"],
            "age": now - row["last_good"] if row["last_good"] else None,
            "rpo": objectives_for(row["tier"]).rpo,
        }
        for row in rows
        if row["rpo_deadline"] is not None and row["rpo_deadline"] < now
    ]
    return {
        "total": counts["total"],
        "within": counts["total"] - counts["breach_count"] - counts["no_backup_yet"],
        "no_backup_yet": counts["no_backup_yet"],
        "breaches": breaches,
        "breach_count": counts["breach_count"],
    }


def rpo_breaches(access: Access, *, limit: int = 10) -> list[dict[str, Any]]:
    """The ``limit`` instances longest outside their RPO, the longest overdue first, shaped
    like :func:`rpo_overview`'s ``breaches``: for a page that counts per tier already
    (:func:`dr_dashboard`) and needs the fleet-wide window counts no more. One query over the
    materialised newest points, none when the caller knows that no instance is outside."""
    now = timezone.now()
    rows = (
        AtlassianInstance.objects.for_user(access)
        .filter(status__in=WATCHED_STATUSES)
        .annotate(last_good=F("backup_state__last_good_at"), rpo_deadline=_rpo_deadline())
        .filter(rpo_deadline__lt=now)
        .order_by("rpo_deadline", "name")
        .values("id", "name", "tier", "status", "created_at", "last_good")[:limit]
    )
    return [
        {
            **{key: row[key] for key in ("id", "name", "tier", "status", "created_at")},
            "last_good": row["last_good"],
            "age": now - row["last_good"] if row["last_good"] else None,
            "rpo": objectives_for(row["tier"]).rpo,
        }
        for row in rows
    ]


def dr_dashboard(access: Access, *, days: int = 90) -> list[dict[str, Any]]:
    """Per tier: instances within RPO (counted in the database from the materialised newest
    point), drills run and passed, the worst drill RTO. Two queries."""
    now = timezone.now()
    since = now - timedelta(days=days)
    counts = {
        row["tier"]: row
        for row in AtlassianInstance.objects.for_user(access)
        .filter(status__in=WATCHED_STATUSES)
        .annotate(rpo_deadline=_rpo_deadline())
        .values("tier")
        .annotate(instances=Count("pk"), within=Count("pk", filter=Q(rpo_deadline__gte=now)))
    }
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
    result = []
    for tier in ServiceTier:
        goals = objectives_for(tier)
        count = counts.get(tier.value, {})
        instances, within = count.get("instances", 0), count.get("within", 0)
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
                "instances": instances,
                "within_rpo": within,
                "outside_rpo": instances - within,
                "drills_run": d.get("run", 0),
                "drills_passed": d.get("passed", 0),
                "drills_failed": d.get("failed", 0),
                "last_drill": d.get("last"),
                "worst_rto_seconds": worst,
                "worst_rto_ok": worst is None or worst <= goals.rto.total_seconds(),
            }
        )
    return result


# A run of an instance never backed up yet, on a backup host with no timed run either.
UNTIMED_RUN_SECONDS = 600.0
# The largest cap the capacity plan proposes (more at once is a disk and network question).
MAX_PROPOSED_CAP = 16


@dataclass(frozen=True)
class HostNight:
    """One backup host's night in the capacity plan: the scheduled backups of its instances
    that fall into the window (each timed by its last run), against its slots."""

    host_id: Any
    name: str
    instances: int
    runs: float  # runs in one window (a policy every 30 minutes runs 12 times in 6 h)
    work_seconds: float  # their backup time together
    untimed: int  # instances with no timed run yet (counted at the host's mean)
    longest_seconds: float
    busiest_app_host: str
    busiest_app_seconds: float
    cap: int
    cap_app: int
    window_seconds: float

    @property
    def makespan_seconds(self) -> float:
        """The predicted time from the window's opening to the last backup's end: the work
        over the slots plus what the longest run can add at the end (list scheduling's
        bound), and never less than the busiest app host's own work over its cap."""
        return _night_seconds(self, self.cap)

    @property
    def fits(self) -> bool:
        return self.makespan_seconds <= self.window_seconds

    @property
    def use_percent(self) -> float:
        """How much of the window's slots the night's work fills."""
        return 100 * self.work_seconds / (self.cap * self.window_seconds)

    @property
    def app_host_bound(self) -> bool:
        """The busiest app host alone cannot fit: no cap per backup host helps."""
        return self.busiest_app_seconds / self.cap_app > self.window_seconds

    @property
    def cap_that_fits(self) -> int | None:
        """The least cap per backup host that would fit this night (None: none up to
        :data:`MAX_PROPOSED_CAP`, or an app host is the bound)."""
        if self.app_host_bound:
            return None
        for cap in range(1, MAX_PROPOSED_CAP + 1):
            if _night_seconds(self, cap) <= self.window_seconds:
                return cap
        return None

    @property
    def excess_seconds(self) -> float:
        """Backup time to move to another backup host for the night to fit at this cap."""
        spare = self.window_seconds - (1 - 1 / self.cap) * self.longest_seconds
        return max(0.0, self.work_seconds - self.cap * spare)


def _night_seconds(night: HostNight, cap: int) -> float:
    if not night.runs:
        return 0.0
    graham = night.work_seconds / cap + (1 - 1 / cap) * night.longest_seconds
    return max(graham, night.busiest_app_seconds / night.cap_app, night.longest_seconds)


# How long the DR dashboard keeps a capacity plan (a forecast of the night).
CAPACITY_PLAN_SECONDS = 300


def dr_capacity_plan(access: Access) -> dict[str, Any]:
    """:func:`backup_capacity_plan` as the DR dashboard shows it: kept for
    :data:`CAPACITY_PLAN_SECONDS` (a backup's new duration or an instance moved shows within
    them), under a key of what else it depends on (the caps, the window, the backup hosts,
    the number of policies and their last edit), so a new backup host or an edited policy
    shows at once. Two small queries when kept (staff only: every staff member sees the
    whole fleet, so one plan serves them all)."""
    backup_hosts = list(
        Host.objects.filter(role=Host.Role.BACKUP).order_by("name").values_list("pk", "name")
    )
    if not access.is_staff_role:
        return backup_capacity_plan(access, backup_hosts=backup_hosts)
    edits = BackupPolicy.objects.aggregate(n=Count("pk"), edited=Max("updated_at"))
    key = (
        "backups:capacity-plan:"
        + hashlib.sha256(
            repr(
                (
                    settings.PANEL_BACKUP_MAX_PER_BACKUP_HOST,
                    settings.PANEL_BACKUP_MAX_PER_APP_HOST,
                    window_minutes(),
                    [(str(pk), name) for pk, name in backup_hosts],
                    edits["n"],
                    edits["edited"].isoformat() if edits["edited"] else "",
                )
            ).encode()
        ).hexdigest()
    )
    plan = cache.get(key)
    if plan is None:
        plan = backup_capacity_plan(access, backup_hosts=backup_hosts)
        cache.set(key, plan, CAPACITY_PLAN_SECONDS)
    return plan


def backup_capacity_plan(
    access: Access, *, backup_hosts: list[tuple[Any, str]] | None = None
) -> dict[str, Any]:
    """The DR dashboard's capacity plan: per backup host, the predicted makespan of one
    night's scheduled backups at the current caps against the window
    (``PANEL_BACKUP_WINDOW_MINUTES``), with what would make a host that cannot fit fit (the
    cap, or the backup time to move away). Reads the policies' materialised last run times,
    not the points: two queries whatever the fleet (one with ``backup_hosts`` given)."""
    cap = settings.PANEL_BACKUP_MAX_PER_BACKUP_HOST
    cap_app = settings.PANEL_BACKUP_MAX_PER_APP_HOST
    window = window_minutes() * 60.0
    rows = (
        BackupPolicy.objects.for_user(access)
        .filter(
            enabled=True,
            instance__status__in=WATCHED_STATUSES,
            instance__host__backup_host__isnull=False,
        )
        .values(
            "instance__host__backup_host_id",
            "instance__host_id",
            "instance__host__name",
            "interval_minutes",
        )
        .annotate(
            n=Count("pk"),
            timed=Count("last_run_seconds"),
            seconds=Sum("last_run_seconds"),
            longest=Max("last_run_seconds"),
        )
    )
    # per backup host: app host -> [timed work, untimed runs]; timed runs and their time
    apps: dict[Any, dict[Any, list[Any]]] = {}
    timed: dict[Any, list[float]] = {}
    summary: dict[Any, dict[str, Any]] = {}
    for row in rows:
        b, a = row["instance__host__backup_host_id"], row["instance__host_id"]
        per_window = runs_per_window(row["interval_minutes"])
        app = apps.setdefault(b, {}).setdefault(a, [row["instance__host__name"], 0.0, 0.0])
        app[1] += per_window * (row["seconds"] or 0.0)
        app[2] += per_window * (row["n"] - row["timed"])
        t = timed.setdefault(b, [0.0, 0.0])
        t[0] += row["seconds"] or 0.0
        t[1] += row["timed"]
        s = summary.setdefault(b, {"instances": 0, "runs": 0.0, "untimed": 0, "longest": 0.0})
        s["instances"] += row["n"]
        s["runs"] += per_window * row["n"]
        s["untimed"] += row["n"] - row["timed"]
        s["longest"] = max(s["longest"], row["longest"] or 0.0)
    fleet_timed = sum(t[1] for t in timed.values())
    fleet_mean = (
        sum(t[0] for t in timed.values()) / fleet_timed if fleet_timed else UNTIMED_RUN_SECONDS
    )
    if backup_hosts is None:
        backup_hosts = list(
            Host.objects.filter(role=Host.Role.BACKUP).order_by("name").values_list("pk", "name")
        )
    hosts = []
    for host_id, name in backup_hosts:
        seconds, count = timed.get(host_id, [0.0, 0.0])
        mean = seconds / count if count else fleet_mean
        works = {
            a: (app_name, work + untimed_runs * mean)
            for a, (app_name, work, untimed_runs) in apps.get(host_id, {}).items()
        }
        busiest = max(works.values(), key=lambda w: w[1], default=("", 0.0))
        s = summary.get(host_id, {"instances": 0, "runs": 0.0, "untimed": 0, "longest": 0.0})
        hosts.append(
            HostNight(
                host_id=host_id,
                name=name,
                instances=s["instances"],
                runs=s["runs"],
                work_seconds=sum(w for _, w in works.values()),
                untimed=s["untimed"],
                longest_seconds=max(s["longest"], mean if s["untimed"] else 0.0),
                busiest_app_host=busiest[0],
                busiest_app_seconds=busiest[1],
                cap=cap,
                cap_app=cap_app,
                window_seconds=window,
            )
        )
    return {
        "hosts": hosts,
        "cap": cap,
        "cap_app": cap_app,
        "window_seconds": window,
        "over": [h for h in hosts if not h.fits],
        "computed_at": timezone.now(),
    }


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
    # The window and the lag from this one read of the archive.
    window = _recovery_window(instance, archive)
    lag = _rpo_lag(archive)
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
    return _recovery_window(instance, WalArchive.objects.filter(instance=instance).first())


def _recovery_window(instance: AtlassianInstance, archive: WalArchive | None) -> Window | None:
    start = recovery_window_start(instance)
    if archive is None or archive.shipped_at is None or start is None:
        return None
    if archive.shipped_at <= start:
        return None
    bases = BaseBackup.objects.filter(instance=instance, status=BaseBackup.Status.SUCCEEDED)
    return Window(start=start, end=archive.shipped_at, bases=bases.count())


def rpo_lag(instance: AtlassianInstance, now: datetime | None = None) -> timedelta | None:
    """How old the newest archived WAL is (None when archiving is off or never shipped)."""
    return _rpo_lag(WalArchive.objects.filter(instance=instance).first(), now)


def _rpo_lag(archive: WalArchive | None, now: datetime | None = None) -> timedelta | None:
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
