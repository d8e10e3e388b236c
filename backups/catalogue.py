"""The catalogue (the ``Backup`` rows) against what really is on a backup host, and retention.

Retention (:mod:`backups.retention` decides, this module carries it out) prunes from the
catalogue, the panel's own record of what it committed, never from directory names: a
directory without a catalogue row is never counted and never pruned here, and a point that a
restore or drill in progress reads is never pruned under its feet. The catalogue is then made
to say what is there: labels, aged-out and missing points, and points found with no row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone

from backups import offsite
from backups.models import (
    Backup,
    BackupKind,
    BackupMode,
    BackupOperationKind,
    BackupPolicy,
    BackupStatus,
    InstanceBackupState,
    PointDatabase,
)
from backups.policies import policy_for, policy_retention
from backups.retention import EXTRA_SUFFIX, Point, point_parse, retention_plan
from backups.store import (
    PointStore,
    catalogued,
    points_disk_usage,
    points_present,
    store_for,
)
from panel.operations import OperationContext
from provisioning.hosts import host_connection
from provisioning.models import AtlassianInstance, Host, Operation
from provisioning.remote import HostConnection


def pinned_point_names(instance: AtlassianInstance) -> set[str]:
    """Points a restore or drill in progress reads: never pruned under their feet."""
    ids = [
        str(op.params.get("backup"))
        for op in Operation.objects.filter(
            kind__in=[BackupOperationKind.BACKUP_RESTORE, BackupOperationKind.BACKUP_DRILL],
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
    policy: BackupPolicy,
    now: datetime | None = None,
    prune: bool = True,
) -> dict[str, str]:
    """Prune the points ``policy`` no longer keeps and label the rest; sync the catalogue.
    Returns {point name: label} of what is kept."""
    listed_at = timezone.now()
    on_disk = {p.name for p in points_present(bconn, store)}
    # What retention weighs comes from the catalogue (the panel's own records of what it
    # committed), not from directory names on the backup host; a directory without a
    # catalogue row is never counted and never pruned here.
    present = [
        Point(name=row.point_name, taken_at=row.taken_at, extra=EXTRA_SUFFIX.get(row.kind, ""))
        for row in catalogued(instance, store).filter(
            status__in=[BackupStatus.SUCCEEDED, BackupStatus.MISSING]
        )
        if row.point_name in on_disk
    ]
    now = now or timezone.now()
    plan = retention_plan(
        present,
        policy_retention(policy),
        now=now,
        extra_days=settings.PANEL_BACKUP_EXTRA_KEEP_DAYS,
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
    BackupPolicy.objects.filter(pk=policy.pk).update(stored_bytes=points_disk_usage(bconn, store))
    if policy.offsite_enabled and prune and plan.prune and offsite.offsite_configured():
        offsite.offsite_follow_retention(ctx, instance=instance, keep=[p.name for p in remaining])
    return {name: label for name, label in plan.keep.items() if name in {p.name for p in remaining}}


def instances_backup_state_refresh(*, instance_ids: Iterable[Any]) -> None:
    """Recount each instance's catalogue into its :class:`InstanceBackupState` (newest retained
    point, number of rows), in two queries whatever the number of instances. Every change of
    an instance's rows calls it (a run recorded, a point committed, catalogue sync, purge);
    it recounts rather than adds, so a missed or raced call is put right by the next one."""
    ids = list(instance_ids)
    if not ids:
        return
    now = timezone.now()
    counted = (
        AtlassianInstance.objects.filter(pk__in=ids)
        .annotate(
            n=Count("backups"),
            last_good=Max("backups__taken_at", filter=Q(backups__status=BackupStatus.SUCCEEDED)),
        )
        .values_list("pk", "n", "last_good")
    )
    InstanceBackupState.objects.bulk_create(
        [
            InstanceBackupState(instance_id=pk, rows=n, last_good_at=last_good, refreshed_at=now)
            for pk, n, last_good in counted
        ],
        update_conflicts=True,
        unique_fields=["instance"],
        update_fields=["rows", "last_good_at", "refreshed_at"],
    )


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
    known = set()
    for row in catalogued(instance, store):
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
        if name not in known:
            _stray_import(bconn, instance=instance, store=store, name=name, labels=labels, now=now)
    instances_backup_state_refresh(instance_ids=[instance.pk])


def _stray_import(
    bconn: HostConnection,
    *,
    instance: AtlassianInstance,
    store: PointStore,
    name: str,
    labels: dict[str, str],
    now: datetime,
) -> None:
    """Give a point found on the backup host without a catalogue row its row back, if the panel
    wrote it for this instance."""
    data = bconn.read(f"{store.point(name)}/point.json", missing_ok=True)
    parsed = point_parse(name)
    try:
        info = json.loads(data or b"{}")
    except ValueError:
        info = {}
    # Only points the panel wrote for this instance (point.json names it) are imported, and
    # never one dated in the future: it would count as the newest and push real points out of
    # retention.
    if (
        parsed is None
        or info.get("instance_id") != str(instance.pk)
        or info.get("point") != name
        or parsed.taken_at > now + timedelta(minutes=5)
    ):
        return
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
        **_database_of(info),
        file_count=info.get("file_count"),
        logical_bytes=info.get("logical_bytes"),
        manifest_sha256=info.get("manifest_sha256", ""),
        error="Found on the backup host without a catalogue entry; imported.",
    )


def _database_of(info: dict[str, Any]) -> dict[str, Any]:
    """Where an imported point's database comes from (a point.json written before points of
    the archive existed names none: it carries a dump)."""
    if info.get("database") != PointDatabase.WAL:
        return {"database": PointDatabase.DUMP}
    try:
        at = datetime.fromisoformat(str(info.get("database_at")))
    except ValueError:
        return {"database": PointDatabase.DUMP}  # not restorable from the archive: as a dump
    return {"database": PointDatabase.WAL, "database_at": at}


def catalogue_refresh(
    instance: AtlassianInstance, *, ctx: OperationContext | None = None
) -> dict[str, str]:
    """Re-read the backup host and update the catalogue (no pruning). Periodic and on demand."""
    if instance.host is None or instance.host.backup_host is None:
        return {}
    store = store_for(instance, instance.host)
    with host_connection(store.backup_host, ctx=ctx) as bconn:
        policy = policy_for(instance)
        return retention_apply(
            ctx, bconn, instance=instance, store=store, policy=policy, prune=False
        )
