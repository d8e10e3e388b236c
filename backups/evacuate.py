"""Evacuating a failed app host: every instance on it restored onto healthy app hosts.

Staff start it on a host that is down (unreachable or in error). The plan gives each instance
on it a target: a ready app host of the same backup host (the points must be readable there)
with room for it, counting what the plan already put there, most free memory first; tier order,
lowest RTO first. Each instance is brought back from its newest restorable point as *itself*
(same name, hostname, tenant, database credentials, applications links untouched) under a new
compose project name on the target; then DNS, the certificate and the proxy site follow it
(the "publish" hooks) and the endpoint check runs.

One parent operation (``host.evacuate``, holding the host) runs one child operation per
instance (``backup.evacuate``, holding the instance) by the normal runner,
``PANEL_EVACUATE_PARALLEL`` at a time. Each move leaves an
:class:`~provisioning.models.EvacuatedCopy` of the old deployment: when the host answers again
it is fenced before it is ready (:mod:`provisioning.hosts.fence`).

A child that fails cleans up what it made on the target and puts the instance back on the
failed host's record (still down, with the reason), so a second evacuation can try again.
"""

from __future__ import annotations

import copy
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from backups.models import (
    Backup,
    BackupOperationKind,
    BackupStatus,
    BaseBackup,
    PointDatabase,
    WalArchive,
)
from backups.restore import restore_new, scratch_remove
from panel.access import Access
from panel.audit import audit_record
from panel.notices import notify
from panel.operation_requests import operation_by_key, operation_conflict_check
from panel.operations import (
    OperationConflict,
    OperationContext,
    OperationFailed,
    operation_children_run,
    operation_handler,
    operation_start,
)
from panel.registry import registry
from provisioning.compose import instance_dir, project_name
from provisioning.models import (
    AtlassianInstance,
    EvacuatedCopy,
    Host,
    InstanceStatus,
    Operation,
)
from provisioning.operations import instance_published
from provisioning.ports import HostPortsExhausted, instance_host_port_allocate
from provisioning.remote import RemoteError
from provisioning.services import (
    INSTANCE_DISK_NEEDED,
    host_fit_problem,
    host_free_memory_mb,
    host_lock_key,
    instance_lock_key,
    instance_memory_needed_mb,
    instance_transition,
)
from tenants.tiers import objectives_for

log = logging.getLogger(__name__)

# Instances an evacuation brings back (others are being created or removed).
EVACUABLE = (InstanceStatus.RUNNING, InstanceStatus.STOPPED, InstanceStatus.FAILED)


@dataclass
class PlanRow:
    """One instance of an evacuation plan: where it goes from which point, or why it cannot."""

    instance: AtlassianInstance
    point: Backup | None
    target: Host | None
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance": str(self.instance.pk),
            "name": self.instance.name,
            "tenant": self.instance.tenant.name,
            "tier": self.instance.tier,
            "rto_objective_seconds": objectives_for(self.instance.tier).rto.total_seconds(),
            "point": str(self.point.pk) if self.point else "",
            "point_taken_at": self.point.taken_at.isoformat() if self.point else "",
            "target": self.target.name if self.target else "",
            "problem": self.problem,
        }


def evacuation_plan(host: Host, *, only: set[str] | None = None) -> list[PlanRow]:
    """Where each instance on ``host`` (of ``only``, ids, when given) would go now (see the
    module's docstring)."""
    found = (
        AtlassianInstance.objects.filter(host=host)
        .exclude(status__in=[InstanceStatus.DELETED, InstanceStatus.DELETING])
        .select_related("tenant", "host")
    )
    if only is not None:
        found = found.filter(pk__in=only)
    instances = sorted(
        found,
        key=lambda i: (objectives_for(i.tier).rto, i.name),
    )
    candidates = list(
        Host.objects.filter(role=Host.Role.APP, status=Host.Status.READY).exclude(pk=host.pk)
    )
    free = {h.pk: host_free_memory_mb(h) for h in candidates}
    disk = {h.pk: h.disk_free_bytes or 0 for h in candidates}
    # The newest restorable point of every instance, in one query.
    points = {
        p.instance_id: p
        for p in Backup.objects.filter(instance__in=instances, status=BackupStatus.SUCCEEDED)
        .exclude(point_name="")
        .select_related("backup_host", "app_host")
        .order_by("instance_id", "-taken_at")
        .distinct("instance_id")
    }
    # An instance held by another operation (a backup hung on the dead host, say) waits for
    # it to end (the reaper ends a dead worker's); the others go on.
    held = dict(
        Operation.objects.filter(
            lock_key__in=[instance_lock_key(i) for i in instances],
            status__in=["pending", "running"],
        ).values_list("lock_key", "kind")
    )
    rows = []
    for instance in instances:
        if instance.status not in EVACUABLE:
            rows.append(
                PlanRow(
                    instance,
                    None,
                    None,
                    f"{instance.name} is {instance.get_status_display().lower()}; it is not moved.",
                )
            )
            continue
        if instance_lock_key(instance) in held:
            rows.append(
                PlanRow(
                    instance,
                    None,
                    None,
                    f"An operation ({held[instance_lock_key(instance)]}) holds it; evacuate "
                    "again once it has ended.",
                )
            )
            continue
        point = points.get(instance.pk)
        if point is None:
            rows.append(PlanRow(instance, None, None, "No restorable backup point."))
            continue
        fitting = [
            h
            for h in candidates
            if h.backup_host_id == point.backup_host_id
            and disk[h.pk] >= INSTANCE_DISK_NEEDED
            and free[h.pk] >= instance_memory_needed_mb(instance, h)
        ]
        if not fitting:
            rows.append(
                PlanRow(
                    instance,
                    point,
                    None,
                    f"No ready app host of {getattr(point.backup_host, 'name', '?')} has room "
                    "for it "
                    f"({instance_memory_needed_mb(instance, host)} MB of memory, "
                    f"{INSTANCE_DISK_NEEDED // 1024**3} GB of disk).",
                )
            )
            continue
        target = max(fitting, key=lambda h: (free[h.pk], h.name))
        free[target.pk] -= instance_memory_needed_mb(instance, target)
        disk[target.pk] -= INSTANCE_DISK_NEEDED
        rows.append(PlanRow(instance, point, target))
    return rows


def host_evacuate_start(
    *,
    actor: Access | None,
    host: Host,
    idempotency_key: str = "",
    only: set[str] | None = None,
) -> Operation:
    """Start the evacuation of ``host`` (staff, or the panel itself with ``actor=None``): one
    child restore per instance the plan places (of ``only``, instance ids, when given).

    Refused for a host that answers (a ready host's instances are moved one by one, by restores
    into new instances) and when nothing on the host can be placed."""
    if actor is not None and not (actor.is_staff_role and actor.can_write):
        raise PermissionDenied("Only support staff and platform admins evacuate hosts.")
    existing = operation_by_key(actor, idempotency_key, kind=BackupOperationKind.HOST_EVACUATE)
    if existing is not None:
        return existing
    if host.role != Host.Role.APP:
        raise ValidationError({"host": f"{host.name} is not an app host; it runs no instances."})
    if host.status not in (Host.Status.UNREACHABLE, Host.Status.ERROR):
        raise ValidationError(
            {
                "host": f"{host.name} is {host.get_status_display().lower()}; evacuate only a "
                "host that is down (unreachable or in error)."
            }
        )
    # A running evacuation (or another operation on the host) is named before the plan, whose
    # instances it holds.
    operation_conflict_check(host_lock_key(host))
    plan = evacuation_plan(host, only=only)
    placed = [row for row in plan if row.target is not None]
    if not placed:
        words = "; ".join(f"{r.instance.name}: {r.problem}" for r in plan) or "it has none"
        raise ValidationError({"host": f"No instance of {host.name} can be placed ({words})."})
    with transaction.atomic():
        parent = operation_start(
            kind=BackupOperationKind.HOST_EVACUATE,
            actor=actor,
            host=host,
            params={"plan": [row.as_dict() for row in plan], "automatic": actor is None},
            lock_key=host_lock_key(host),
            idempotency_key=idempotency_key,
        )
        for row in placed:
            assert row.point is not None and row.target is not None
            operation_start(
                kind=BackupOperationKind.INSTANCE_EVACUATE,
                actor=actor,
                instance=row.instance,
                params={
                    "point": str(row.point.pk),
                    "from_host": str(host.pk),
                    "to_host": str(row.target.pk),
                    "parent": str(parent.pk),
                },
                lock_key=instance_lock_key(row.instance),
                parent=parent,
            )
    audit_record(
        actor=actor,
        action="host.evacuate",
        target=host,
        changes={"instances": [r.instance.name for r in placed], "operation": str(parent.pk)},
    )
    return parent


# --- the parent ---------------------------------------------------------------------------


def evacuate_abort(operation: Any, reason: str) -> None:
    """A failed, cancelled or reaped evacuation: its parts that never started never will."""
    Operation.objects.filter(parent_id=operation.pk, status="pending").update(
        status="cancelled",
        error=f"The evacuation ended first: {reason}"[:4000],
        finished_at=timezone.now(),
    )


@operation_handler(BackupOperationKind.HOST_EVACUATE, on_abort=evacuate_abort, staff_cancel=True)
def host_evacuate_run(ctx: OperationContext) -> dict:
    """Run the children in tier order, ``PANEL_EVACUATE_PARALLEL`` at a time, and sum up."""
    started = time.monotonic()
    host = Host.objects.get(pk=ctx.operation.host_id)
    children = list(
        Operation.objects.filter(parent=ctx.operation)
        .order_by("created_at")
        .select_related("instance")
    )
    plan = ctx.operation.params.get("plan", [])
    ctx.progress(0, len(children))
    ctx.step(
        f"Evacuating {len(children)} instance(s) of {host.name}, "
        f"{settings.PANEL_EVACUATE_PARALLEL} at a time, lowest RTO first: "
        + ", ".join(f"{r['name']} -> {r['target']}" for r in plan if r["target"])
    )
    for row in plan:
        if not row["target"]:
            ctx.step(f"{row['name']} is not moved: {row['problem']}", level="warning")
    outcomes: list[dict[str, Any]] = []

    def ended(child: Operation) -> None:
        result = child.result or {}
        outcome = {
            "instance": child.instance.name if child.instance else "",
            "status": child.status,
            "operation": str(child.pk),
            **{k: result.get(k) for k in _SUMMARY_KEYS},
            "error": child.error,
        }
        outcomes.append(outcome)
        ctx.progress(len(outcomes))
        if child.status == "succeeded":
            ctx.step(
                f"{outcome['instance']} runs on {outcome['to_host']}: back after "
                f"{outcome['rto_seconds']:.0f} s of outage, data "
                f"{outcome['data_age_seconds']:.0f} s older than the failure"
            )
        else:
            ctx.step(f"{outcome['instance']} was not evacuated: {child.error}", level="error")

    operation_children_run(ctx, children, parallel=settings.PANEL_EVACUATE_PARALLEL, on_end=ended)
    failed = [o for o in outcomes if o["status"] != "succeeded"]
    summary = {
        "host": host.name,
        "instances": outcomes,
        "not_moved": [r for r in plan if not r["target"]],
        "seconds": round(time.monotonic() - started, 1),
        "sum_of_restores_seconds": round(
            sum(
                (c.result or {}).get("restore_seconds") or 0
                for c in Operation.objects.filter(parent=ctx.operation)
            ),
            1,
        ),
        "succeeded": len(outcomes) - len(failed),
        "failed": len(failed),
    }
    _evacuated_notify(ctx.operation, host, summary)
    if failed:
        # The outcome is kept on the row for the dashboard even though the operation failed.
        Operation.objects.filter(pk=ctx.operation.pk).update(result=summary)
        raise OperationFailed(
            f"{summary['succeeded']} of {len(outcomes)} instance(s) of {host.name} are back; "
            + "; ".join(f"{o['instance']}: {o['error']}" for o in failed)
        )
    ctx.step(
        f"Evacuated {len(outcomes)} instance(s) of {host.name} in {summary['seconds']:.0f} s "
        f"(the restores alone: {summary['sum_of_restores_seconds']:.0f} s)"
    )
    return summary


def _evacuated_notify(operation: Operation, host: Host, summary: dict[str, Any]) -> None:
    """Tell staff how the evacuation went, and each tenant that its instance moved."""
    lines = [
        f"{o['instance']}: "
        + (
            f"back on {o['to_host']} after {o['rto_seconds']:.0f} s, data "
            f"{o['data_age_seconds']:.0f} s older than the failure"
            if o["status"] == "succeeded"
            else f"not back ({o['error']})"
        )
        for o in summary["instances"]
    ] + [f"{r['name']}: not moved ({r['problem']})" for r in summary["not_moved"]]
    notify(
        event="host.evacuated",
        tenant=None,
        obj=host,
        dedupe_key=f"evacuated:{operation.pk}",
        subject=f"{host.name} was evacuated: {summary['succeeded']} of "
        f"{len(summary['instances'])} instance(s) back",
        body="\n".join(lines),
        url=reverse("provisioning:operation_detail", args=[operation.pk]),
    )
    moved = AtlassianInstance.objects.filter(
        name__in=[o["instance"] for o in summary["instances"] if o["status"] == "succeeded"]
    ).select_related("tenant")
    for instance in moved:
        outcome = next(o for o in summary["instances"] if o["instance"] == instance.name)
        notify(
            event="instance.evacuated",
            tenant=instance.tenant,
            obj=instance,
            dedupe_key=f"evacuated:{operation.pk}:{instance.pk}",
            subject=f"{instance.name} was brought back on another server",
            body=_evacuated_words(instance, outcome),
            url=reverse("provisioning:instance_detail", args=[instance.pk]),
        )


_SUMMARY_KEYS = ("to_host", "rto_seconds", "data_age_seconds", "database_from", "home_at")


def _evacuated_words(instance: AtlassianInstance, outcome: dict[str, Any]) -> str:
    age = f"{outcome['data_age_seconds']:.0f} s"
    if outcome.get("database_from") == "wal":
        return (
            f"The server {instance.name} ran on failed. It runs again with its database as of "
            f"{age} before the failure (from its continuous archive) and the files of its home "
            f"from its backup of {outcome.get('home_at')}; files changed after that backup "
            "were lost with the server."
        )
    return (
        f"The server {instance.name} ran on failed. It runs again from its backup of {age} "
        "before the failure; changes made after that backup were lost with the server."
    )


def evacuations_auto(now: datetime | None = None) -> list[str]:
    """The periodic job: for each unreachable app host, evacuate the instances whose tier's
    ``PANEL_EVACUATE_AUTO_MINUTES`` have passed since the host was last seen, and tell staff
    beforehand (when the first of its tiers' delays starts counting). Off when the setting is
    empty. Returns the operations it started."""
    delays = settings.PANEL_EVACUATE_AUTO_MINUTES
    if not delays:
        return []
    now = now or timezone.now()
    started = []
    for host in Host.objects.filter(role=Host.Role.APP, status=Host.Status.UNREACHABLE):
        since = host.last_seen_at or host.created_at
        due: set[str] = set()
        soonest = None
        for pk, tier in AtlassianInstance.objects.filter(
            host=host, status__in=EVACUABLE, tier__in=list(delays)
        ).values_list("pk", "tier"):
            at = since + timedelta(minutes=delays[tier])
            if at <= now:
                due.add(str(pk))
            soonest = at if soonest is None or at < soonest else soonest
        if soonest is None:
            continue
        notify(
            event="host.evacuation_due",
            tenant=None,
            obj=host,
            dedupe_key=f"evacuation-due:{host.pk}:{since.isoformat()}",
            subject=f"{host.name} is unreachable; it is evacuated automatically",
            body=(
                f"{host.name} was last seen {since:%Y-%m-%d %H:%M} UTC. Unless it answers, its "
                f"instances are evacuated from {soonest:%H:%M} UTC on (PANEL_EVACUATE_AUTO_"
                f"MINUTES: {', '.join(f'{t} after {m} min' for t, m in sorted(delays.items()))})."
            ),
            url=reverse("hosts:detail", args=[host.pk]),
        )
        if not due:
            continue
        # Once per instance: those a finished evacuation left behind are not tried again.
        tried = {
            str(row.get("instance"))
            for params in Operation.objects.filter(
                kind=BackupOperationKind.HOST_EVACUATE, host=host, created_at__gte=since
            ).values_list("params", flat=True)
            for row in params.get("plan", [])
            if row.get("target")  # not those left out for now (held, no room): next minute
        }
        due -= tried
        if not due:
            continue
        try:
            op = host_evacuate_start(actor=None, host=host, only=due)
        except (ValidationError, OperationConflict) as exc:
            log.info("automatic evacuation of %s not started: %s", host.name, exc)
            continue
        started.append(str(op.pk))
    return started


# --- one instance ---------------------------------------------------------------------------


def _failure_time(host: Host, operation: Operation) -> datetime:
    """When ``host`` was last known to work (its last successful contact), else when the
    evacuation was asked for."""
    return host.last_seen_at or operation.created_at


def _moved_back(operation: Any, reason: str) -> None:
    """Undo the move of a child that did not finish: the instance is on its old host's record
    again (still down), its pending fence record gone; its status says why."""
    params = operation.params or {}
    if operation.instance_id is None or "old" not in params:
        return  # refused before it moved anything
    with transaction.atomic():
        instance = AtlassianInstance.objects.select_for_update().get(pk=operation.instance_id)
        old = params["old"]
        new = params.get("new") or {}
        if new and str(instance.host_id) == new.get("host"):
            # What it started on the target may still run (a reaped or killed handler skipped
            # its clean-up): the target's next health check stops it. By its project alone,
            # which no other deployment has; the directory stays where it is (the next move
            # there sets it aside first).
            EvacuatedCopy.objects.create(
                host_id=new["host"],
                instance=instance,
                instance_name=instance.name,
                project=new["project"],
                directory="",
                detail="A failed evacuation's deployment.",
            )
        if str(instance.host_id) != params["from_host"]:
            AtlassianInstance.objects.filter(pk=instance.pk).update(
                host_id=params["from_host"],
                compose_project=old.get("compose_project", ""),
                host_port=old.get("host_port"),
                wal_archiving=old.get("wal_archiving", False),
            )
        EvacuatedCopy.objects.filter(
            host_id=params["from_host"], instance=instance, status=EvacuatedCopy.Status.PENDING
        ).delete()
        if instance.status in (InstanceStatus.RESTORING, InstanceStatus.PROVISIONING):
            AtlassianInstance.objects.filter(pk=instance.pk).update(
                status=InstanceStatus.FAILED,
                status_reason=f"Evacuation failed: {reason}"[:2000],
                status_changed_at=timezone.now(),
            )


def _room_now(
    ctx: OperationContext, instance: AtlassianInstance, planned: Host, backup_host_id: Any
) -> Host:
    """The host to move ``instance`` to now: the planned one if it still has room, else the
    ready app host of the point's backup host with the most room. The plan was made when the
    evacuation started; another evacuation (or a create) may have taken that room since. The
    candidates' rows are locked (in one order), so two moves cannot both count the same room."""
    candidates = list(
        Host.objects.select_for_update()
        .filter(role=Host.Role.APP, status=Host.Status.READY, backup_host_id=backup_host_id)
        .exclude(pk__in=[instance.host_id])
        .order_by("pk")
    )
    fitting = {h.pk: h for h in candidates if host_fit_problem(instance, h) is None}
    if planned.pk in fitting:
        return fitting[planned.pk]
    if not fitting:
        raise OperationFailed(
            f"No ready app host has room for {instance.name} now (the room planned on "
            f"{planned.name} was taken since the evacuation started); not moved."
        )
    best = max(fitting.values(), key=lambda h: (host_free_memory_mb(h), h.name))
    ctx.step(
        f"{planned.name} has no room for {instance.name} any more (taken since the plan); it "
        f"goes to {best.name} instead",
        level="warning",
    )
    return best


def _move(ctx: OperationContext, instance: AtlassianInstance, planned: Host, point: Backup) -> Host:
    """Record the old deployment for fencing and put ``instance`` on the planned host (or,
    without room there any more, another) under a new compose project name, with its own
    published port there. Returns the host it went to."""
    old_host = instance.host
    assert old_host is not None
    # "_" is in no instance name: the project can never be another instance's.
    project = f"{instance.name}_{secrets.token_hex(3)}"
    params = dict(ctx.operation.params)
    params["old"] = {
        "compose_project": instance.compose_project,
        "host_port": instance.host_port,
        "wal_archiving": instance.wal_archiving,
        "status": instance.status,
    }
    with ctx.owned(), transaction.atomic():
        # A host that answered since the evacuation was asked for keeps its instances: they
        # may be live there (a partition), and a point is older than their data.
        asked = ctx.operation.parent or ctx.operation
        since = asked.created_at
        source = Host.objects.select_for_update().get(pk=old_host.pk)
        answered = (
            source.status == Host.Status.UNREACHABLE
            and source.last_seen_at is not None
            and source.last_seen_at > since
        )
        if source.status not in (Host.Status.UNREACHABLE, Host.Status.ERROR) or answered:
            raise OperationFailed(
                f"{source.name} answers again; {instance.name} stays there (not moved)."
            )
        target = _room_now(ctx, instance, planned, point.backup_host_id)
        params["new"] = {"host": str(target.pk), "project": project}
        Operation.objects.filter(pk=ctx.operation.pk).update(params=params)
        ctx.operation.params = params
        EvacuatedCopy.objects.create(
            host=old_host,
            instance=instance,
            instance_name=instance.name,
            project=project_name(instance),
            directory=instance_dir(instance),
        )
        instance.host = target
        instance.compose_project = project
        instance.host_port = None
        # The archive belongs to the old deployment's cluster; the copy starts from a dump.
        instance.wal_archiving = False
        AtlassianInstance.objects.filter(pk=instance.pk).update(
            host=target,
            compose_project=instance.compose_project,
            host_port=None,
            wal_archiving=False,
        )
        try:
            instance_host_port_allocate(instance, target)
        except HostPortsExhausted as exc:
            raise OperationFailed(str(exc)) from exc
        instance_transition(
            instance, InstanceStatus.RESTORING, f"Evacuating from {old_host.name} to {target.name}"
        )
    return target


def _published_undo(ctx: OperationContext, as_before: AtlassianInstance) -> None:
    """The move failed once publishing on the target had begun (its DNS record may point
    there already): the instance's record goes back to its old host (:func:`_moved_back`), so
    the "moved_back" hooks put what publishing changed back there too (certificates: the DNS
    record). A failure here is a warning: the move's own error is the operation's."""
    for hook in list(registry["instance_hooks"]["moved_back"]):
        try:
            hook(ctx, as_before)
        except Exception as exc:  # noqa: BLE001 - one hook's failure must not hide the error
            ctx.step(
                f"{as_before.hostname} could not be pointed back at its old host: {exc} "
                "Publish its DNS again once it runs somewhere.",
                level="warning",
            )


def _has_base(instance: AtlassianInstance) -> bool:
    return BaseBackup.objects.filter(
        instance=instance, status=BaseBackup.Status.SUCCEEDED, finished_at__isnull=False
    ).exists()


def _replayed_time(reached: list[str]) -> datetime | None:
    """The newest replayed transaction's time (None: no replay, or nothing after the base)."""
    try:
        return datetime.fromisoformat(reached[-1]) if reached else None
    except ValueError:
        return None


def _stale_set_aside(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """A directory of the same instance left on the target (an earlier evacuation there that
    failed half-way) is moved aside, never restored into."""
    from provisioning.hosts import host_connection

    assert instance.host is not None
    directory = instance_dir(instance)
    aside = f"{instance.host.data_root}/evacuated/{instance.name}-stale-{secrets.token_hex(3)}"
    with host_connection(instance.host, ctx=ctx) as conn:
        if conn.exists(directory):
            conn.run(["mkdir", "-p", f"{instance.host.data_root}/evacuated"], record=False)
            conn.run(
                ["mv", directory, aside],
                message=f"Set aside what an earlier attempt left in {directory} ({aside})",
            )


@operation_handler(BackupOperationKind.INSTANCE_EVACUATE, on_abort=_moved_back, staff_cancel=True)
def instance_evacuate_run(ctx: OperationContext) -> dict:
    """Bring one instance of a failed host back on its target from its newest point."""
    started = time.monotonic()
    params = ctx.operation.params
    instance = AtlassianInstance.objects.select_related("host", "tenant").get(
        pk=ctx.operation.instance_id
    )
    point = Backup.objects.select_related("backup_host", "app_host").get(pk=params["point"])
    from_host = Host.objects.get(pk=params["from_host"])
    target = Host.objects.get(pk=params["to_host"])
    failed_at = _failure_time(from_host, ctx.operation)
    if instance.host_id != from_host.pk:
        raise OperationFailed(f"{instance.name} is no longer on {from_host.name}; not moved.")
    was_archiving = instance.wal_archiving
    was_stopped = instance.status == InstanceStatus.STOPPED
    # The instance as it was on the failed host: its WAL archive is keyed by that host.
    as_before = copy.copy(instance)
    replay = was_archiving and _has_base(instance)
    ctx.step(
        f"Bringing {instance.name} back on {target.name} from point {point.point_name} "
        f"({point.taken_at:%Y-%m-%d %H:%M:%S} UTC); {from_host.name} was last seen "
        f"{failed_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    target = _move(ctx, instance, target, point)
    if was_archiving:
        ctx.step(
            "Point-in-time archiving is off on the new host (the database there is a new "
            "deployment); turn it on again to start a new archive.",
            level="warning",
        )
    reached: list[str] = []
    publishing = False
    try:
        _stale_set_aside(ctx, instance)
        outcome = None
        if replay:
            from backups.wal import database_to_end  # wal -> selectors -> this module

            # The database from its archive, to the last WAL shipped before the host died
            # (seconds of loss instead of the age of the point); the home from the point.
            try:
                outcome = restore_new(
                    ctx, instance, point, copy=False, database=database_to_end(as_before, reached)
                )
            except (OperationFailed, RemoteError) as exc:
                reached.clear()
                ctx.step(
                    f"The replay of the archived WAL failed ({exc}); restoring the point's "
                    "database instead",
                    level="warning",
                )
                with ctx.uncancellable():
                    scratch_remove(ctx, instance)
        if outcome is None:
            from backups.wal import point_database_builder

            # A point of the archive has no dump: its database is the archive at its second.
            outcome = restore_new(
                ctx,
                instance,
                point,
                copy=False,
                database=point_database_builder(point, as_before),
            )
        if was_stopped:
            from backups.dump import compose_argv
            from provisioning.hosts import host_connection

            with host_connection(target, ctx=ctx) as conn:
                conn.run(compose_argv(instance, "stop"), timeout=300, message="Stopped it again")
        publishing = True
        instance_published(ctx, instance)
    except Exception as exc:
        with ctx.uncancellable():
            scratch_remove(ctx, instance)
            if publishing:
                _published_undo(ctx, as_before)
        if isinstance(exc, RemoteError):
            raise OperationFailed(str(exc)) from exc
        raise
    restore_seconds = time.monotonic() - started
    with ctx.owned():
        instance_transition(
            instance, InstanceStatus.STOPPED if was_stopped else InstanceStatus.RUNNING, ""
        )
        # The archive belonged to the old deployment's cluster (the copy started from a dump);
        # kept until here, so a failed move keeps its catalogue and gaps.
        WalArchive.objects.filter(instance=instance).delete()
    now = timezone.now()
    db_time = _replayed_time(reached) or point.database_at or point.taken_at
    result = {
        "to_host": target.name,
        "from_host": from_host.name,
        "point": point.point_name,
        "point_taken_at": point.taken_at.isoformat(),
        "restore_seconds": round(restore_seconds, 1),
        # From the last moment the host was known to work to the instance answering again.
        "rto_seconds": round((now - failed_at).total_seconds(), 1),
        "rto_objective_seconds": objectives_for(instance.tier).rto.total_seconds(),
        # How much older the restored data is than the failure (what was lost at most).
        # The database's part: the point's dump, or the newest transaction of the replay.
        "data_age_seconds": round(max(0.0, (failed_at - db_time).total_seconds()), 1),
        "database_from": "wal" if reached or point.database == PointDatabase.WAL else "dump",
        "database_at": db_time.isoformat(),
        "home_at": point.taken_at.isoformat(),
        "health": outcome.health,
    }
    ctx.step(
        f"{instance.name} is back on {target.name} ({outcome.health}); restore "
        f"{restore_seconds:.0f} s, outage {result['rto_seconds']:.0f} s (objective "
        f"{result['rto_objective_seconds']:.0f} s), data {result['data_age_seconds']:.0f} s older "
        "than the failure"
    )
    return result
