"""Handlers of host and instance operations (registered with the operation runner)."""

from __future__ import annotations

from typing import Any

from panel.operations import OperationContext, OperationFailed, operation_handler
from provisioning.models import AtlassianInstance, InstanceStatus, OperationKind

# Statuses that mean "an operation was half-way through changing this instance".
_IN_FLIGHT = {InstanceStatus.PROVISIONING, InstanceStatus.RESTORING, InstanceStatus.DELETING}


def instance_abort(operation: Any, reason: str) -> None:
    """After a failed, cancelled or reaped instance operation: never leave it looking busy."""
    from provisioning.services import instance_transition

    if operation.instance_id is None:
        return
    instance = AtlassianInstance.objects.get(pk=operation.instance_id)
    if instance.status in _IN_FLIGHT or instance.status == InstanceStatus.PENDING:
        instance_transition(instance, InstanceStatus.FAILED, reason)


@operation_handler(OperationKind.INSTANCE_CREATE, on_abort=instance_abort)
def instance_create_run(ctx: OperationContext) -> dict:
    """Choose an app host and roll the new instance out on it."""
    from provisioning.services import host_select_for_instance, instance_transition

    instance = AtlassianInstance.objects.select_related("host", "tenant").get(
        pk=ctx.operation.instance_id
    )
    ctx.add_secrets([instance.db_password])
    ctx.progress(0, 3)
    instance_transition(instance, InstanceStatus.PROVISIONING)
    if instance.host is None:
        ctx.step(f"Choosing an app host with {instance.heap_max_mb + 512} MB free memory")
        host = host_select_for_instance(instance)
        if host is None:
            raise OperationFailed(
                "No ready app host has enough free memory and disk for this instance "
                f"({instance.heap_max_mb} MB heap). An administrator must provision an app host "
                "or free capacity, then retry."
            )
        AtlassianInstance.objects.filter(pk=instance.pk).update(host=host)
        instance.host = host
    ctx.step(f"Placing {instance.name} on host {instance.host.name}")
    ctx.progress(1)
    from provisioning import rollout

    return rollout.instance_rollout(ctx, instance, first=True)
from provisioning import hosts  # noqa: F401 - registers host handlers
