"""Rolling an instance's compose project out on its host (filled in by the instances work)."""

from __future__ import annotations

from panel.operations import OperationContext, OperationFailed
from provisioning.models import AtlassianInstance


def instance_rollout(ctx: OperationContext, instance: AtlassianInstance, *, first: bool) -> dict:
    """Render, upload, start and health-check the instance's compose project."""
    raise OperationFailed(
        f"Host {instance.host.name} cannot be reached yet: the remote execution layer is not "
        "installed in this panel build."
    )
