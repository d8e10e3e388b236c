"""DNS provider accounts and zones: what platform admins record, change and remove (audited),
and the connection test of an account.

The pages (``certificates.views``) and the API (``certificates.api.views``) call the same
functions. Credentials are encrypted at rest and never returned: an update without
``credentials`` keeps the stored ones. Nothing here changes a record at a provider: removing a
zone only makes the panel forget it, and is refused while instances have records in it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from certificates.dns import DnsError, provider_for
from certificates.dns.rfc2136 import ALGORITHMS
from certificates.models import DnsProviderAccount, DnsRecord, DnsZone, ProxySite
from certificates.services.dns_records import zone_ref
from panel.access import Access
from panel.audit import audit_record

log = logging.getLogger(__name__)

Kind = DnsProviderAccount.Kind

# The keys each kind takes: settings (``config``, shown) and secrets (``credentials``, never
# shown). The providers in ``certificates.dns`` read exactly these.
CONFIG_KEYS = {
    Kind.ROUTE53: ("region", "endpoint_url"),
    Kind.RFC2136: ("server", "port", "tsig_key_name", "tsig_algorithm", "timeout"),
}
CREDENTIAL_KEYS = {
    Kind.ROUTE53: ("access_key_id", "secret_access_key"),
    Kind.RFC2136: ("tsig_secret",),
}


def _unknown(keys: Any, allowed: tuple[str, ...], kind: str) -> str:
    extra = sorted(set(keys) - set(allowed))
    if not extra:
        return ""
    return f"Unknown for {kind}: {', '.join(extra)}; it takes {', '.join(allowed)}."


def _config_problems(kind: str, config: dict[str, Any]) -> list[str]:
    problems = []
    unknown = _unknown(config, CONFIG_KEYS[Kind(kind)], kind)
    if unknown:
        problems.append(unknown)
    for key, value in config.items():
        if key in ("port", "timeout"):
            continue
        if not isinstance(value, str):
            problems.append(f"{key} must be a string.")
    if kind == Kind.ROUTE53:
        url = config.get("endpoint_url")
        if isinstance(url, str) and url:
            try:
                URLValidator(schemes=["http", "https"])(url)
            except ValidationError:
                problems.append(f"endpoint_url {url!r} is not an http(s) URL.")
    else:
        if not str(config.get("server") or "").strip():
            problems.append("server (the DNS server's address) is required.")
        port = config.get("port")
        if port not in (None, "") and (
            isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
        ):
            problems.append("port must be a whole number from 1 to 65535.")
        timeout = config.get("timeout")
        if timeout not in (None, "") and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            problems.append("timeout must be a positive number of seconds.")
        algorithm = config.get("tsig_algorithm")
        if algorithm and str(algorithm).lower() not in ALGORITHMS:
            problems.append(
                f"tsig_algorithm {algorithm!r} is not one of {', '.join(sorted(ALGORITHMS))}."
            )
    return problems


def _credential_problems(kind: str, config: dict[str, Any], credentials: dict[str, Any]) -> list:
    problems = []
    unknown = _unknown(credentials, CREDENTIAL_KEYS[Kind(kind)], kind)
    if unknown:
        problems.append(unknown)
    for key, value in credentials.items():
        if not isinstance(value, str):
            problems.append(f"{key} must be a string.")
    if kind == Kind.RFC2136:
        secret = credentials.get("tsig_secret") or ""
        if config.get("tsig_key_name") and not secret:
            problems.append(f"tsig_secret is required for the TSIG key {config['tsig_key_name']}.")
        if isinstance(secret, str) and secret:
            try:
                base64.b64decode(secret, validate=True)
            except (binascii.Error, ValueError):
                problems.append("tsig_secret must be base64 (as tsig-keygen prints it).")
    elif bool(credentials.get("access_key_id")) != bool(credentials.get("secret_access_key")):
        problems.append("Give both access_key_id and secret_access_key, or neither.")
    return problems


def _settings_check(kind: str, config: dict[str, Any], credentials: dict[str, Any]) -> None:
    """Refuse settings and secrets the provider of ``kind`` cannot use (400 per field)."""
    errors = {}
    config_problems = _config_problems(kind, config)
    if config_problems:
        errors["config"] = config_problems
    credential_problems = _credential_problems(kind, config, credentials)
    if credential_problems:
        errors["credentials"] = credential_problems
    if errors:
        raise ValidationError(errors)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    """Settings without empty values (an empty form field means "not set")."""
    return {k: v for k, v in values.items() if v not in (None, "")}


@transaction.atomic
def dns_account_create(
    *, actor: Access, name: str, kind: str, config: dict, credentials: dict
) -> DnsProviderAccount:
    """Record a DNS provider account; its secrets are encrypted at rest."""
    if kind not in Kind.values:
        raise ValidationError({"kind": f"Choose one of {', '.join(Kind.values)}."})
    config, credentials = _clean(config), _clean(credentials)
    _settings_check(kind, config, credentials)
    account = DnsProviderAccount(name=name, kind=kind, config=config, credentials=credentials)
    account.full_clean()
    account.save()
    audit_record(
        actor=actor,
        action="dns.account.create",
        target=account,
        changes={"name": name, "kind": kind, "config": config, "credentials": sorted(credentials)},
    )
    return account


@transaction.atomic
def dns_account_update(
    *,
    actor: Access,
    account: DnsProviderAccount,
    name: str | None = None,
    config: dict | None = None,
    credentials: dict | None = None,
) -> DnsProviderAccount:
    """Rename an account, change its settings or replace its secrets. ``None`` keeps a value;
    ``credentials`` replace the stored secrets as a whole. The kind never changes (its zones
    and records were made with that provider)."""
    account = DnsProviderAccount.objects.select_for_update().get(pk=account.pk)
    changes: dict[str, Any] = {}
    new_config = account.config if config is None else _clean(config)
    new_credentials = account.credentials if credentials is None else _clean(credentials)
    _settings_check(account.kind, new_config, new_credentials)
    if name is not None and name != account.name:
        changes["name"] = [account.name, name]
        account.name = name
    if new_config != account.config:
        changes["config"] = [account.config, new_config]
        account.config = new_config
    if credentials is not None and new_credentials != account.credentials:
        # Which secrets are set now, never their values.
        changes["credentials"] = sorted(new_credentials)
        account.credentials = new_credentials
    account.full_clean()
    account.save()
    if changes:
        audit_record(actor=actor, action="dns.account.update", target=account, changes=changes)
    return account


@transaction.atomic
def dns_account_delete(*, actor: Access, account: DnsProviderAccount) -> None:
    """Forget an account that no zone uses any more (remove its zones first)."""
    account = DnsProviderAccount.objects.select_for_update().get(pk=account.pk)
    zones = list(account.zones.values_list("name", flat=True))
    if zones:
        raise ValidationError(
            f"{account.name} still serves the zone{'s' if len(zones) != 1 else ''} "
            f"{', '.join(zones)}; remove {'them' if len(zones) != 1 else 'it'} first."
        )
    audit_record(
        actor=actor,
        action="dns.account.delete",
        target=account,
        changes={"name": account.name, "kind": account.kind},
    )
    account.delete()


@transaction.atomic
def dns_zone_create(
    *,
    actor: Access,
    name: str,
    account: DnsProviderAccount,
    provider_zone_id: str = "",
    default_ttl: int = 300,
    wildcard: bool = False,
) -> DnsZone:
    """Record a zone the panel may change records in."""
    zone = DnsZone(
        name=name.lower().rstrip("."),
        account=account,
        provider_zone_id=provider_zone_id,
        default_ttl=default_ttl,
        wildcard=wildcard,
    )
    zone.full_clean()
    zone.save()
    audit_record(
        actor=actor,
        action="dns.zone.create",
        target=zone,
        changes={"name": zone.name, "account": account.name, "wildcard": wildcard},
    )
    return zone


@transaction.atomic
def dns_zone_delete(*, actor: Access, zone: DnsZone) -> None:
    """Forget a zone in which no instance has a record and whose wildcard certificate (if
    any) no site serves. Nothing at the provider changes."""
    zone = DnsZone.objects.select_for_update().get(pk=zone.pk)
    records = list(
        DnsRecord.objects.filter(zone=zone)
        .order_by("instance__name")
        .values_list("instance__name", flat=True)
        .distinct()[:6]
    )
    if records:
        names = ", ".join(records[:5]) + (" and more" if len(records) > 5 else "")
        raise ValidationError(
            f"Instances have DNS records in {zone.name} ({names}); the panel would lose track "
            "of them. Delete those instances or move them to other hostnames first."
        )
    if ProxySite.objects.filter(certificate__zone=zone).exists():
        raise ValidationError(
            f"The wildcard certificate of {zone.name} is served by instances' sites; it would "
            "be removed with the zone."
        )
    audit_record(
        actor=actor,
        action="dns.zone.delete",
        target=zone,
        changes={"name": zone.name, "account": zone.account.name},
    )
    zone.delete()


@dataclass(frozen=True)
class DnsCheckLine:
    """One thing the connection test asked the provider: the account itself, or a zone."""

    subject: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class DnsAccountCheck:
    """What a connection test of an account found (nothing is changed at the provider)."""

    account: DnsProviderAccount
    checked_at: datetime
    lines: list[DnsCheckLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self.lines)


def dns_account_check(*, actor: Access, account: DnsProviderAccount) -> DnsAccountCheck:
    """Test an account's connection now: the provider accepts its credentials, then each of
    its zones is served there. Read-only lookups (like the hostname check of a new instance),
    each waiting at most ``PANEL_DNS_CHECK_TIMEOUT``; the answer is for the person waiting,
    and the test is audited with its outcome."""
    timeout = settings.PANEL_DNS_CHECK_TIMEOUT
    lines: list[DnsCheckLine] = []
    zones = list(account.zones.all())
    try:
        provider = provider_for(account, timeout=timeout)
        lines.append(DnsCheckLine("account", True, provider.account_check()))
    except DnsError as exc:
        lines.append(DnsCheckLine("account", False, str(exc)))
        lines.extend(
            DnsCheckLine(zone.name, False, "Not checked: the provider did not accept the account.")
            for zone in zones
        )
    else:
        for zone in zones:
            try:
                lines.append(DnsCheckLine(zone.name, True, provider.zone_check(zone_ref(zone))))
            except DnsError as exc:
                lines.append(DnsCheckLine(zone.name, False, str(exc)))
    result = DnsAccountCheck(account=account, checked_at=timezone.now(), lines=lines)
    failed = [line.subject for line in lines if not line.ok]
    if failed:
        log.info("DNS account %s: the connection test failed for %s", account.name, failed)
    audit_record(
        actor=actor,
        action="dns.account.check",
        target=account,
        changes={"ok": result.ok, "failed": failed},
    )
    return result
