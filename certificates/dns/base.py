"""The provider interface, the change and result types, and resolving names for checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver


class DnsError(Exception):
    """A DNS provider refused or failed a change or a lookup (message readable by a person)."""


class DnsConflict(DnsError):
    """A record the panel meant to create already exists at the provider (it is not the
    panel's, so the panel leaves it alone)."""


@dataclass(frozen=True)
class ZoneRef:
    """A zone as the provider knows it: its name and the provider's id for it."""

    name: str
    provider_zone_id: str = ""


@dataclass(frozen=True)
class RecordChange:
    """One change of a record set.

    - ``create``: make ``name``/``rtype`` hold ``values``, only if that record set does not
      exist; with ``name_unused`` (the default) only if the name holds no record of any type.
      The provider refuses it atomically (Route53 CREATE, an RFC 2136 prerequisite) and raises
      :class:`DnsConflict`, so the panel never overwrites a record it did not make.
    - ``upsert``: make ``name``/``rtype`` hold exactly ``values``, replacing what is there. Only
      for records the panel owns (and the ACME challenge names, which are reserved for it).
    - ``delete``: remove ``values`` from the record set (other values stay), or the whole set
      when ``values`` is empty; an absent record is no error.
    """

    action: str  # "create" | "upsert" | "delete"
    name: str
    rtype: str
    values: tuple[str, ...] = ()
    ttl: int = 300
    name_unused: bool = True

    def __post_init__(self) -> None:
        if self.action not in ("create", "upsert", "delete"):
            raise ValueError(f"unknown DNS change action {self.action!r}")
        if self.rtype not in ("A", "AAAA", "CNAME", "TXT"):
            raise ValueError(f"unsupported record type {self.rtype!r}")
        if self.action in ("create", "upsert") and not self.values:
            raise ValueError(f"a {self.action} needs at least one value")


@dataclass
class ChangeResult:
    """What one batch did: the provider's change id and how many API calls it took."""

    change_id: str = ""
    in_sync: bool = True
    api_calls: int = 0
    applied: list[RecordChange] = field(default_factory=list)
    # Deletes left undone because the record no longer holds the panel's values.
    skipped: list[str] = field(default_factory=list)


StepLog = Callable[..., None]


class DnsProvider(Protocol):
    """What the panel needs from a DNS provider."""

    def apply(self, zone: ZoneRef, changes: Sequence[RecordChange]) -> ChangeResult:
        """Apply all ``changes`` in ``zone`` as one batch and wait (bounded) until in sync."""
        ...

    def lookup(self, zone: ZoneRef, name: str, rtype: str) -> list[str]:
        """The values the provider holds for ``name``/``rtype`` (empty if none)."""
        ...

    def name_types(self, zone: ZoneRef, name: str) -> list[str]:
        """The record types the provider holds at ``name`` (empty: the name is not in use)."""
        ...

    def account_check(self) -> str:
        """Verify the provider answers with these credentials (no zone needed); returns a
        short description."""
        ...

    def zone_check(self, zone: ZoneRef) -> str:
        """Verify the zone is reachable with these credentials; returns a short description."""
        ...


def fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def records_resolve(
    name: str,
    rtype: str,
    *,
    nameservers: Sequence[str] = (),
    port: int = 53,
    timeout: float = 5.0,
) -> list[str]:
    """Resolve ``name``/``rtype`` (following CNAMEs for A/AAAA) through ``nameservers``
    (``host`` or ``host:port``), or the system's resolver when none are given."""
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        servers, ports = [], set()
        for ns in nameservers:
            host, _, p = ns.partition(":") if ns.count(":") == 1 else (ns, "", "")
            servers.append(host)
            ports.add(int(p) if p else port)
        resolver.nameservers = servers
        resolver.port = ports.pop() if len(ports) == 1 else port
    resolver.lifetime = timeout
    try:
        answer = resolver.resolve(name, rtype, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
        return []
    except dns.exception.Timeout as exc:
        raise DnsError(f"No DNS answer for {name} {rtype} within {timeout:g} s.") from exc
    values = []
    for rdata in answer:
        if rtype == "TXT":
            values.append(b"".join(rdata.strings).decode())
        else:
            values.append(rdata.to_text().rstrip("."))
    return values
