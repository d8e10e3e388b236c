"""Host ports of instances: where a product's non-HTTP port (Bitbucket's git over SSH, Bamboo's
agent broker) is published on its app host, and how clients are told about it.

Everything HTTP goes through the host's proxy on 80/443. Git over SSH and remote Bamboo agents
cannot: the images' READMEs publish 7999 and 54663 on the host
(https://hub.docker.com/r/atlassian/bitbucket, https://hub.docker.com/r/atlassian/bamboo).
Several instances share a host, so each gets its own host port from
``PANEL_INSTANCE_PORT_RANGE``, published on the address the proxy publishes on.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from provisioning.models import AtlassianInstance, Host, InstanceStatus
from provisioning.products import Product, spec_for

_RANGE_RE = re.compile(r"\A\s*(\d{1,5})\s*-\s*(\d{1,5})\s*\Z")


class HostPortsExhausted(Exception):
    """Every port of ``PANEL_INSTANCE_PORT_RANGE`` on the host is taken."""


def port_range() -> tuple[int, int]:
    """``PANEL_INSTANCE_PORT_RANGE`` (``first-last``) as a pair of ints."""
    value = settings.PANEL_INSTANCE_PORT_RANGE or ""
    match = _RANGE_RE.match(value)
    if match is not None:
        first, last = int(match.group(1)), int(match.group(2))
        if 1024 <= first <= last <= 65535:
            return first, last
    raise ImproperlyConfigured(
        f"PANEL_INSTANCE_PORT_RANGE={value!r}: give first-last, two ports from 1024 to 65535, "
        "e.g. 20000-20999."
    )


def public_address(host: Any) -> str:
    """The address clients reach the host at (DNS records point there)."""
    return (host.facts or {}).get("public_address") or host.address


def publish_bind(host: Any) -> str:
    """The ``address:`` prefix a port is published with on ``host`` (the proxy's 80/443 and
    instances' host ports alike): the host's address when it is an IP, so nothing listens on
    the host's other interfaces (and lab hosts sharing one Docker engine do not collide);
    ``""`` (every address) when the host is known by a name."""
    try:
        ipaddress.ip_address(host.address)
    except ValueError:
        return ""
    return f"{host.address}:"


# One published port in `docker ps --format {{.Ports}}`: "127.0.0.11:20000->7999/tcp",
# "0.0.0.0:20000-20001->7999-8000/tcp", "[::]:20000->7999/tcp"; bare "7990/tcp" is unpublished.
_PUBLISHED_RE = re.compile(r"(?:^|,\s*)(\[[0-9a-fA-F:]*\]|[0-9.]+):(\d+)(?:-(\d+))?->")


def host_ports_in_use(conn: Any, host: Host) -> set[int]:
    """Host ports some container on ``host`` already publishes on the address the panel binds
    (or on every address): a port taken outside the panel's records is never handed out."""
    out = conn.run(
        ["docker", "ps", "--format", "{{.Ports}}"],
        timeout=30,
        record=False,
        message="Read the host ports containers publish",
    ).stdout
    bind = publish_bind(host).rstrip(":")
    busy: set[int] = set()
    for line in out.splitlines():
        for address, first, last in _PUBLISHED_RE.findall(line):
            # Docker's notation for "every address" in its output; nothing is bound here.
            if bind and address not in (bind, "0.0.0.0", "[::]"):  # noqa: S104
                continue
            busy.update(range(int(first), int(last or first) + 1))
    return busy


def instance_host_port_allocate(
    instance: AtlassianInstance, host: Host, *, busy: set[int] | None = None
) -> int | None:
    """Give ``instance`` the lowest free port of ``PANEL_INSTANCE_PORT_RANGE`` on ``host`` if
    its product publishes a port (returns it; ``None`` for the others). Keeps a port the
    instance already has there. Free means: no live instance on the host has it, and it is not
    in ``busy`` (what the host's containers publish, :func:`host_ports_in_use`). The host row
    is locked meanwhile, so two instances placed on one host at once never get the same port
    (the unique constraint is the backstop)."""
    spec = spec_for(instance.product)
    if spec.published_port is None:
        return None
    first, last = port_range()
    with transaction.atomic():
        Host.objects.select_for_update().filter(pk=host.pk).first()
        current = AtlassianInstance.objects.filter(pk=instance.pk).values("host_id", "host_port")
        row = current.first()
        if row is not None and row["host_id"] == host.pk and row["host_port"] is not None:
            instance.host_port = row["host_port"]
            return instance.host_port
        taken = set(
            AtlassianInstance.objects.filter(host=host, host_port__isnull=False)
            .exclude(status=InstanceStatus.DELETED)
            .exclude(pk=instance.pk)
            .values_list("host_port", flat=True)
        ) | (busy or set())
        port = next((p for p in range(first, last + 1) if p not in taken), None)
        if port is None:
            raise HostPortsExhausted(
                f"Host {host.name} has no free port left in {first}-{last} "
                "(PANEL_INSTANCE_PORT_RANGE) for "
                f"{Product(instance.product).label}'s port {spec.published_port}. An "
                "administrator must widen the range or place the instance on another host."
            )
        AtlassianInstance.objects.filter(pk=instance.pk).update(host_port=port)
        instance.host_port = port
    return port


def published_environment(instance: AtlassianInstance) -> dict[str, str]:
    """The application's environment naming its published port, so the product shows clients
    the host port instead of its container port.

    Bitbucket: ``PLUGIN_SSH_BASEURL`` (Atlassian's chart sets it to ``ssh://host[:port]/``,
    https://github.com/atlassian/data-center-helm-charts,
    src/main/charts/bitbucket/templates/statefulset.yaml); Bamboo: ``ATL_BROKER_CLIENT_URI``,
    the URI remote agents connect to (https://hub.docker.com/r/atlassian/bamboo)."""
    url = instance.published_url
    if not url:
        return {}
    if instance.product == Product.BITBUCKET:
        return {"PLUGIN_SSH_BASEURL": url}
    return {"ATL_BROKER_CLIENT_URI": url}


def published_ports_entry(instance: AtlassianInstance) -> list[str]:
    """The compose ``ports`` of the app service (``[]`` when nothing is published)."""
    spec = spec_for(instance.product)
    if spec.published_port is None or not instance.host_port or instance.host is None:
        return []
    return [f"{publish_bind(instance.host)}{instance.host_port}:{spec.published_port}"]


def ssh_banner_read(address: str, port: int, *, timeout: float = 5.0) -> str:
    """The first line an SSH server sends (``SSH-2.0-...``), read at ``address:port`` the way a
    git client reaches it; raises ``OSError`` when nothing answers."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        data = b""
        while b"\n" not in data and len(data) < 255:
            chunk = sock.recv(255 - len(data))
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
