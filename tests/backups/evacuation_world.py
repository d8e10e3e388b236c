"""Rows for the evacuation tests (no lab): a dead app host with instances and their points,
ready app hosts of the same backup host to take them, and one of another backup host."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from backups.evacuate import host_evacuate_start
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Host, Operation
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

# What an instance's containers may use (their limits), by tier, for a Jira of 2 GB of heap:
# tier 1 4864 MB, tier 3 3328 MB (provisioning.products.resource_limits).
GB = 1024**3


@dataclass
class EvacuationWorld:
    backup: Host
    other_backup: Host
    down: Host
    target: Host  # app-one, the ``app_host`` fixture
    other: Host  # a ready app host of the other backup host, with the most room of all


def app_host_make(
    name: str, backup: Host, *, status: str = Host.Status.READY, **fields: Any
) -> Host:
    defaults: dict[str, Any] = {
        "role": Host.Role.APP,
        "address": "127.0.0.12",
        "ssh_port": 2222,
        "data_root": "/srv/atlassian",
        "status": status,
        "memory_mb": 16384,
        "cpu_count": 4,
        "disk_total_bytes": 200 * GB,
        "disk_free_bytes": 150 * GB,
    }
    defaults.update(fields)
    return Host.objects.create(name=name, backup_host=backup, **defaults)


def evacuation_world(app_host: Host) -> EvacuationWorld:
    backup = backup_host("backup-one")
    other_backup = backup_host("backup-two")
    with_backup_host(app_host, backup)
    down = app_host_make(
        "app-down",
        backup,
        status=Host.Status.UNREACHABLE,
        status_reason="No answer on port 2222 for 10 minutes.",
        last_seen_at=timezone.now() - timedelta(minutes=10),
    )
    other = app_host_make("app-other", other_backup, memory_mb=262144)
    return EvacuationWorld(backup, other_backup, down, app_host, other)


def instance_on(
    tenant: Any, name: str, host: Host, *, tier: str = "tier2", point: bool = True, **fields: Any
) -> AtlassianInstance:
    """An instance on ``host`` (with a backup point there unless ``point=False``)."""
    instance = make_instance(tenant, name, host=host, tier=tier, **fields)
    if point:
        make_point(instance)
    return instance


def evacuation_finished(staff: Any, world: EvacuationWorld) -> Operation:
    """An evacuation of ``world.down`` started by ``staff`` whose parts all came back on
    app-one (612 s of outage, data 3000 s older than the failure), as the runner leaves it."""
    parent = host_evacuate_start(actor=access_for_user(staff), host=world.down)
    Operation.objects.filter(parent=parent).update(
        status="succeeded",
        result={
            "to_host": "app-one",
            "rto_seconds": 612.4,
            "rto_objective_seconds": 21600.0,
            "data_age_seconds": 3000.0,
            "restore_seconds": 41.5,
        },
    )
    Operation.objects.filter(pk=parent.pk).update(status="succeeded", result={"seconds": 44.0})
    return parent
