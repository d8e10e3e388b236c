"""DNS providers behind one small interface (:class:`~certificates.dns.base.DnsProvider`).

``provider_for(account)`` gives the provider of a :class:`~certificates.models.DnsProviderAccount`;
Route53 (boto3) and RFC 2136 (dnspython, TSIG) are the two kinds. This package is the only code
that imports boto3 for DNS or sends DNS updates.
"""

from __future__ import annotations

from typing import Any

from certificates.dns.base import (
    ChangeResult,
    DnsConflict,
    DnsError,
    DnsProvider,
    RecordChange,
    ZoneRef,
    records_resolve,
)


def provider_for(account: Any, *, log: Any = None, timeout: float | None = None) -> DnsProvider:
    """The provider for a DnsProviderAccount (``log`` receives a line per API call; with
    ``timeout``, seconds per answer, it gives up sooner: for checks a person waits for)."""
    if account.kind == "route53":
        from certificates.dns.route53 import Route53Provider

        return Route53Provider(account.config, account.credentials, log=log, timeout=timeout)
    if account.kind == "rfc2136":
        from certificates.dns.rfc2136 import Rfc2136Provider

        return Rfc2136Provider(account.config, account.credentials, log=log, timeout=timeout)
    raise DnsError(f"Unknown DNS provider kind {account.kind!r}.")


__all__ = [
    "ChangeResult",
    "DnsConflict",
    "DnsError",
    "DnsProvider",
    "RecordChange",
    "ZoneRef",
    "provider_for",
    "records_resolve",
]
