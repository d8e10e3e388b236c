"""Fencing a host that comes back after its instances were evacuated (restored elsewhere).

While a host is away its customers' instances are brought back on other hosts from their
backups (``backups.evacuate``). Each move leaves an :class:`~provisioning.models.EvacuatedCopy`
of the old deployment on the away host. When that host answers again, its old containers must
never serve, write or back up again: before the host is marked ready, every pending copy's
containers are stopped with their restart policy turned off, and its directory is moved out of
``instances/`` (so nothing of the panel's, such as the WAL shipper, treats it as live), kept
aside under ``<data root>/evacuated/`` until staff purge it.

The containers are found by their compose project *and* working directory labels, so a
container of the instance's new deployment (another project name, another directory) is never
touched, even where two hosts share one Docker engine (the lab).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from panel.access import Access
from panel.audit import audit_record
from panel.operations import OperationContext, OperationFailed, operation_handler, operation_start
from panel.registry import registry
from provisioning.hosts.connection import host_connection
from provisioning.models import EvacuatedCopy, Host, Operation, OperationKind
from provisioning.remote import HostConnection, RemoteError

# Runs on the host. Arguments: compose project, its directory, where to keep it. Prints the ids
# of the containers it stopped, then "kept" if the directory was moved.
_FENCE_SCRIPT = r"""
set -eu
project="$1"; dir="$2"; aside="$3"
if [ -n "$dir" ]; then
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.project.working_dir=$dir")
else  # a failed evacuation's deployment: its project is its own
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
fi
if [ -n "$ids" ]; then
  docker update --restart=no $ids >/dev/null
  docker stop --time 10 $ids >/dev/null
  echo $ids
fi
if [ -n "$dir" ] && [ -d "$dir" ]; then
  mkdir -p "${aside%/*}"
  mv "$dir" "$aside"
  echo kept
fi
"""

# Runs on the host. Arguments: compose project, its original directory, the kept directory.
_PURGE_SCRIPT = r"""
set -eu
project="$1"; dir="$2"; kept="$3"
if [ -n "$dir" ]; then
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.project.working_dir=$dir")
else
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
fi
if [ -n "$ids" ]; then docker rm --force --volumes $ids >/dev/null; fi
for net in $(docker network ls -q --filter "label=com.docker.compose.project=$project"); do
  docker network rm "$net" >/dev/null 2>&1 || true
done
if [ -n "$kept" ] && [ -d "$kept" ]; then rm -rf --one-file-system "$kept"; fi
"""


def fences_pending(host: Host) -> list[EvacuatedCopy]:
    """The old deployments on ``host`` that still wait to be fenced."""
    return list(EvacuatedCopy.objects.filter(host=host, status=EvacuatedCopy.Status.PENDING))


def _aside(host: Host, copy: EvacuatedCopy) -> str:
    return f"{host.data_root}/evacuated/{copy.instance_name}-{copy.evacuated_at:%Y%m%dT%H%M%S}"


def host_fences_run(ctx: OperationContext | None, conn: HostConnection, host: Host) -> int:
    """Fence every pending old deployment on ``host`` over ``conn``; returns how many."""
    done = 0
    for copy in fences_pending(host):
        aside = _aside(host, copy)
        result = conn.run(
            ["sh", "-c", _FENCE_SCRIPT, "sh", copy.project, copy.directory, aside],
            timeout=180,
            message=f"Fenced the old deployment of {copy.instance_name} (evacuated)",
        )
        words = result.stdout.split()
        stopped = [w for w in words if w != "kept"]
        # e.g. the old proxy site and certificate file (certificates): nothing of the old
        # deployment is served, and its key does not stay on a host it left. Before the record
        # is marked fenced, so a failure here is retried with the next fence.
        for hook in registry["host_hooks"]["fence"]:
            hook(conn, host, copy)
        # Only the first of two concurrent fences records it (the second found nothing left).
        EvacuatedCopy.objects.filter(pk=copy.pk, status=EvacuatedCopy.Status.PENDING).update(
            status=EvacuatedCopy.Status.FENCED,
            fenced_at=timezone.now(),
            kept_at=aside if "kept" in words else "",
            detail=f"Stopped {len(stopped)} container(s); restart policy off."
            + (f" Kept aside at {aside}." if "kept" in words else " No directory was left."),
        )
        if ctx is not None:
            kept = f"kept its directory aside at {aside}" if "kept" in words else "no directory"
            ctx.step(
                f"{copy.instance_name}: stopped {len(stopped)} old container(s) (they never "
                f"restart); {kept}"
            )
        audit_record(
            actor=None,
            action="host.fence",
            target=host,
            changes={"instance": copy.instance_name, "containers": len(stopped), "kept_at": aside},
        )
        done += 1
    return done


def host_fence_start(host: Host) -> Operation | None:
    """Start the fence of ``host`` (the periodic health check found it back with copies to
    fence); ``None`` when an operation already holds the host."""
    from panel.operations import OperationConflict

    try:
        # A lock of its own: a host that comes back while it is being evacuated (which holds
        # the host) is fenced at once, not after the evacuation.
        return operation_start(
            kind=OperationKind.HOST_FENCE,
            actor=None,
            host=host,
            lock_key=f"fence:{host.pk}",
        )
    except OperationConflict:
        return None


@operation_handler(OperationKind.HOST_FENCE)
def host_fence_run(ctx: OperationContext) -> dict:
    """Fence the host's old deployments of evacuated instances, then check it (ready again)."""
    from provisioning.hosts.health import host_health_probe

    host = Host.objects.select_related("backup_host").get(pk=ctx.operation.host_id)
    try:
        with host_connection(host, ctx=ctx) as conn:
            fenced = host_fences_run(ctx, conn, host)
    except RemoteError as exc:
        raise OperationFailed(f"{host.name} could not be fenced: {exc}") from exc
    result = host_health_probe(host, ctx=ctx)
    return {"fenced": fenced, "status": result["status"]}


def fenced_copies_purge_start(*, actor: Access, host: Host) -> Operation:
    """Remove the kept-aside old deployments on ``host`` (containers, networks, directories).
    Platform admins; the data of the instances lives on in their new deployments."""
    from django.core.exceptions import PermissionDenied, ValidationError

    from provisioning.services import host_lock_key

    if not (actor.is_platform_admin and actor.can_write):
        raise PermissionDenied("Only platform admins purge fenced copies.")
    if not EvacuatedCopy.objects.filter(host=host, status=EvacuatedCopy.Status.FENCED).exists():
        raise ValidationError(f"{host.name} keeps no fenced copies.")
    return operation_start(
        kind=OperationKind.HOST_FENCE_PURGE,
        actor=actor,
        host=host,
        lock_key=host_lock_key(host),
    )


@operation_handler(OperationKind.HOST_FENCE_PURGE)
def host_fence_purge_run(ctx: OperationContext) -> dict[str, Any]:
    """Purge every fenced copy on the host."""
    host = Host.objects.get(pk=ctx.operation.host_id)
    purged = []
    try:
        with host_connection(host, ctx=ctx) as conn:
            for copy in EvacuatedCopy.objects.filter(host=host, status=EvacuatedCopy.Status.FENCED):
                conn.run(
                    ["sh", "-c", _PURGE_SCRIPT, "sh", copy.project, copy.directory, copy.kept_at],
                    timeout=300,
                    message=f"Purged the fenced copy of {copy.instance_name}",
                )
                EvacuatedCopy.objects.filter(pk=copy.pk).update(
                    status=EvacuatedCopy.Status.PURGED, purged_at=timezone.now()
                )
                purged.append(copy.instance_name)
    except RemoteError as exc:
        raise OperationFailed(f"The fenced copies on {host.name} were not purged: {exc}") from exc
    return {"purged": purged}
