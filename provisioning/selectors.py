"""Reads of hosts, instances, licenses and operations, always through ``for_user`` scoping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import BooleanField, Prefetch, QuerySet, Value
from django.shortcuts import get_object_or_404
from django.utils import timezone

from panel.access import Access
from panel.customer_view import HostMask
from panel.registry import registry
from provisioning.compose import instance_jdbc_url
from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceStatus,
    License,
    Operation,
    OperationStatus,
    OperationStep,
)
from provisioning.monitoring import setup_pending
from provisioning.products import spec_for
from tenants.tiers import ServiceTier

EXPIRY_WARNING_DAYS = (60, 30, 7)


def instance_list(access: Access, *, include_deleted: bool = False) -> QuerySet:
    """Instances the caller sees, with what list pages show, in a constant number of queries."""
    qs = AtlassianInstance.objects.for_user(access).select_related("tenant", "host")
    if not include_deleted:
        qs = qs.exclude(status=InstanceStatus.DELETED)
    return qs


def instance_get(access: Access, instance_id: Any) -> AtlassianInstance:
    """One instance the caller may see, or 404."""
    return get_object_or_404(instance_list(access, include_deleted=True), pk=instance_id)


def instance_database_setup(instance: AtlassianInstance) -> dict[str, Any] | None:
    """What to type into the setup wizard of a product that takes no database variables
    (Crowd): the JDBC URL and user of the instance's own database, and whether the app has
    never been seen RUNNING (its setup is still to be finished). None for other products."""
    if spec_for(instance.product).db_env:
        return None
    return {
        "jdbc_url": instance_jdbc_url(instance),
        "user": instance.db_user,
        "driver": "PostgreSQL",
        "pending": setup_pending(instance),
    }


def host_list(access: Access) -> QuerySet:
    return Host.objects.for_user(access).select_related("backup_host")


def hosts_disk_warning_count(hosts: QuerySet) -> int:
    """How many of ``hosts`` have a data disk at or above ``PANEL_HOST_DISK_WARNING_PERCENT``
    used: ``Host.disk_warning`` (used percent rounded to one decimal) counted in the database,
    so a page of the host list can say it for all of them."""
    from django.conf import settings
    from django.db.models import DecimalField, ExpressionWrapper, F
    from django.db.models.functions import Cast, Round

    exact: DecimalField = DecimalField(max_digits=40, decimal_places=20)
    fraction_free = Cast(F("disk_free_bytes"), exact) / Cast(F("disk_total_bytes"), exact)
    used = Round(ExpressionWrapper(100 * (1 - fraction_free), output_field=exact), 1)
    return (
        hosts.filter(disk_total_bytes__gt=0, disk_free_bytes__isnull=False)
        .alias(used=used)
        .filter(used__gte=settings.PANEL_HOST_DISK_WARNING_PERCENT)
        .count()
    )


def host_get(access: Access, host_id: Any) -> Host:
    return get_object_or_404(host_list(access), pk=host_id)


def license_list(access: Access) -> QuerySet:
    return License.objects.for_user(access).select_related("instance", "instance__tenant")


def licenses_expiring(access: Access, within_days: int = 60) -> QuerySet:
    """Licenses whose license or maintenance expiry falls within ``within_days`` days."""
    from django.db.models import Q

    limit = timezone.now().date() + timedelta(days=within_days)
    return (
        license_list(access)
        .filter(Q(expiry_date__lte=limit) | Q(maintenance_expiry_date__lte=limit))
        .exclude(instance__status=InstanceStatus.DELETED)
    )


def operation_list(access: Access) -> QuerySet:
    """Operations the caller sees; each row says whether its viewer may see host internals
    (``shows_host_internals``: staff only), which :func:`operation_steps` and the operation
    serializer and pages follow."""
    return (
        Operation.objects.for_user(access)
        .select_related("tenant", "instance", "host", "requested_by", "requested_by_token")
        .annotate(shows_host_internals=Value(access.is_staff_role, output_field=BooleanField()))
    )


def operation_get(access: Access, operation_id: Any) -> Operation:
    return get_object_or_404(operation_list(access), pk=operation_id)


def shows_host_internals(operation: Operation) -> bool:
    """Whether whoever read ``operation`` (through :func:`operation_list`) is staff. An
    operation read any other way counts as a customer's: masking is the safe default."""
    return bool(getattr(operation, "shows_host_internals", False))


def host_mask() -> HostMask:
    """What a customer must not see of the platform's hosts (one query): every host's
    addresses (with SSH users and ports next to them) and the names of backup hosts."""
    addresses: list[str] = []
    backup_names: list[str] = []
    for role, name, address, private_address in Host.objects.values_list(
        "role", "name", "address", "private_address"
    ):
        addresses += [address, private_address]
        if role == Host.Role.BACKUP:
            backup_names.append(name)
    return HostMask.of(addresses=addresses, backup_names=backup_names)


class MaskedSteps:
    """A customer's view of an operation's steps: a lazy, sliceable wrapper of the step
    queryset whose rows come out with host internals masked (never saved back)."""

    def __init__(self, queryset: QuerySet, mask: HostMask) -> None:
        self.queryset = queryset
        self.mask = mask

    def __getitem__(self, index: slice) -> MaskedSteps:
        return MaskedSteps(self.queryset[index], self.mask)

    def __iter__(self) -> Any:
        for step in self.queryset:
            step.message = self.mask.text(step.message)
            step.command = self.mask.text(step.command)
            step.output = self.mask.text(step.output)
            yield step

    def __len__(self) -> int:
        return self.queryset.count()


def operation_steps(
    operation: Operation, *, after_id: int = 0, mask: HostMask | None = None
) -> QuerySet | MaskedSteps:
    """The steps of ``operation`` after ``after_id``, as its viewer may see them: in full for
    staff, with host internals masked for customers (see :func:`operation_list`); ``mask`` is a
    :func:`host_mask` the caller already read (one read of the hosts per response)."""
    steps = OperationStep.objects.filter(operation=operation, id__gt=after_id).order_by("id")
    if shows_host_internals(operation):
        return steps
    return MaskedSteps(steps, mask if mask is not None else host_mask())


def operation_with_steps(access: Access) -> QuerySet:
    return operation_list(access).prefetch_related(
        Prefetch("steps", queryset=OperationStep.objects.order_by("id"))
    )


def dashboard_summary(access: Access) -> dict[str, Any]:
    """Counts the dashboard shows: instances by status, licenses expiring within each of
    ``EXPIRY_WARNING_DAYS``, what other apps register, operations in progress. Each is one
    aggregate query in the database, whatever the size of the fleet."""
    from django.db.models import Count, Q

    by_status = dict(instance_list(access).order_by().values_list("status").annotate(n=Count("pk")))
    today = timezone.now().date()

    def within(days: int) -> Q:
        limit = today + timedelta(days=days)
        return Q(expiry_date__lte=limit) | Q(maintenance_expiry_date__lte=limit)

    widest = max(EXPIRY_WARNING_DAYS)
    # Deleted instances as a subquery (a few rows off the status index), not a join: the
    # licenses are counted without reading the fleet's instance rows.
    deleted = AtlassianInstance.objects.filter(status=InstanceStatus.DELETED).values("pk")
    licenses = (
        License.objects.for_user(access)
        .filter(within(widest))
        .exclude(instance_id__in=deleted)
        .aggregate(**{f"d{days}": Count("pk", filter=within(days)) for days in EXPIRY_WARNING_DAYS})
    )
    expiring = {days: licenses[f"d{days}"] for days in EXPIRY_WARNING_DAYS}
    return {
        "instance_count": sum(by_status.values()),
        "by_status": by_status,
        "licenses_expiring": expiring[widest],
        # {60: n, 30: n, 7: n}: what licenses_expiring(access, days).count() would say.
        "licenses_expiring_within": expiring,
        # Counts other apps add (certificates: "certificates_expiring", within 14 days),
        # registered in registry["summary_counts"] from their ready().
        **{key: count(access) for key, count in registry["summary_counts"].items()},
        "running_operations": operation_list(access)
        .filter(status__in=OperationStatus.ACTIVE)
        .count(),
    }


def dashboard_instances(access: Access, *, limit: int = 20) -> list[AtlassianInstance]:
    """The first ``limit`` instances in list order (tenant name, name: the tenant-name index
    lets the database walk the tenants in order instead of sorting the fleet), with only the
    columns the dashboard's table shows."""
    return list(
        instance_list(access)
        .select_related(None)
        .select_related("tenant")
        .only(
            "id",
            "name",
            "product",
            "version",
            "status",
            "health",
            "hostname",
            "context_path",
            "tenant_id",
            "tenant__name",
        )[:limit]
    )


def instance_search(
    access: Access, *, q: str = "", status: str = "", across_tenants: bool = False
) -> QuerySet:
    """Instances matching ``q`` (name or hostname; also tenant name or slug when
    ``across_tenants``) and ``status`` (an instance status, or ``degraded``)."""
    from django.db.models import Q

    from provisioning.models import InstanceHealth

    qs = instance_list(access)
    q = q.strip()
    if q:
        match = Q(name__icontains=q) | Q(hostname__icontains=q)
        if across_tenants:
            match |= Q(tenant__name__icontains=q) | Q(tenant__slug__icontains=q)
        qs = qs.filter(match)
    if status == "degraded":
        qs = qs.filter(status=InstanceStatus.RUNNING, health=InstanceHealth.DEGRADED)
    elif status:
        qs = qs.filter(status=status)
    return qs


def operations_active(access: Access) -> QuerySet:
    """Pending and running operations the caller sees, newest first."""
    return operation_list(access).filter(status__in=OperationStatus.ACTIVE)


def tiers_choosable(access: Access | None, tenant: Any) -> list[str]:
    """Service tiers a new instance of ``tenant`` may get from this caller: staff choose any;
    customers their tenant's default tier or a less demanding one (a higher number), never a
    tier with tighter recovery objectives (more frequent backups) than the tenant has."""
    tiers = [t.value for t in ServiceTier]
    if access is not None and access.is_staff_role:
        return tiers
    default = getattr(tenant, "default_tier", None)
    if default not in tiers:
        return []
    return tiers[tiers.index(default) :]


def tier_refusal(tier: str, allowed: list[str]) -> str:
    """Why ``tier`` is refused, naming the tiers the caller may choose."""
    labels = ", ".join(ServiceTier(t).label for t in allowed) or "none"
    return (
        f"{ServiceTier(tier).label} is above the tenant's service tier; choose {labels}, or "
        "leave it empty for the tenant's default. Support staff can set a higher tier."
    )


def instances_administered(access: Access) -> QuerySet:
    """Instances (not deleted) the caller may change: those of tenants they administer."""
    qs = instance_list(access)
    if not access.can_write:
        return qs.none()
    if access.is_staff_role:
        return qs
    return qs.filter(tenant_id__in=access.admin_tenant_ids)


def instance_health_history(
    access: Access, instance: AtlassianInstance, *, hours: int = 24, buckets: int = 48
) -> dict[str, Any]:
    """The instance's health checks of the last ``hours`` hours in ``buckets`` equal slots
    (checks, how many passed, mean response time), for the health chart of its page."""
    from provisioning.models import InstanceHealthCheck

    now = timezone.now()
    since = now - timedelta(hours=hours)
    width = (now - since) / buckets
    slots = [
        {"start": since + width * i, "end": since + width * (i + 1), "total": 0, "ok": 0, "ms": []}
        for i in range(buckets)
    ]
    rows = (
        InstanceHealthCheck.objects.for_user(access)
        .filter(instance=instance, checked_at__gt=since, checked_at__lte=now)
        .values_list("checked_at", "ok", "response_ms")
    )
    for checked_at, ok, response_ms in rows:
        slot = slots[min(buckets - 1, int((checked_at - since) / width))]
        slot["total"] += 1
        slot["ok"] += bool(ok)
        if response_ms is not None:
            slot["ms"].append(response_ms)
    for slot in slots:
        values = slot.pop("ms")
        slot["mean_ms"] = round(sum(values) / len(values)) if values else None
    total = sum(s["total"] for s in slots)
    passed = sum(s["ok"] for s in slots)
    return {
        "hours": hours,
        "slots": slots,
        "total": total,
        "ok": passed,
        "percent": round(100 * passed / total, 1) if total else None,
    }


# --- resource use (provisioning.usage) -------------------------------------------------------

MIB = 1024**2


def instance_usage_samples(
    access: Access, instance: AtlassianInstance, *, hours: int = 24
) -> QuerySet:
    """The instance's resource-use samples of the last ``hours`` hours, oldest first."""
    from provisioning.models import InstanceUsage

    since = timezone.now() - timedelta(hours=hours)
    return (
        InstanceUsage.objects.for_user(access)
        .filter(instance=instance, sampled_at__gt=since)
        .order_by("sampled_at")
    )


def instance_usage_limits(instance: AtlassianInstance) -> dict[str, Any]:
    """What the instance's use is measured against: its heap and its containers' limits (as
    the compose file sets them, ``provisioning.compose.instance_limits``)."""
    from provisioning.compose import instance_limits

    limits = instance_limits(instance)
    return {
        "heap_max_mb": instance.heap_max_mb,
        "app_memory_limit_mb": limits.app_memory_mb,
        "db_memory_limit_mb": limits.db_memory_mb,
        "app_cpus": limits.app_cpus,
        "db_cpus": limits.db_cpus,
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def instance_usage_history(
    access: Access, instance: AtlassianInstance, *, hours: int = 24, buckets: int = 48
) -> dict[str, Any]:
    """The instance's resource use over the last ``hours`` hours in ``buckets`` equal slots,
    for the chart beside its health chart: each slot's mean CPU of both containers, its
    highest memory of each, and its last disk measurement; plus the newest sample and the
    limits the use is measured against."""
    now = timezone.now()
    since = now - timedelta(hours=hours)
    width = (now - since) / buckets
    slots: list[dict[str, Any]] = [
        {"start": since + width * i, "end": since + width * (i + 1), "samples": 0}
        for i in range(buckets)
    ]
    raw: list[dict[str, list]] = [
        {"app_cpu": [], "db_cpu": [], "app_mem": [], "db_mem": []} for _ in range(buckets)
    ]
    samples = list(instance_usage_samples(access, instance, hours=hours))
    for sample in samples:
        i = min(buckets - 1, int((sample.sampled_at - since) / width))
        slots[i]["samples"] += 1
        for key, value in (
            ("app_cpu", sample.app_cpu_percent),
            ("db_cpu", sample.db_cpu_percent),
            ("app_mem", sample.app_memory_bytes),
            ("db_mem", sample.db_memory_bytes),
        ):
            if value is not None:
                raw[i][key].append(value)
        if sample.disk_sampled_at is not None:
            slots[i]["home_bytes"] = sample.home_bytes
            slots[i]["db_disk_bytes"] = sample.db_disk_bytes
            slots[i]["disk_bytes"] = sample.disk_bytes
    for slot, values in zip(slots, raw, strict=True):
        slot["app_cpu_percent"] = _mean(values["app_cpu"])
        slot["db_cpu_percent"] = _mean(values["db_cpu"])
        slot["app_memory_bytes"] = max(values["app_mem"], default=None)
        slot["db_memory_bytes"] = max(values["db_mem"], default=None)
        slot.setdefault("disk_bytes", None)
    limits = instance_usage_limits(instance)
    latest = samples[-1] if samples else None
    app_limit = (
        latest.app_memory_limit_bytes
        if latest is not None and latest.app_memory_limit_bytes
        else limits["app_memory_limit_mb"] * MIB
    )
    return {
        "hours": hours,
        "slots": slots,
        "total": len(samples),
        "latest": latest,
        "limits": limits,
        "heap_bytes": instance.heap_max_mb * MIB,
        "app_memory_limit_bytes": app_limit,
        "app_memory_peak_bytes": max(
            (s["app_memory_bytes"] for s in slots if s["app_memory_bytes"] is not None),
            default=None,
        ),
        "app_cpu_mean_percent": _mean([v for s in samples if (v := s.app_cpu_percent) is not None]),
    }


def host_usage_totals(access: Access, host: Host) -> dict[str, Any]:
    """The newest sample of each instance on ``host`` (not deleted), and their totals against
    the host's capacity, in two queries whatever the number of instances. CPU and memory count
    only samples younger than ``usage.USAGE_FRESH`` (a stopped instance uses none); disk counts
    each instance's last measurement, whatever its age (stopped, its data is still there).
    Memory is also shown as placement reckons it: the containers' limits promised."""
    from django.db.models import OuterRef, Subquery

    from provisioning.compose import instance_limits
    from provisioning.models import InstanceUsage
    from provisioning.usage import USAGE_FRESH

    newest = (
        InstanceUsage.objects.filter(instance=OuterRef("pk")).order_by("-sampled_at").values("pk")
    )
    on_host = (
        AtlassianInstance.objects.for_user(access)
        .filter(host=host)
        .exclude(status=InstanceStatus.DELETED)
        .annotate(latest_usage_id=Subquery(newest[:1]))
    )
    instances = list(on_host.select_related("host", "tenant").order_by("name"))
    samples = {
        s.pk: s
        for s in InstanceUsage.objects.for_user(access).filter(
            pk__in=on_host.values("latest_usage_id")
        )
    }
    fresh_after = timezone.now() - USAGE_FRESH
    rows = []
    cpu = memory = disk = committed_mb = 0.0
    for inst in instances:
        sample = samples.get(inst.latest_usage_id)
        fresh = sample is not None and sample.sampled_at >= fresh_after
        limit_mb = instance_limits(inst).memory_mb
        row = {
            "instance": inst,
            "sample": sample,
            "fresh": fresh,
            "cpu_percent": sample.cpu_percent if fresh and sample else None,
            "memory_bytes": sample.memory_bytes if fresh and sample else None,
            "memory_limit_bytes": limit_mb * MIB,
            "disk_bytes": sample.disk_bytes if sample else None,
        }
        rows.append(row)
        cpu += row["cpu_percent"] or 0
        memory += row["memory_bytes"] or 0
        disk += row["disk_bytes"] or 0
        committed_mb += limit_mb

    def share(used: float, capacity: float | None) -> float | None:
        return round(100 * used / capacity, 1) if capacity else None

    memory_capacity = host.memory_mb * MIB if host.memory_mb else None
    return {
        "rows": rows,
        "sampled": sum(1 for r in rows if r["sample"] is not None),
        "cpu_percent": round(cpu, 2),
        "cpus_used": round(cpu / 100, 2),
        "cpu_count": host.cpu_count,
        "cpu_share": share(cpu / 100, host.cpu_count),
        "memory_bytes": int(memory),
        "memory_committed_bytes": int(committed_mb * MIB),
        "memory_capacity_bytes": memory_capacity,
        "memory_share": share(memory, memory_capacity),
        "memory_committed_share": share(committed_mb * MIB, memory_capacity),
        "disk_bytes": int(disk),
        "disk_total_bytes": host.disk_total_bytes,
        "disk_free_bytes": host.disk_free_bytes,
        "disk_share": share(disk, host.disk_total_bytes),
    }
