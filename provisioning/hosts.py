"""Managed hosts: enrol, trust a host key, provision, health; services and operation handlers.

The flow is enrol -> first contact (``host.connect``: fetch the host key without logging in) ->
an admin trusts the key (or it matched the fingerprint given up front) -> the panel's key is
installed (with a one-time password) -> ``host.provision`` -> ready. Every remote step goes
through :mod:`provisioning.remote`, pinned to the host's key.

The one-time root password is never stored in clear: :func:`host_enrol` puts it into the
operation's params encrypted with :func:`panel.crypto.encrypt`, and the ``host.connect``
handler removes it from the params before it first uses it (the abort hook removes it too if
the operation never runs). It is therefore on disk only encrypted and only until the worker picks
the operation up; it is never part of a Celery message (tasks carry only the operation id).
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from panel.access import Access
from panel.audit import audit_record
from panel.crypto import decrypt, encrypt
from panel.operation_requests import operation_by_key, operation_conflict_check
from panel.operations import OperationContext, OperationFailed, operation_handler, operation_start
from provisioning.models import Host, Operation, OperationKind
from provisioning.remote import (
    CommandFailed,
    HostAuthFailed,
    HostConnection,
    HostKeyMismatch,
    HostUnreachable,
    RemoteError,
    SSHTarget,
    fingerprint_of_line,
    host_key_scan,
    keypair_generate,
)
from provisioning.services import host_lock_key
from provisioning.validators import FINGERPRINT_RE

log = logging.getLogger(__name__)

# The Docker network of the host's reverse proxy. Instances do not join it (each has its own
# edge network shared only with the proxy), and it has inter-container traffic off.
PROXY_NETWORK = "panel-proxy"
PROXY_NETWORK_OPTIONS = {"com.docker.network.bridge.enable_icc": "false"}
# Directories under a host's data root, created by provisioning (parents first).
HOST_LAYOUT: dict[str, tuple[str, ...]] = {
    Host.Role.APP: ("instances", "proxy", "proxy/conf.d", "proxy/certs", ".ssh"),
    Host.Role.BACKUP: ("hosts", "snapshots", "rsnapshot"),
}
SUPPORTED_ARCHES = {"x86_64", "aarch64"}
DEBIAN_FAMILY = {"debian", "ubuntu"}
# The app host's own key for pushing backups (under its data root, so it survives rebuilds).
BACKUP_KEY = ".ssh/backup_ed25519"
BACKUP_KNOWN_HOSTS = ".ssh/known_hosts_backup"
# The forced command of every app host's backup key on a backup host (see
# backup_access_line): pulls (rsync --sender) go to a read-only rrsync on the host's points,
# everything else to a write-only rrsync on its incoming area, with --ignore-existing forced so
# no session can change a file that already exists there (the base copy shares its inodes with
# committed points). Each rrsync checks the command itself; this only picks which one.
BACKUP_FORCED_COMMAND = "/usr/local/sbin/panel-backup-rsync"
BACKUP_FORCED_SCRIPT = """#!/bin/sh
# Installed by the panel: forced command of app hosts' backup keys (authorized_keys).
# Usage: panel-backup-rsync RRSYNC READ_ROOT WRITE_ROOT
set -eu
rrsync="$1"; read_root="$2"; write_root="$3"
case "${SSH_ORIGINAL_COMMAND:-}" in
  "rsync --server --sender "*)
    exec "$rrsync" -ro -munge "$read_root" ;;
  "rsync --server "*)
    SSH_ORIGINAL_COMMAND="rsync --server --ignore-existing ${SSH_ORIGINAL_COMMAND#rsync --server }"
    export SSH_ORIGINAL_COMMAND
    exec "$rrsync" -wo -munge "$write_root" ;;
  *)
    echo "panel-backup-rsync: only rsync to or from the backup area is allowed" >&2
    exit 1 ;;
esac
"""
# What rrsync says when another transfer into the same directory holds its lock.
RRSYNC_BUSY = "Another instance of rrsync is already accessing this directory"
PASSWORD_PARAM = "root_password"  # noqa: S105 - the name of a params key, not a secret

_INSTALL_KEY_SCRIPT = (
    'set -e; umask 077; mkdir -p "$HOME/.ssh"; f="$HOME/.ssh/authorized_keys"; touch "$f"; '
    'if grep -qxF "$1" "$f"; then echo present; else printf "%s\\n" "$1" >> "$f"; echo added; fi'
)


# --- helpers other apps use ---------------------------------------------------------------


def host_connection(host: Host, *, ctx: OperationContext | None = None,
                    password: str = "") -> HostConnection:
    """An (unopened) pinned connection to ``host``; use it as a context manager."""
    return HostConnection(SSHTarget.for_host(host, password=password), ctx=ctx)


def host_peer_ssh_port(host: Host) -> int:
    """The SSH port other managed hosts use to reach ``host`` at its private address.

    Host has no field for it yet: an admin may give ``peer_ssh_port`` at enrolment (kept in
    ``facts``); otherwise the same port as the panel uses.
    """
    return int((host.facts or {}).get("peer_ssh_port") or host.ssh_port)


def host_backup_dir(app_host: Host) -> str:
    """Where ``app_host`` pushes its backups on its backup host (its restricted rsync root)."""
    if app_host.backup_host is None:
        raise ValueError(f"{app_host.name} has no backup host")
    return f"{app_host.backup_host.data_root}/hosts/{app_host.name}"


def host_backup_push_dir(app_host: Host) -> str:
    """The app host's incoming area on its backup host: its write-only rsync root. Committed
    points live outside it (in :func:`host_backup_dir`), where only the panel writes."""
    if app_host.backup_host is None:
        raise ValueError(f"{app_host.name} has no backup host")
    return f"{app_host.backup_host.data_root}/incoming/{app_host.name}"


def backup_access_line(app_host: Host, *, rrsync: str, sources: list[str],
                       public_key: str) -> str:
    """The ``authorized_keys`` line of ``app_host``'s backup key on its backup host.

    ``restrict`` (no pty, forwarding or agent), ``from=`` the app host's own addresses, and a
    forced command that runs rrsync read-only on the host's points or write-only (with
    ``--ignore-existing``) into its incoming area, both with ``-munge`` so a pushed symlink
    leads nowhere on the backup host.
    """
    read_root, write_root = host_backup_dir(app_host), host_backup_push_dir(app_host)
    for value in (rrsync, read_root, write_root, *sources):
        if not re.fullmatch(r"[A-Za-z0-9._:/@%-]+", value):
            raise OperationFailed(f"Refusing an unusual path or address in authorized_keys: "
                                  f"{value!r}")
    command = " ".join([BACKUP_FORCED_COMMAND, rrsync, read_root, write_root])
    return (f'restrict,from="{",".join(sources)}",command="{command}" {public_key} '
            f"panel-backup@{app_host.name}")


def _peer_addresses(bconn: HostConnection, app_host: Host) -> list[str]:
    """The addresses ``app_host`` connects from, as its backup host resolves its peer name."""
    name = app_host.peer_address
    out = bconn.run(["getent", "ahosts", name], ok_codes=range(256),
                    message=f"Resolve {name} on the backup host").stdout
    found = sorted({line.split()[0] for line in out.splitlines() if line.split()})
    if not found:
        raise OperationFailed(
            f"The backup host cannot resolve {name}, the address {app_host.name} connects "
            "from; its backup key is only accepted from there."
        )
    return found


def host_backup_ssh_argv(app_host: Host) -> list[str]:
    """The ``ssh`` command (run on ``app_host``) that reaches its backup host with the app host's
    restricted key and the backup host's pinned key; give it to ``rsync -e``."""
    backup = app_host.backup_host
    if backup is None:
        raise ValueError(f"{app_host.name} has no backup host")
    root = app_host.data_root
    return [
        "ssh", "-i", f"{root}/{BACKUP_KEY}", "-p", str(host_peer_ssh_port(backup)),
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={root}/{BACKUP_KNOWN_HOSTS}",
        "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
    ]


def host_backup_rsync_destination(app_host: Host, path: str = "") -> str:
    """``user@peer:path`` for rsync; ``path`` is relative to :func:`host_backup_dir`."""
    backup = app_host.backup_host
    if backup is None:
        raise ValueError(f"{app_host.name} has no backup host")
    return f"{backup.ssh_user}@{backup.peer_address}:{path}"


# --- services -----------------------------------------------------------------------------


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
        name=name, role=role, address=address, ssh_port=ssh_port, ssh_user=ssh_user,
        private_address=private_address, data_root=data_root, backup_host=backup_host,
        host_key_fingerprint=host_key_fingerprint, ssh_private_key=keys.private_openssh,
        ssh_public_key=keys.public_openssh, status=Host.Status.ENROLLED,
        facts={"peer_ssh_port": int(peer_ssh_port)} if peer_ssh_port else {},
    )
    host.full_clean()
    host.save()
    audit_record(
        actor=actor, action="host.enrol", target=host,
        changes={"name": name, "role": role, "address": address, "ssh_port": ssh_port,
                 "ssh_user": ssh_user, "data_root": data_root,
                 "private_address": private_address,
                 "backup_host": backup_host.name if backup_host else None,
                 "fingerprint_given": host_key_fingerprint or None,
                 "one_time_password_given": bool(root_password),
                 "panel_key": keys.fingerprint},
    )
    return operation_start(
        kind=OperationKind.HOST_CONNECT, actor=actor, host=host,
        params={"purpose": "enrol", **_password_params(root_password)},
        lock_key=host_lock_key(host), idempotency_key=idempotency_key,
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
            {"fingerprint": f"The panel has not seen a host key of {host.name} yet; run first "
                            "contact again."}
        )
    if fingerprint != host.seen_host_key_fingerprint:
        raise ValidationError(
            {"fingerprint": f"{fingerprint} is not the key {host.name} presented "
                            f"({host.seen_host_key_fingerprint}). Compare it with "
                            "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host."}
        )
    previous = host.host_key_fingerprint
    host.host_key_fingerprint = fingerprint
    host.host_key = host.seen_host_key
    if previous != fingerprint or host.status in (Host.Status.ENROLLED, Host.Status.ERROR):
        # A new key (a reinstalled host) needs a fresh provision before it is ready again.
        host.status = Host.Status.TRUSTED
        host.status_reason = ""
    host.save(update_fields=["host_key_fingerprint", "host_key", "status", "status_reason"])
    audit_record(actor=actor, action="host.trust_key", target=host,
                 changes={"fingerprint": fingerprint, "previous": previous or None})
    return operation_start(
        kind=OperationKind.HOST_CONNECT, actor=actor, host=host,
        params={"purpose": "trust", **_password_params(root_password)},
        lock_key=host_lock_key(host), idempotency_key=idempotency_key,
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
        kind=OperationKind.HOST_PROVISION, actor=actor, host=host,
        lock_key=host_lock_key(host), idempotency_key=idempotency_key,
    )


def host_health_check(*, actor: Access | None, host: Host, idempotency_key: str = ""
                      ) -> Operation:
    """Start a ``host.health`` operation (reachable, Docker up, disk usage)."""
    if not host.host_key_fingerprint:
        raise ValidationError(f"Confirm the host key of {host.name} first.")
    return operation_start(kind=OperationKind.HOST_HEALTH, actor=actor, host=host,
                           idempotency_key=idempotency_key)


def hosts_due_for_health() -> list[Host]:
    """Hosts the periodic health check looks at: trusted, not retired."""
    return list(
        Host.objects.exclude(status__in=[Host.Status.ENROLLED, Host.Status.RETIRED])
        .exclude(host_key_fingerprint="")
    )


# --- state helpers ------------------------------------------------------------------------


def _host_update(host: Host, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(host, name, value)
    Host.objects.filter(pk=host.pk).update(**fields)


def _host_of(ctx: OperationContext) -> Host:
    if ctx.operation.host_id is None:
        raise OperationFailed("This operation has no host.")
    return Host.objects.select_related("backup_host").get(pk=ctx.operation.host_id)


def _password_take(ctx: OperationContext) -> str:
    """Decrypt the one-time password from the params and erase it there at once."""
    token = (ctx.operation.params or {}).get(PASSWORD_PARAM)
    _password_erase(ctx.operation)
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


def _password_erase(operation: Any) -> None:
    params = dict(Operation.objects.filter(pk=operation.pk).values_list("params", flat=True)
                  .first() or {})
    if PASSWORD_PARAM in params:
        params.pop(PASSWORD_PARAM)
        Operation.objects.filter(pk=operation.pk).update(params=params)
    if isinstance(getattr(operation, "params", None), dict):
        operation.params.pop(PASSWORD_PARAM, None)


def _status_when_healthy(host: Host) -> str:
    if (host.facts or {}).get("provisioned"):
        return Host.Status.READY
    return Host.Status.TRUSTED if host.host_key_fingerprint else Host.Status.ENROLLED


def _remember_presented_key(host: Host, exc: HostKeyMismatch) -> None:
    fields: dict[str, Any] = {"seen_host_key_fingerprint": exc.presented}
    if exc.presented_openssh:
        fields["seen_host_key"] = exc.presented_openssh
    _host_update(host, **fields)


def _fail(host: Host, exc: RemoteError, *, status: str | None = None) -> OperationFailed:
    """Put ``host`` in the state the error means and return the error to raise."""
    if isinstance(exc, HostUnreachable):
        status = status or Host.Status.UNREACHABLE
    else:
        status = status or Host.Status.ERROR
    if isinstance(exc, HostKeyMismatch):
        _remember_presented_key(host, exc)
    _host_update(host, status=status, status_reason=str(exc))
    return OperationFailed(str(exc))


def host_abort(operation: Any, reason: str) -> None:
    """After a failed, cancelled or reaped host operation: no password left, host not busy."""
    _password_erase(operation)
    if operation.host_id is None:
        return
    Host.objects.filter(pk=operation.host_id, status=Host.Status.PROVISIONING).update(
        status=Host.Status.ERROR, status_reason=reason
    )


# --- host.connect ---------------------------------------------------------------------------


@operation_handler(OperationKind.HOST_CONNECT, on_abort=host_abort)
def host_connect_run(ctx: OperationContext) -> dict:
    """First contact: see the host key, pin it if it was confirmed, install the panel's key."""
    password = _password_take(ctx)
    host = _host_of(ctx)
    ctx.progress(0, 3)
    try:
        scanned = host_key_scan(host.address, host.ssh_port, label=host.name)
    except HostUnreachable as exc:
        raise _fail(host, exc) from None
    ctx.step(f"{host.name} presented host key {scanned.key_type} {scanned.fingerprint}")
    _host_update(host, seen_host_key_fingerprint=scanned.fingerprint,
                 seen_host_key=scanned.openssh, last_seen_at=timezone.now())
    ctx.progress(1)
    if host.host_key_fingerprint and host.host_key_fingerprint != scanned.fingerprint:
        label = f"{host.name} ({host.address}:{host.ssh_port})"
        raise _fail(host, HostKeyMismatch(label, host.host_key_fingerprint, scanned.fingerprint,
                                          scanned.openssh))
    if not host.host_key_fingerprint:
        reason = (f"Waiting for an administrator to confirm host key {scanned.fingerprint} "
                  "(compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the "
                  "host).")
        _host_update(host, status=Host.Status.ENROLLED, status_reason=reason)
        ctx.step(reason, level="warning")
        return {"trusted": False, "seen_host_key_fingerprint": scanned.fingerprint,
                "key_installed": False}
    if host.host_key != scanned.openssh:
        _host_update(host, host_key=scanned.openssh)
        ctx.step(f"Pinned host key {scanned.fingerprint} (it matches the confirmed fingerprint)")
    if host.status in (Host.Status.ENROLLED, Host.Status.UNREACHABLE, Host.Status.ERROR):
        _host_update(host, status=_status_when_healthy(host), status_reason="")
    ctx.progress(2)
    key_installed = False
    try:
        if password:
            with host_connection(host, ctx=ctx, password=password) as conn:
                out = conn.run(["sh", "-c", _INSTALL_KEY_SCRIPT, "panel-install-key",
                                host.ssh_public_key],
                               message="Install the panel's public key in authorized_keys")
            ctx.step("The panel's key was " + ("already installed" if "present" in out.stdout
                                               else "installed") + "; the password is forgotten")
        with host_connection(host, ctx=ctx) as conn:
            conn.run(["true"], message="Log in with the panel's key")
        key_installed = True
    except HostAuthFailed as exc:
        if password:
            raise _fail(host, exc) from None
        reason = (f"Install the panel's public key for {host.ssh_user} on {host.name} "
                  f"(~/.ssh/authorized_keys), then provision: {host.ssh_public_key}")
        _host_update(host, status_reason=reason)
        ctx.step(reason, level="warning")
    except (HostUnreachable, HostKeyMismatch, CommandFailed) as exc:
        raise _fail(host, exc) from None
    if key_installed:
        _host_update(host, last_seen_at=timezone.now(),
                     status_reason="" if host.status != Host.Status.READY else host.status_reason)
    return {"trusted": True, "host_key_fingerprint": host.host_key_fingerprint,
            "key_installed": key_installed}


# --- host.provision -------------------------------------------------------------------------


@dataclass
class _Provisioner:
    """The steps of ``host.provision`` on one host; ``changes`` lists what it altered."""

    ctx: OperationContext
    host: Host
    conn: HostConnection
    changes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    os_id: str = ""
    _apt_updated: bool = False

    @property
    def sudo(self) -> list[str]:
        return [] if self.host.ssh_user == "root" else ["sudo", "-n"]

    def path(self, rel: str = "") -> str:
        return f"{self.host.data_root}/{rel}" if rel else self.host.data_root

    # platform

    def check_platform(self) -> None:
        arch = self.conn.run(["uname", "-m"], message="Check the CPU architecture").stdout.strip()
        if arch not in SUPPORTED_ARCHES:
            supported = ", ".join(sorted(SUPPORTED_ARCHES))
            raise OperationFailed(f"{self.host.name} is {arch}; the panel supports {supported}.")
        kernel = self.conn.run(["uname", "-r"], message="Check the kernel").stdout.strip()
        release = _parse_os_release(
            (self.conn.read("/etc/os-release", missing_ok=True, record=True) or b"").decode()
        )
        self.os_id = release.get("ID", "")
        family = {self.os_id, *release.get("ID_LIKE", "").split()}
        self.facts.update(
            arch=arch, kernel=kernel, os=release.get("PRETTY_NAME", "unknown"),
            os_id=self.os_id, os_version=release.get("VERSION_ID", ""),
            os_family="debian" if family & DEBIAN_FAMILY else self.os_id,
        )
        self.ctx.step(f"{self.host.name} runs {self.facts['os']} on {arch}, kernel {kernel}")

    @property
    def debian_like(self) -> bool:
        return self.facts.get("os_family") == "debian"

    def apt_install(self, packages: list[str], why: str) -> None:
        if not self.debian_like:
            raise OperationFailed(
                f"{why} is missing on {self.host.name} and the panel installs packages only on "
                f"Debian and Ubuntu ({self.facts.get('os')}); install it, then provision again."
            )
        env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        if not self._apt_updated:
            self.conn.run([*self.sudo, *env, "apt-get", "update", "-q"], timeout=600,
                          message="Refresh the package lists")
            self._apt_updated = True
        self.conn.run([*self.sudo, *env, "apt-get", "install", "-y", "-q",
                       "--no-install-recommends", *packages], timeout=1200,
                      message=f"Install {' '.join(packages)}")
        self.changes.append(f"installed {' '.join(packages)}")

    def apt_candidate(self, package: str) -> str:
        out = self.conn.run(["apt-cache", "policy", package], ok_codes=(0, 100),
                            message=f"Look up package {package}").stdout
        match = re.search(r"Candidate:\s*(\S+)", out)
        return "" if not match or match.group(1) == "(none)" else match.group(1)

    # docker

    def ensure_docker(self) -> None:
        check = ["docker", "version", "--format", "{{.Server.Version}}"]
        r = self.conn.run(check, ok_codes=(0, 1, 127), message="Check Docker Engine")
        if r.exit_code == 127:
            self.apt_install(["docker.io"], "Docker Engine")
            r = self.conn.run(check, ok_codes=(0, 1), message="Check Docker Engine again")
        if r.exit_code != 0:
            self.conn.run([*self.sudo, "systemctl", "enable", "--now", "docker"],
                          ok_codes=range(256), message="Start Docker Engine")
            r = self.conn.run(check, ok_codes=(0, 1), message="Check Docker Engine again")
            if r.exit_code != 0:
                raise OperationFailed(
                    f"Docker Engine is installed on {self.host.name} but does not answer: "
                    f"{(r.stderr or r.stdout).strip()[-400:]}"
                )
            self.changes.append("started Docker Engine")
        self.conn.docker()
        version = self.conn.docker_version
        self.facts.update(docker_version=version.get("Version", r.stdout.strip()),
                          docker_api_version=version.get("ApiVersion", ""))
        self.ctx.step(f"Docker Engine {self.facts['docker_version']} answers over SSH "
                      f"(API {self.facts['docker_api_version']})")

    def ensure_compose(self) -> None:
        check = ["docker", "compose", "version", "--short"]
        r = self.conn.run(check, ok_codes=range(256), message="Check the Compose v2 plugin")
        if r.exit_code != 0 or not r.stdout.strip()[:1].isdigit():
            package = self._compose_package()
            if not package:
                raise OperationFailed(
                    f"The Docker Compose v2 plugin is missing on {self.host.name} and "
                    f"{self.facts.get('os')} has no package for it; install "
                    "docker-compose-plugin (Docker's repository), then provision again."
                )
            self.apt_install([package], "The Docker Compose v2 plugin")
            r = self.conn.run(check, message="Check the Compose v2 plugin again")
        version = r.stdout.strip().lstrip("v")
        if not version.startswith(("2.", "3.")):
            raise OperationFailed(f"{self.host.name} has Docker Compose {version}; the panel "
                                  "needs Compose v2 (`docker compose`).")
        self.facts["compose_version"] = version

    def _compose_package(self) -> str:
        if not self.debian_like:
            return ""
        for package in ("docker-compose-plugin", "docker-compose-v2", "docker-compose"):
            candidate = self.apt_candidate(package)
            if candidate and re.match(r"^(\d+:)?[2-9]\.", candidate):
                return package
        return ""

    # layout

    def ensure_layout(self, rels: tuple[str, ...]) -> None:
        wanted = [self.path(), *(self.path(rel) for rel in rels)]
        missing = [p for p in wanted if not self.conn.exists(p)]
        if missing:
            noun = "directory" if len(missing) == 1 else "directories"
            self.conn.run([*self.sudo, "mkdir", "-p", "-m", "0750", *missing],
                          message=f"Create {len(missing)} {noun} under the data root")
            self.changes.append("created " + ", ".join(missing))
        else:
            self.ctx.step(f"Data root layout under {self.path()} is in place")
        ssh_dir = self.path(".ssh")
        if ".ssh" in rels:
            mode = self.conn.sftp().stat(ssh_dir).st_mode & 0o777
            if mode != 0o700:
                self.conn.run([*self.sudo, "chmod", "0700", ssh_dir], message="Protect .ssh")
                self.changes.append(f"chmod 0700 {ssh_dir}")

    def ensure_proxy_network(self) -> None:
        client = self.conn.docker()
        found = [n for n in client.networks.list(names=[PROXY_NETWORK]) if n.name == PROXY_NETWORK]
        if found:
            self.ctx.step(f"Docker network {PROXY_NETWORK} exists")
            return
        client.networks.create(PROXY_NETWORK, driver="bridge", labels={"panel.managed": "1"},
                               options=PROXY_NETWORK_OPTIONS, check_duplicate=True)
        self.changes.append(f"created Docker network {PROXY_NETWORK} (no inter-container traffic)")

    # capacity

    def record_capacity(self) -> None:
        cpus = self.conn.run(["nproc"], message="Count CPUs").stdout.strip()
        meminfo = (self.conn.read("/proc/meminfo") or b"").decode()
        mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
        self.facts["cpu_count"] = int(cpus) if cpus.isdigit() else None
        self.facts["memory_mb"] = int(mem.group(1)) // 1024 if mem else None
        self.facts.update(_disk_usage(self.conn, self.host.data_root))

    # backups

    def ensure_backup_host_tools(self) -> None:
        for tool, package in (("rsync", "rsync"), ("rsnapshot", "rsnapshot")):
            found = self.conn.run(["sh", "-c", 'command -v "$1"', "sh", tool], ok_codes=(0, 1, 127),
                                  message=f"Check {tool}")
            if found.exit_code != 0:
                self.apt_install([package], tool)
        rsync = self.conn.run(["rsync", "--version"], message="rsync version").stdout
        rsnapshot = self.conn.run(["rsnapshot"], ok_codes=(0, 1), message="rsnapshot version")
        self.facts["rsync_version"] = _first_version(rsync)
        self.facts["rsnapshot_version"] = _first_version(rsnapshot.stdout + rsnapshot.stderr)
        self.facts["rrsync"] = _rrsync_path(self.conn)

    def ensure_backup_access(self) -> None:
        """The app host's own key, allowed on its backup host only to rsync into its directory."""
        backup = self.host.backup_host
        assert backup is not None
        if backup.status != Host.Status.READY or not backup.host_key:
            raise OperationFailed(
                f"Backup host {backup.name} is {backup.get_status_display().lower()}; provision "
                f"it before {self.host.name}."
            )
        key_path = self.path(BACKUP_KEY)
        if not (self.conn.exists(key_path) and self.conn.exists(key_path + ".pub")):
            self.conn.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                           f"panel-backup@{self.host.name}", "-f", key_path],
                          message="Create the app host's backup key")
            self.changes.append(f"created backup key {key_path}")
        public = (self.conn.read(key_path + ".pub") or b"").decode().strip()
        key_type, key_b64 = public.split()[:2]
        self.facts["backup_key_fingerprint"] = fingerprint_of_line(public)

        # known_hosts on the app host: only the backup host, with the key the panel pinned.
        port = host_peer_ssh_port(backup)
        pattern = backup.peer_address if port == 22 else f"[{backup.peer_address}]:{port}"
        known = f"{pattern} {' '.join(backup.host_key.split()[:2])}\n"
        if self.conn.upload_if_changed(self.path(BACKUP_KNOWN_HOSTS), known, mode=0o600,
                                       message="Pin the backup host's key for the app host"):
            self.changes.append(f"pinned {backup.name}'s host key in {BACKUP_KNOWN_HOSTS}")

        target_dir = host_backup_dir(self.host)
        marker = f"panel-backup@{self.host.name}"
        with host_connection(backup, ctx=self.ctx) as bconn:
            rrsync = _rrsync_path(bconn)
            if not rrsync:
                raise OperationFailed(
                    f"rrsync is missing on {backup.name}; it ships with rsync 3.2.3 or newer "
                    "(Debian 12: /usr/bin/rrsync). Provision the backup host again."
                )
            push_dir = host_backup_push_dir(self.host)
            for directory in (target_dir, push_dir):
                if not bconn.exists(directory):
                    bconn.run(["mkdir", "-p", "-m", "0750", directory],
                              message=f"Create {directory} on {backup.name}")
                    self.changes.append(f"created {directory} on {backup.name}")
            if bconn.upload_if_changed(BACKUP_FORCED_COMMAND, BACKUP_FORCED_SCRIPT, mode=0o755,
                                       message="Install the forced command of backup keys"):
                self.changes.append(f"installed {BACKUP_FORCED_COMMAND} on {backup.name}")
            sources = _peer_addresses(bconn, self.host)
            home = bconn.run(["sh", "-c", 'printf %s "$HOME"'], message="Find the home").stdout
            auth_path = f"{home.rstrip('/')}/.ssh/authorized_keys"
            line = backup_access_line(self.host, rrsync=rrsync, sources=sources,
                                      public_key=f"{key_type} {key_b64}")
            current = (bconn.read(auth_path, missing_ok=True) or b"").decode()
            # A key another app host already uses is refused: replacing that host's line
            # because this host reports the same public key would lock the other one out.
            for raw in current.splitlines():
                if f" {key_b64} " in f" {raw} " and "panel-backup@" in raw \
                        and not raw.rstrip().endswith(" " + marker):
                    raise OperationFailed(
                        f"{self.host.name}'s backup key is already authorised on {backup.name} "
                        "for another app host; give this host its own key "
                        f"({self.path(BACKUP_KEY)}) and provision it again."
                    )
            # One line per app host: its older line (another key, or older options) is
            # replaced; a line of this key without the marker (sshd would use the first) too.
            lines = [raw for raw in current.splitlines()
                     if raw.strip() and not raw.rstrip().endswith(" " + marker)
                     and f" {key_b64} " not in f" {raw} "]
            wanted = "\n".join([*lines, line]) + "\n"
            if line not in current.splitlines():
                bconn.upload(auth_path, wanted, mode=0o600,
                             message=f"Authorise {self.host.name}'s backup key on {backup.name} "
                                     f"(from {', '.join(sources)} only; write into {push_dir}, "
                                     f"read from {target_dir})")
                self.changes.append(f"authorised {self.host.name}'s backup key on {backup.name}")
            else:
                self.ctx.step(f"{self.host.name}'s backup key is authorised on {backup.name}")
        # Prove it: the app host lists its backup directory through the restricted key.
        check = self.conn.run(
            ["rsync", "--list-only", "-e", " ".join(host_backup_ssh_argv(self.host)),
             host_backup_rsync_destination(self.host)], timeout=60, ok_codes=range(256),
            message=f"Check that {self.host.name} reaches {backup.name} with rsync")
        if check.exit_code != 0:
            if RRSYNC_BUSY in check.stderr:
                # rrsync answered through the forced command: key, pin and restriction work;
                # it only holds its one-transfer-at-a-time lock for a backup that is running.
                self.ctx.step(f"{backup.name} is busy with a backup of {self.host.name}; the "
                              "restricted key reached rrsync, so access works")
            else:
                raise OperationFailed(
                    f"{self.host.name} cannot rsync to {backup.name} with its backup key (exit "
                    f"code {check.exit_code}): {(check.stderr or check.stdout).strip()[-400:]}"
                )
        self.facts["backup_target"] = f"{backup.name}:{target_dir}"


def _parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            try:
                out[key.strip()] = " ".join(shlex.split(value))
            except ValueError:
                out[key.strip()] = value.strip().strip('"')
    return out


def _first_version(text: str) -> str:
    match = re.search(r"(\d+\.\d+(?:\.\d+)?(?:-\S+)?)", text or "")
    return match.group(1) if match else ""


def _rrsync_path(conn: HostConnection) -> str:
    found = conn.run(["sh", "-c", "command -v rrsync || true"], message="Find rrsync")
    path = found.stdout.strip()
    return path if path.startswith("/") else ""


def _disk_usage(conn: HostConnection, path: str) -> dict[str, int]:
    out = conn.run(["df", "-P", "-B1", path], message=f"Disk usage of {path}").stdout
    rows = [line.split() for line in out.strip().splitlines()[1:]]
    if not rows or len(rows[-1]) < 4:
        raise OperationFailed(f"Could not read the disk usage of {path}: {out.strip()[:200]}")
    total, _used, free = (int(x) for x in rows[-1][1:4])
    return {"disk_total_bytes": total, "disk_free_bytes": free}


@operation_handler(OperationKind.HOST_PROVISION, on_abort=host_abort)
def host_provision_run(ctx: OperationContext) -> dict:
    """Prepare a host for its role; running it again on a ready host changes nothing."""
    host = _host_of(ctx)
    was = host.status
    facts = dict(host.facts or {})
    _host_update(host, status=Host.Status.PROVISIONING, status_reason="")
    total = 7 if host.role == Host.Role.APP else 5
    ctx.progress(0, total)
    try:
        with host_connection(host, ctx=ctx) as conn:
            p = _Provisioner(ctx=ctx, host=host, conn=conn)
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
            else:
                p.ensure_backup_host_tools()
                ctx.progress(2)
                p.ensure_layout(HOST_LAYOUT[Host.Role.BACKUP])
                ctx.progress(3)
                p.record_capacity()
            ctx.check_cancelled()
    except RemoteError as exc:
        raise _fail(host, exc) from None
    now = timezone.now()
    facts.update(p.facts)
    facts.update(provisioned=True, provisioned_at=facts.get("provisioned_at") or now.isoformat(),
                 last_provision_at=now.isoformat())
    _host_update(
        host, status=Host.Status.READY, status_reason="", facts=facts,
        cpu_count=p.facts.get("cpu_count"), memory_mb=p.facts.get("memory_mb"),
        disk_total_bytes=p.facts.get("disk_total_bytes"),
        disk_free_bytes=p.facts.get("disk_free_bytes"), last_seen_at=now, last_health_at=now,
    )
    if p.changes:
        message = f"Provisioned {host.name}: {len(p.changes)} change(s)"
        ctx.step(message, output="\n".join(p.changes))
    else:
        message = (f"{host.name} is already provisioned, nothing changed"
                   if was == Host.Status.READY else
                   f"{host.name} already had everything it needs, nothing changed")
        ctx.step(message)
    if host.disk_warning:
        ctx.step(f"Disk of {host.data_root} is {host.disk_used_percent}% full", level="warning")
    return {"changed": p.changes, "message": message, "facts": p.facts}


# --- host.health --------------------------------------------------------------------------


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
    try:
        with host_connection(host, ctx=ctx) as conn:
            result["reachable"] = True
            fields["last_seen_at"] = timezone.now()
            if host.role == Host.Role.APP:
                try:
                    info = conn.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                                    timeout=60, message="Check that Docker Engine answers")
                    result["docker"] = info.stdout.strip()
                except CommandFailed as exc:
                    result["docker"] = False
                    problem = exc
            disk = _disk_usage(conn, host.data_root)
            fields.update(disk)
            result.update(disk)
    except OperationFailed as exc:
        problem = CommandFailed(str(exc))
    except RemoteError as exc:
        problem = exc
    facts = dict(host.facts or {})
    facts["health"] = {
        "checked_at": now.isoformat(), "reachable": result["reachable"],
        "docker": result["docker"], "problem": str(problem) if problem else "",
    }
    fields["facts"] = facts
    if isinstance(problem, HostKeyMismatch):
        _remember_presented_key(host, problem)
    current = Host.objects.filter(pk=host.pk).values_list("status", flat=True).first()
    if current not in (Host.Status.PROVISIONING, Host.Status.RETIRED):
        if problem is None:
            if current in (Host.Status.UNREACHABLE, Host.Status.ERROR, Host.Status.READY,
                           Host.Status.TRUSTED):
                fields.update(status=_status_when_healthy(host), status_reason="")
        elif isinstance(problem, HostUnreachable):
            fields.update(status=Host.Status.UNREACHABLE, status_reason=str(problem))
        else:
            fields.update(status=Host.Status.ERROR, status_reason=str(problem))
    _host_update(host, **fields)
    result["status"] = host.status
    result["problem"] = str(problem) if problem else ""
    result["disk_warning"] = host.disk_warning
    return result


@operation_handler(OperationKind.HOST_HEALTH)
def host_health_run(ctx: OperationContext) -> dict:
    """The ``host.health`` operation: :func:`host_health_probe` with its steps recorded."""
    host = _host_of(ctx)
    result = host_health_probe(host, ctx=ctx)
    if result["problem"]:
        raise OperationFailed(result["problem"])
    message = f"{host.name} is healthy"
    if host.disk_used_percent is not None:
        message += f"; disk {host.disk_used_percent}% used"
    ctx.step(message, level="warning" if host.disk_warning else "info")
    if host.disk_warning:
        ctx.step(f"Disk of {host.data_root} is above "
                 f"{settings.PANEL_HOST_DISK_WARNING_PERCENT}% used", level="warning")
    return result


def host_health_probe_by_id(host_id: Any) -> dict[str, Any] | None:
    """Entry point of the periodic task: probe one host by primary key (if it still exists)."""
    host = Host.objects.select_related("backup_host").filter(pk=host_id).first()
    if host is None or host.status == Host.Status.RETIRED or not host.host_key_fingerprint:
        return None
    try:
        return host_health_probe(host)
    except Exception:  # noqa: BLE001 - one broken host must not stop the periodic check
        log.exception("health check of host %s crashed", host_id)
        return None
