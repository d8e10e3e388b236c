"""Connections to managed hosts: the one way other apps open one (pinned to the host's key)."""

from __future__ import annotations

from panel.operations import OperationContext
from provisioning.models import Host
from provisioning.remote import HostConnection, SSHTarget


def host_connection(
    host: Host, *, ctx: OperationContext | None = None, password: str = ""
) -> HostConnection:
    """An (unopened) pinned connection to ``host``; use it as a context manager."""
    return HostConnection(SSHTarget.for_host(host, password=password), ctx=ctx)


def host_peer_ssh_port(host: Host) -> int:
    """The SSH port other managed hosts use to reach ``host`` at its private address.

    Host has no field for it yet: an admin may give ``peer_ssh_port`` at enrolment (kept in
    ``facts``); otherwise the same port as the panel uses.
    """
    return int((host.facts or {}).get("peer_ssh_port") or host.ssh_port)
