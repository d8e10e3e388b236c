"""Writes for managed hosts: enrol, trust a host key, provision, check health.

Each starts a host operation (carried out by :mod:`provisioning.hosts.operations`). The
one-time root password is never stored in clear: :func:`host_enrol` puts it into the
operation's params encrypted with :func:`panel.crypto.encrypt`, and the ``host.connect``
handler removes it from the params before it first uses it (the abort hook removes it too if
the operation never runs).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from panel.access import Access
from panel.audit import audit_record
from panel.crypto import encrypt
from panel.operation_requests import operation_by_key, operation_conflict_check
from panel.operations import operation_start
from provisioning.models import Host, Operation, OperationKind
from provisioning.remote import keypair_generate
from provisioning.services import host_lock_key
from provisioning.validators import FINGERPRINT_RE

PASSWORD_PARAM = "root_password"  # noqa: S105 - the name of a params key, not a secret


def _password_params(root_password: str) -> dict[str, str]:
    return {PASSWORD_PARAM: encrypt(root_password)} if root_password else {}


@transaction.atomic
def host_enrol(
    *,
    actor: Access,
    name: str,
    role: str,
    address: str,
    data_root: str,
    ssh_port: int = 22,
    ssh_user: str = "root",
    private_address: str = "",
    peer_ssh_port: int | None = None,
    backup_host: Host | None = None,
    host_key_fingerprint: str = "",
    root_password: str = "",
    idempotency_key: str = "",
) -> Operation:
    """Record a new host with a fresh panel key pair and start first contact (``host.connect``).

    With ``host_key_fingerprint`` the key is pinned as soon as the host shows that key;
    otherwise an admin confirms the fingerprint seen (:func:`host_trust_key`). With
    ``root_password`` the panel installs its public key itself once the host key is pinned.
    """
    # The host row is made before the operation: a repeated request must find its operation
    # first, or the name it already took would refuse it.
    existing = operation_by_key(actor, idempotency_key, kind=OperationKind.HOST_CONNECT)
    if existing is not None:
        return existing
    errors: dict[str, str] = {}
    if backup_host is not None and role != Host.Role.APP:
        errors["backup_host"] = "Only app hosts have a backup host."
    if backup_host is not None and backup_host.role != Host.Role.BACKUP:
        errors["backup_host"] = f"{backup_host.name} is not a backup host."
    host_key_fingerprint = (host_key_fingerprint or "").strip()
    if peer_ssh_port is not None and not 1 <= int(peer_ssh_port) <= 65535:
        errors["peer_ssh_port"] = "Enter a port between 1 and 65535."
    if errors:
        raise ValidationError(errors)
    keys = keypair_generate(f"panel@{name}")
    host = Host(
        name=name,
        role=role,
        address=address,
        ssh_port=ssh_port,
        ssh_user=ssh_user,
        private_address=private_address,
        data_root=data_root,
        backup_host=backup_host,
        host_key_fingerprint=host_key_fingerprint,
        ssh_private_key=keys.private_openssh,
        ssh_public_key=keys.public_openssh,
        status=Host.Status.ENROLLED,
        facts={"peer_ssh_port": int(peer_ssh_port)} if peer_ssh_port else {},
    )
    host.full_clean()
    host.save()
    audit_record(
        actor=actor,
        action="host.enrol",
        target=host,
        changes={
            "name": name,
            "role": role,
            "address": address,
            "ssh_port": ssh_port,
            "ssh_user": ssh_user,
            "data_root": data_root,
            "private_address": private_address,
            "backup_host": backup_host.name if backup_host else None,
            "fingerprint_given": host_key_fingerprint or None,
            "one_time_password_given": bool(root_password),
            "panel_key": keys.fingerprint,
        },
    )
    return operation_start(
        kind=OperationKind.HOST_CONNECT,
        actor=actor,
        host=host,
        params={"purpose": "enrol", **_password_params(root_password)},
        lock_key=host_lock_key(host),
        idempotency_key=idempotency_key,
    )


@transaction.atomic
def host_trust_key(
    *,
    actor: Access,
    host: Host,
    fingerprint: str,
    root_password: str = "",
    idempotency_key: str = "",
) -> Operation:
    """An admin confirms the host key seen on first contact; it is pinned, then the panel logs
    in (installing its key with ``root_password`` if given) in a ``host.connect`` operation."""
    operation_conflict_check(host_lock_key(host))
    host = Host.objects.select_for_update().get(pk=host.pk)
    fingerprint = (fingerprint or "").strip()
    if not FINGERPRINT_RE.match(fingerprint):
        raise ValidationError({"fingerprint": "Enter the SHA256:… fingerprint shown for the host."})
    if not host.seen_host_key_fingerprint or not host.seen_host_key:
        raise ValidationError(
            {
                "fingerprint": f"The panel has not seen a host key of {host.name} yet; run first "
                "contact again."
            }
        )
    if fingerprint != host.seen_host_key_fingerprint:
        raise ValidationError(
            {
                "fingerprint": f"{fingerprint} is not the key {host.name} presented "
                f"({host.seen_host_key_fingerprint}). Compare it with "
                "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host."
            }
        )
    previous = host.host_key_fingerprint
    host.host_key_fingerprint = fingerprint
    host.host_key = host.seen_host_key
    if previous != fingerprint or host.status in (Host.Status.ENROLLED, Host.Status.ERROR):
        # A new key (a reinstalled host) needs a fresh provision before it is ready again.
        host.status = Host.Status.TRUSTED
        host.status_reason = ""
    host.save(update_fields=["host_key_fingerprint", "host_key", "status", "status_reason"])
    audit_record(
        actor=actor,
        action="host.trust_key",
        target=host,
        changes={"fingerprint": fingerprint, "previous": previous or None},
    )
    return operation_start(
        kind=OperationKind.HOST_CONNECT,
        actor=actor,
        host=host,
        params={"purpose": "trust", **_password_params(root_password)},
        lock_key=host_lock_key(host),
        idempotency_key=idempotency_key,
    )


def host_provision(*, actor: Access, host: Host, idempotency_key: str = "") -> Operation:
    """Start ``host.provision`` (refused with 409 while another host operation is active)."""
    operation_conflict_check(host_lock_key(host))
    if host.status == Host.Status.RETIRED:
        raise ValidationError(f"{host.name} is retired.")
    if not host.host_key_fingerprint:
        raise ValidationError(
            f"Confirm the host key of {host.name} first: the panel never logs in to a host "
            "whose key nobody has trusted."
        )
    return operation_start(
        kind=OperationKind.HOST_PROVISION,
        actor=actor,
        host=host,
        lock_key=host_lock_key(host),
        idempotency_key=idempotency_key,
    )


def host_health_check(*, actor: Access | None, host: Host, idempotency_key: str = "") -> Operation:
    """Start a ``host.health`` operation (reachable, Docker up, disk usage)."""
    if not host.host_key_fingerprint:
        raise ValidationError(f"Confirm the host key of {host.name} first.")
    return operation_start(
        kind=OperationKind.HOST_HEALTH, actor=actor, host=host, idempotency_key=idempotency_key
    )


def hosts_due_for_health() -> list[Host]:
    """Hosts the periodic health check looks at: trusted, not retired."""
    return list(
        Host.objects.exclude(status__in=[Host.Status.ENROLLED, Host.Status.RETIRED]).exclude(
            host_key_fingerprint=""
        )
    )
