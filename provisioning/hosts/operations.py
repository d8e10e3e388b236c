"""Handlers of the host operations: ``host.connect`` (first contact: see and pin the host
key, install the panel's key), ``host.provision`` and ``host.health``. Every remote step
goes through :mod:`provisioning.remote`, pinned to the host's key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from panel.operations import OperationContext, OperationFailed, operation_handler
from provisioning.hosts.connection import host_connection
from provisioning.hosts.fence import host_fences_run
from provisioning.hosts.health import host_health_probe
from provisioning.hosts.provision import HOST_LAYOUT, Provisioner
from provisioning.hosts.state import (
    host_failure,
    host_of_operation,
    host_password_erase,
    host_password_take,
    host_status_when_healthy,
    host_update,
)
from provisioning.models import Host, OperationKind
from provisioning.remote import (
    CommandFailed,
    HostAuthFailed,
    HostKeyMismatch,
    HostUnreachable,
    RemoteError,
    host_key_scan,
)

_INSTALL_KEY_SCRIPT = (
    'set -e; umask 077; mkdir -p "$HOME/.ssh"; f="$HOME/.ssh/authorized_keys"; touch "$f"; '
    'if grep -qxF "$1" "$f"; then echo present; else printf "%s\\n" "$1" >> "$f"; echo added; fi'
)


def host_abort(operation: Any, reason: str) -> None:
    """After a failed, cancelled or reaped host operation: no password left, host not busy."""
    host_password_erase(operation)
    if operation.host_id is None:
        return
    Host.objects.filter(pk=operation.host_id, status=Host.Status.PROVISIONING).update(
        status=Host.Status.ERROR, status_reason=reason
    )


@operation_handler(OperationKind.HOST_CONNECT, on_abort=host_abort)
def host_connect_run(ctx: OperationContext) -> dict:
    """First contact: see the host key, pin it if it was confirmed, install the panel's key."""
    password = host_password_take(ctx)
    host = host_of_operation(ctx)
    ctx.progress(0, 3)
    try:
        scanned = host_key_scan(host.address, host.ssh_port, label=host.name)
    except HostUnreachable as exc:
        raise host_failure(host, exc) from None
    ctx.step(f"{host.name} presented host key {scanned.key_type} {scanned.fingerprint}")
    host_update(
        host,
        seen_host_key_fingerprint=scanned.fingerprint,
        seen_host_key=scanned.openssh,
        last_seen_at=timezone.now(),
    )
    ctx.progress(1)
    if host.host_key_fingerprint and host.host_key_fingerprint != scanned.fingerprint:
        label = f"{host.name} ({host.address}:{host.ssh_port})"
        raise host_failure(
            host,
            HostKeyMismatch(label, host.host_key_fingerprint, scanned.fingerprint, scanned.openssh),
        )
    if not host.host_key_fingerprint:
        reason = (
            f"Waiting for an administrator to confirm host key {scanned.fingerprint} "
            "(compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the "
            "host)."
        )
        host_update(host, status=Host.Status.ENROLLED, status_reason=reason)
        ctx.step(reason, level="warning")
        return {
            "trusted": False,
            "seen_host_key_fingerprint": scanned.fingerprint,
            "key_installed": False,
        }
    if host.host_key != scanned.openssh:
        host_update(host, host_key=scanned.openssh)
        ctx.step(f"Pinned host key {scanned.fingerprint} (it matches the confirmed fingerprint)")
    if host.status in (Host.Status.ENROLLED, Host.Status.UNREACHABLE, Host.Status.ERROR):
        host_update(host, status=host_status_when_healthy(host), status_reason="")
    ctx.progress(2)
    key_installed = False
    try:
        if password:
            with host_connection(host, ctx=ctx, password=password) as conn:
                out = conn.run(
                    ["sh", "-c", _INSTALL_KEY_SCRIPT, "panel-install-key", host.ssh_public_key],
                    message="Install the panel's public key in authorized_keys",
                )
            ctx.step(
                "The panel's key was "
                + ("already installed" if "present" in out.stdout else "installed")
                + "; the password is forgotten"
            )
        with host_connection(host, ctx=ctx) as conn:
            conn.run(["true"], message="Log in with the panel's key")
        key_installed = True
    except HostAuthFailed as exc:
        if password:
            raise host_failure(host, exc) from None
        reason = (
            f"Install the panel's public key for {host.ssh_user} on {host.name} "
            f"(~/.ssh/authorized_keys), then provision: {host.ssh_public_key}"
        )
        host_update(host, status_reason=reason)
        ctx.step(reason, level="warning")
    except (HostUnreachable, HostKeyMismatch, CommandFailed) as exc:
        raise host_failure(host, exc) from None
    if key_installed:
        host_update(
            host,
            last_seen_at=timezone.now(),
            status_reason="" if host.status != Host.Status.READY else host.status_reason,
        )
    return {
        "trusted": True,
        "host_key_fingerprint": host.host_key_fingerprint,
        "key_installed": key_installed,
    }


@operation_handler(OperationKind.HOST_PROVISION, on_abort=host_abort)
def host_provision_run(ctx: OperationContext) -> dict:
    """Prepare a host for its role; running it again on a ready host changes nothing."""
    host = host_of_operation(ctx)
    was = host.status
    facts = dict(host.facts or {})
    host_update(host, status=Host.Status.PROVISIONING, status_reason="")
    total = 7 if host.role == Host.Role.APP else 5
    ctx.progress(0, total)
    try:
        with host_connection(host, ctx=ctx) as conn:
            p = Provisioner(ctx=ctx, host=host, conn=conn)
            p.check_platform()
            ctx.progress(1)
            if host.role == Host.Role.APP:
                p.ensure_docker()
                p.ensure_compose()
                ctx.progress(3)
                p.ensure_layout(HOST_LAYOUT[Host.Role.APP])
                p.ensure_proxy_network()
                ctx.progress(5)
                p.record_capacity()
                if host.backup_host is not None:
                    p.ensure_backup_access()
                # A host provisioned again after an evacuation: old copies first.
                host_fences_run(ctx, conn, host)
            else:
                p.ensure_backup_host_tools()
                ctx.progress(2)
                p.ensure_layout(HOST_LAYOUT[Host.Role.BACKUP])
                ctx.progress(3)
                p.record_capacity()
            ctx.check_cancelled()
    except RemoteError as exc:
        raise host_failure(host, exc) from None
    now = timezone.now()
    facts.update(p.facts)
    facts.update(
        provisioned=True,
        provisioned_at=facts.get("provisioned_at") or now.isoformat(),
        last_provision_at=now.isoformat(),
    )
    host_update(
        host,
        status=Host.Status.READY,
        status_reason="",
        facts=facts,
        cpu_count=p.facts.get("cpu_count"),
        memory_mb=p.facts.get("memory_mb"),
        disk_total_bytes=p.facts.get("disk_total_bytes"),
        disk_free_bytes=p.facts.get("disk_free_bytes"),
        last_seen_at=now,
        last_health_at=now,
    )
    if p.changes:
        message = f"Provisioned {host.name}: {len(p.changes)} change(s)"
        ctx.step(message, output="\n".join(p.changes))
    else:
        message = (
            f"{host.name} is already provisioned, nothing changed"
            if was == Host.Status.READY
            else f"{host.name} already had everything it needs, nothing changed"
        )
        ctx.step(message)
    if host.disk_warning:
        ctx.step(f"Disk of {host.data_root} is {host.disk_used_percent}% full", level="warning")
    return {"changed": p.changes, "message": message, "facts": p.facts}


@operation_handler(OperationKind.HOST_HEALTH)
def host_health_run(ctx: OperationContext) -> dict:
    """The ``host.health`` operation: :func:`host_health_probe` with its steps recorded."""
    host = host_of_operation(ctx)
    result = host_health_probe(host, ctx=ctx)
    if result["problem"]:
        raise OperationFailed(result["problem"])
    message = f"{host.name} is healthy"
    if host.disk_used_percent is not None:
        message += f"; disk {host.disk_used_percent}% used"
    ctx.step(message, level="warning" if host.disk_warning else "info")
    if host.disk_warning:
        ctx.step(
            f"Disk of {host.data_root} is above {settings.PANEL_HOST_DISK_WARNING_PERCENT}% used",
            level="warning",
        )
    return result
