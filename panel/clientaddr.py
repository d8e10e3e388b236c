"""The client's address, decided once per request from one setting.

Behind a reverse proxy the TCP peer is the proxy. ``PANEL_TRUSTED_PROXIES`` lists the
proxies' addresses (or networks); only when the peer is one of them is ``X-Forwarded-For``
read, from the right, skipping further trusted proxies, and the first other address is the
client. A header from any other peer is ignored (it is whatever the caller chose to send).

The result replaces ``REMOTE_ADDR`` before anything else looks at it, so the per-IP API rate
limit, django-axes' login lock-out and the audit log all see the same client address; the
peer's own address is kept as ``PANEL_PEER_ADDR``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _trusted(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.5", "172.18.0.0/16"]`` as networks; a clear error for a bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"PANEL_TRUSTED_PROXIES: {value!r} is not an address or network"
            ) from exc
    return tuple(networks)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.9:51234"
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address for a request from ``peer`` carrying ``forwarded_for``."""

    def is_trusted(address: Any) -> bool:
        return any(address in network for network in trusted)

    peer_address = _address(peer)
    if peer_address is None or not trusted or not is_trusted(peer_address):
        return peer
    client = peer_address
    for item in reversed((forwarded_for or "").split(",")):
        address = _address(item)
        if address is None:
            break  # a garbled hop: trust nothing to the left of it
        client = address
        if not is_trusted(address):
            break
    return str(client)


class ClientAddressMiddleware:
    """Set ``REMOTE_ADDR`` to the client's address (see the module docstring)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        _trusted(tuple(settings.PANEL_TRUSTED_PROXIES))  # a bad setting fails at start-up

    def __call__(self, request: Any) -> Any:
        peer = request.META.get("REMOTE_ADDR", "")
        request.META["PANEL_PEER_ADDR"] = peer
        request.META["REMOTE_ADDR"] = client_address(
            peer,
            request.META.get("HTTP_X_FORWARDED_FOR"),
            _trusted(tuple(settings.PANEL_TRUSTED_PROXIES)),
        )
        return self.get_response(request)
