"""A host's recorded state as its operations change it (shared by the handlers and the
health probe)."""

from __future__ import annotations

from typing import Any

from panel.crypto import decrypt
from panel.operations import OperationContext, OperationFailed
from provisioning.hosts.services import PASSWORD_PARAM
from provisioning.models import Host, Operation
from provisioning.remote import HostKeyMismatch, HostUnreachable, RemoteError


def host_update(host: Host, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(host, name, value)
    Host.objects.filter(pk=host.pk).update(**fields)


def host_of_operation(ctx: OperationContext) -> Host:
    if ctx.operation.host_id is None:
        raise OperationFailed("This operation has no host.")
    return Host.objects.select_related("backup_host").get(pk=ctx.operation.host_id)


def host_password_take(ctx: OperationContext) -> str:
    """Decrypt the one-time password from the params and erase it there at once."""
    token = (ctx.operation.params or {}).get(PASSWORD_PARAM)
    host_password_erase(ctx.operation)
    if not token:
        return ""
    try:
        password = decrypt(token)
    except ValueError:
        raise OperationFailed(
            "The one-time password could not be decrypted (the encryption keys changed); "
            "enter it again."
        ) from None
    ctx.add_secrets([password])
    return password


def host_password_erase(operation: Any) -> None:
    params = dict(
        Operation.objects.filter(pk=operation.pk).values_list("params", flat=True).first() or {}
    )
    if PASSWORD_PARAM in params:
        params.pop(PASSWORD_PARAM)
        Operation.objects.filter(pk=operation.pk).update(params=params)
    if isinstance(getattr(operation, "params", None), dict):
        operation.params.pop(PASSWORD_PARAM, None)


def host_status_when_healthy(host: Host) -> str:
    if (host.facts or {}).get("provisioned"):
        return Host.Status.READY
    return Host.Status.TRUSTED if host.host_key_fingerprint else Host.Status.ENROLLED


def host_presented_key_remember(host: Host, exc: HostKeyMismatch) -> None:
    fields: dict[str, Any] = {"seen_host_key_fingerprint": exc.presented}
    if exc.presented_openssh:
        fields["seen_host_key"] = exc.presented_openssh
    host_update(host, **fields)


def host_failure(host: Host, exc: RemoteError, *, status: str | None = None) -> OperationFailed:
    """Put ``host`` in the state the error means and return the error to raise."""
    if isinstance(exc, HostUnreachable):
        status = status or Host.Status.UNREACHABLE
    else:
        status = status or Host.Status.ERROR
    if isinstance(exc, HostKeyMismatch):
        host_presented_key_remember(host, exc)
    host_update(host, status=status, status_reason=str(exc))
    return OperationFailed(str(exc))
