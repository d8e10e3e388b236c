"""A host's health: reachable, Docker answers, disk of the data root; recorded on the host
(by the ``host.health`` operation and by the periodic check)."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from panel.operations import OperationContext, OperationFailed
from provisioning.hosts.connection import host_connection
from provisioning.hosts.fence import fences_pending, host_fence_start, host_fences_run
from provisioning.hosts.provision import disk_usage
from provisioning.hosts.state import (
    host_presented_key_remember,
    host_status_when_healthy,
    host_update,
)
from provisioning.models import Host
from provisioning.remote import CommandFailed, HostKeyMismatch, HostUnreachable, RemoteError

log = logging.getLogger(__name__)


def host_health_probe(host: Host, *, ctx: OperationContext | None = None) -> dict[str, Any]:
    """Check one host (reachable, Docker answers, disk of the data root) and record it.

    Used by the ``host.health`` operation and by the periodic task (which records no steps).
    The status moves between ready/trusted, unreachable and error only; a host being
    provisioned or retired keeps its status.
    """
    now = timezone.now()
    result: dict[str, Any] = {"reachable": False, "docker": None}
    fields: dict[str, Any] = {"last_health_at": now}
    problem: RemoteError | None = None
    fence_later = False
    try:
        with host_connection(host, ctx=ctx) as conn:
            result["reachable"] = True
            fields["last_seen_at"] = timezone.now()
            # Back after an evacuation: the old deployments are fenced before anything else
            # (inside an operation at once; the periodic check starts one for it).
            if fences_pending(host):
                if ctx is not None:
                    host_fences_run(ctx, conn, host)
                else:
                    fence_later = True
            if host.role == Host.Role.APP:
                try:
                    info = conn.run(
                        ["docker", "info", "--format", "{{.ServerVersion}}"],
                        timeout=60,
                        message="Check that Docker Engine answers",
                    )
                    result["docker"] = info.stdout.strip()
                except CommandFailed as exc:
                    result["docker"] = False
                    problem = exc
            disk = disk_usage(conn, host.data_root)
            fields.update(disk)
            result.update(disk)
    except OperationFailed as exc:
        problem = CommandFailed(str(exc))
    except RemoteError as exc:
        problem = exc
    facts = dict(host.facts or {})
    facts["health"] = {
        "checked_at": now.isoformat(),
        "reachable": result["reachable"],
        "docker": result["docker"],
        "problem": str(problem) if problem else "",
    }
    fields["facts"] = facts
    if isinstance(problem, HostKeyMismatch):
        host_presented_key_remember(host, problem)
    current = Host.objects.filter(pk=host.pk).values_list("status", flat=True).first()
    if current not in (Host.Status.PROVISIONING, Host.Status.RETIRED):
        if problem is None and fence_later:
            # Not ready until its old copies of evacuated instances are fenced.
            fields.update(
                status=Host.Status.UNREACHABLE if current == Host.Status.UNREACHABLE else current,
                status_reason="Answers again; the old copies of its evacuated instances are "
                "being fenced before it is ready.",
            )
        elif problem is None:
            if current in (
                Host.Status.UNREACHABLE,
                Host.Status.ERROR,
                Host.Status.READY,
                Host.Status.TRUSTED,
            ):
                fields.update(status=host_status_when_healthy(host), status_reason="")
        elif isinstance(problem, HostUnreachable):
            fields.update(status=Host.Status.UNREACHABLE, status_reason=str(problem))
        else:
            fields.update(status=Host.Status.ERROR, status_reason=str(problem))
    host_update(host, **fields)
    if fence_later:
        host_fence_start(host)
    result["status"] = host.status
    result["problem"] = str(problem) if problem else ""
    result["disk_warning"] = host.disk_warning
    return result


def host_health_probe_by_id(host_id: Any) -> dict[str, Any] | None:
    """Entry point of the periodic task: probe one host by primary key (if it still exists)."""
    host = Host.objects.select_related("backup_host").filter(pk=host_id).first()
    if host is None or host.status == Host.Status.RETIRED or not host.host_key_fingerprint:
        return None
    try:
        return host_health_probe(host)
    except Exception:  # one broken host must not stop the periodic check
        log.exception("health check of host %s crashed", host_id)
        return None
