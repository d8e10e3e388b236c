"""Writes of the certificates app: DNS zones, accounts and records, ACME certificates and the
proxy sites of instances. Changes by people are audited; remote work runs inside Operations
(``certificates.operations``), whose handlers call the ``*_run`` style functions here with
their :class:`~panel.operations.OperationContext`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from certificates import proxy
from certificates.acme_client import (
    AcmeError,
    AcmeSession,
    certificate_parse,
    private_key_generate,
    self_signed_generate,
)
from certificates.dns import (
    DnsConflict,
    DnsError,
    RecordChange,
    ZoneRef,
    provider_for,
    records_resolve,
)
from certificates.models import (
    AcmeAccount,
    Certificate,
    CertificateOrder,
    DnsProviderAccount,
    DnsRecord,
    DnsZone,
    ProxySite,
)
from panel.access import Access
from panel.audit import audit_record
from panel.operations import OperationConflict, OperationContext, OperationFailed, operation_start
from provisioning import validators
from provisioning.models import AtlassianInstance, InstanceStatus, OperationKind
from provisioning.remote import HostConnection, RemoteError, SSHTarget

log = logging.getLogger(__name__)

ACME_CHALLENGE = "_acme-challenge"
LIVE_STATUSES = (
    InstanceStatus.PROVISIONING,
    InstanceStatus.RUNNING,
    InstanceStatus.STOPPED,
    InstanceStatus.FAILED,
    InstanceStatus.RESTORING,
)


# --- settings -------------------------------------------------------------------------------


def acme_directory() -> str:
    return getattr(settings, "PANEL_ACME_DIRECTORY", "") or ""


def _acme_ca_bundle() -> str | None:
    return getattr(settings, "PANEL_ACME_CA_BUNDLE", "") or None


def _weekly_budget() -> int:
    return int(getattr(settings, "PANEL_ACME_WEEKLY_ORDER_BUDGET", 40))


def _check_nameservers() -> list[str]:
    return list(getattr(settings, "PANEL_DNS_CHECK_NAMESERVERS", []) or [])


def registered_domain(name: str) -> str:
    """The registered domain (public suffix + 1 label) that CA rate limits count against."""
    from publicsuffixlist import PublicSuffixList

    name = name.lower().rstrip(".").removeprefix("*.")
    return _psl(PublicSuffixList).privatesuffix(name) or name


_PSL: Any = None


def _psl(cls: Any) -> Any:
    global _PSL  # noqa: PLW0603 - parsing the list once per process
    if _PSL is None:
        _PSL = cls()
    return _PSL


# --- DNS zones and accounts (platform admins) ------------------------------------------------


def dns_account_create(
    *, actor: Access, name: str, kind: str, config: dict, credentials: dict
) -> DnsProviderAccount:
    """Record a DNS provider account; its secrets are encrypted at rest."""
    account = DnsProviderAccount(name=name, kind=kind, config=config, credentials=credentials)
    account.full_clean()
    account.save()
    audit_record(
        actor=actor,
        action="dns.account.create",
        target=account,
        changes={"name": name, "kind": kind, "config": config},
    )
    return account


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


def zone_for_hostname(hostname: str) -> DnsZone | None:
    """The most specific managed zone that contains ``hostname``."""
    hostname = hostname.lower().rstrip(".")
    labels = hostname.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels))]
    zones = {
        z.name: z for z in DnsZone.objects.filter(name__in=candidates).select_related("account")
    }
    for name in candidates:
        if name in zones:
            return zones[name]
    return None


def _zone_ref(zone: DnsZone) -> ZoneRef:
    return ZoneRef(zone.name, zone.provider_zone_id)


def hostname_dns_check(
    hostname: str,
    *,
    customer_managed: bool = False,
    instance: AtlassianInstance | None = None,
    probe: bool = True,
) -> DnsZone | None:
    """Request-time check of an instance's hostname: inside a managed zone, or accepted as
    customer-managed DNS (refused when ``PANEL_DNS_UNMANAGED`` is ``refuse`` unless marked).
    In a managed zone the name must not be reserved (:func:`hostname_reserved_reason`) and, with
    ``probe``, must hold no record at the provider that the panel did not make for ``instance``
    (a DNS takeover otherwise)."""
    zone = zone_for_hostname(hostname)
    if zone is None:
        if not customer_managed and _unmanaged_policy() == "refuse":
            raise ValidationError(
                {
                    "hostname": f"{hostname} is outside every DNS zone the panel manages. Use "
                    "a hostname in a managed zone, or mark its DNS as customer-managed."
                }
            )
        return None
    reason = hostname_reserved_reason(hostname, zone)
    if reason:
        raise ValidationError({"hostname": reason})
    if probe:
        try:
            types = provider_for(zone.account).name_types(_zone_ref(zone), hostname)
        except DnsError as exc:
            log.warning("could not look up %s in zone %s: %s", hostname, zone.name, exc)
            raise ValidationError(
                {
                    "hostname": f"The DNS zone {zone.name} could not be checked for "
                    f"{hostname} just now; try again in a few minutes."
                }
            ) from exc
        owned = set(
            DnsRecord.objects.filter(
                zone=zone, name=hostname, owned=True, instance=instance
            ).values_list("rtype", flat=True)
            if instance is not None
            else ()
        )
        if set(types) - owned:
            raise ValidationError(
                {
                    "hostname": f"{hostname} already exists in the DNS zone {zone.name} and was "
                    "not made by the panel for this instance; choose another hostname."
                }
            )
    return zone


def hostname_reserved_reason(hostname: str, zone: DnsZone) -> str:
    """Why ``hostname`` in managed ``zone`` is reserved for the platform (empty if it is not):
    the zone apex and names whose leftmost label is in ``PANEL_DNS_RESERVED_LABELS``."""
    hostname = hostname.lower().rstrip(".")
    labels = set(settings.PANEL_DNS_RESERVED_LABELS)
    if hostname == zone.name and "@" in labels:
        return f"{hostname} is the apex of the DNS zone {zone.name}; it is reserved."
    first = hostname.split(".", 1)[0]
    if first in labels:
        return (
            f"{hostname} is reserved in the DNS zone {zone.name}: names starting with "
            f"{first}. are kept for the platform."
        )
    return ""


def instance_hostname_check(hostname: str) -> None:
    """INSTANCE_HOSTNAME_CHECKS hook (provisioning forms and API): the managed-zone checks of
    :func:`hostname_dns_check` for a new instance."""
    hostname_dns_check(hostname, customer_managed=True)


def _unmanaged_policy() -> str:
    return getattr(settings, "PANEL_DNS_UNMANAGED", "") or "customer"


def dns_target(instance: AtlassianInstance) -> tuple[str, str]:
    """The record an instance's hostname needs: A/AAAA to its host's address, or a CNAME."""
    address = proxy.public_address(instance.host)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return DnsRecord.Type.CNAME, address.rstrip(".")
    return (DnsRecord.Type.AAAA if ip.version == 6 else DnsRecord.Type.A), str(ip)


def dns_customer_managed_mark(*, actor: Access, instance: AtlassianInstance) -> DnsRecord:
    """Accept that the customer runs the DNS of ``instance``'s hostname (the panel shows the
    record to create and checks it)."""
    rtype, value = dns_target(instance) if instance.host else (DnsRecord.Type.A, "")
    record, _ = DnsRecord.objects.update_or_create(
        instance=instance,
        name=instance.hostname,
        rtype=rtype,
        defaults={
            "zone": None,
            "customer_managed": True,
            "value": value,
            "status": DnsRecord.Status.WAITING,
        },
    )
    audit_record(
        actor=actor,
        action="dns.customer_managed",
        target=instance,
        changes={"hostname": instance.hostname},
    )
    return record


# --- DNS records of an instance -------------------------------------------------------------


def dns_publish(ctx: OperationContext, instance: AtlassianInstance) -> list[DnsRecord]:
    """Create the record of ``instance``'s hostname in its managed zone, or replace it when the
    panel already owns it (one batch per zone); outside managed zones, record what the customer
    must create. A name that exists at the provider and is not the instance's is refused by
    the provider itself (Route53 CREATE, an RFC 2136 prerequisite) and left alone."""
    if instance.host is None:
        raise OperationFailed(f"{instance.name} has no host; its DNS record cannot be made.")
    rtype, value = dns_target(instance)
    zone = zone_for_hostname(instance.hostname)
    marked = DnsRecord.objects.filter(instance=instance, customer_managed=True).exists()
    stale = DnsRecord.objects.filter(instance=instance).exclude(name=instance.hostname, rtype=rtype)
    if zone is None:
        if not marked and _unmanaged_policy() == "refuse":
            raise OperationFailed(
                f"{instance.hostname} is outside every DNS zone the panel manages "
                f"({', '.join(DnsZone.objects.values_list('name', flat=True)) or 'none'}). "
                "A platform admin must add its zone, or mark the instance's DNS as "
                "customer-managed; then retry."
            )
        _records_remove(ctx, instance, list(stale.select_related("zone__account")))
        record, _ = DnsRecord.objects.update_or_create(
            instance=instance,
            name=instance.hostname,
            rtype=rtype,
            defaults={
                "zone": None,
                "customer_managed": True,
                "owned": False,
                "value": value,
                "status": DnsRecord.Status.WAITING,
                "ttl": 300,
            },
        )
        ctx.step(
            f"DNS of {instance.hostname} is customer-managed: the customer must create "
            f"{instance.hostname} {rtype} {value}; the panel checks it and requests the "
            "certificate once it resolves.",
            level="warning",
        )
        return [record]
    reason = hostname_reserved_reason(instance.hostname, zone)
    if reason:
        raise OperationFailed(f"The DNS record of {instance.hostname} was not made: {reason}")
    if rtype == DnsRecord.Type.CNAME and instance.hostname == zone.name:
        raise OperationFailed(f"{zone.name} is a zone apex; it cannot be a CNAME to {value}.")
    owned = list(
        DnsRecord.objects.filter(instance=instance, zone=zone, owned=True, name=instance.hostname)
    )
    if any(r.rtype == rtype for r in owned):
        change = RecordChange("upsert", instance.hostname, rtype, (value,), zone.default_ttl)
    else:
        # A first record: only if the name is free, or holds only this instance's own records.
        change = RecordChange(
            "create", instance.hostname, rtype, (value,), zone.default_ttl, name_unused=not owned
        )
    old = [r for r in stale.select_related("zone") if r.owned and r.zone_id == zone.pk]
    changes = [change] + [RecordChange("delete", r.name, r.rtype, (r.value,)) for r in old]
    provider = provider_for(zone.account, log=ctx.step)
    ctx.add_secrets(str(v) for v in zone.account.credentials.values())
    try:
        result = provider.apply(_zone_ref(zone), changes)
    except DnsError as exc:
        record, _ = DnsRecord.objects.get_or_create(
            instance=instance,
            name=instance.hostname,
            rtype=rtype,
            defaults={"zone": zone, "value": value, "ttl": zone.default_ttl},
        )
        DnsRecord.objects.filter(pk=record.pk).update(
            status=DnsRecord.Status.FAILED, detail=str(exc)
        )
        if isinstance(exc, DnsConflict):
            raise OperationFailed(
                f"The DNS record of {instance.hostname} was not made: the name already exists "
                f"in the zone {zone.name} and is not this instance's, so the panel leaves it "
                "alone. Choose another hostname (or a platform admin removes the existing "
                "record), then retry."
            ) from exc
        raise OperationFailed(f"The DNS record of {instance.hostname} was not made: {exc}") from exc
    for note in result.skipped:
        ctx.step(f"DNS: {note}", level="warning")
    DnsRecord.objects.filter(pk__in=[r.pk for r in old]).delete()
    _records_remove(ctx, instance, list(stale.select_related("zone__account")))
    record, _ = DnsRecord.objects.update_or_create(
        instance=instance,
        name=instance.hostname,
        rtype=rtype,
        defaults={
            "zone": zone,
            "customer_managed": False,
            "owned": True,
            "value": value,
            "ttl": zone.default_ttl,
            "status": DnsRecord.Status.PUBLISHED,
            "detail": "",
            "change_id": result.change_id,
            "published_at": timezone.now(),
        },
    )
    verb = "replaced" if change.action == "upsert" else "created"
    ctx.step(
        f"DNS: {verb} {instance.hostname} {rtype} {value} in zone {zone.name} ({result.change_id})"
    )
    return [record]


def _records_remove(
    ctx: OperationContext, instance: AtlassianInstance, records: list[DnsRecord]
) -> None:
    """Delete ``records`` of ``instance``: the owned ones at their provider (only the values
    the panel wrote; one batch per zone), the others only here. Never touches a record the
    panel did not make."""
    by_zone: dict[DnsZone, list[DnsRecord]] = defaultdict(list)
    for record in records:
        if record.owned and record.zone is not None:
            by_zone[record.zone].append(record)
    for zone, owned in by_zone.items():
        changes = [RecordChange("delete", r.name, r.rtype, (r.value,)) for r in owned]
        ctx.add_secrets(str(v) for v in zone.account.credentials.values())
        try:
            result = provider_for(zone.account, log=ctx.step).apply(_zone_ref(zone), changes)
        except DnsError as exc:
            raise OperationFailed(
                f"The DNS records of {instance.name} were not removed: {exc}"
            ) from exc
        for note in result.skipped:
            ctx.step(f"DNS: {note}", level="warning")
        ctx.step(f"DNS: removed {', '.join(r.name + ' ' + r.rtype for r in owned)} from {zone}")
    kept = [r for r in records if r.zone is not None and not r.owned]
    if kept:
        ctx.step(
            "DNS: left "
            + ", ".join(f"{r.name} {r.rtype}" for r in kept)
            + " in place: the panel did not create them."
        )
    DnsRecord.objects.filter(pk__in=[r.pk for r in records]).delete()


def dns_unpublish(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """Remove the records the panel created for the instance (one batch per zone); records
    it did not create are left at the provider."""
    _records_remove(
        ctx, instance, list(DnsRecord.objects.filter(instance=instance).select_related("zone"))
    )
    DnsRecord.objects.filter(instance=instance).delete()


def dns_record_check(record: DnsRecord) -> DnsRecord:
    """Check a customer-managed record through ``PANEL_DNS_CHECK_NAMESERVERS`` (or the
    system's resolver) and store what was found."""
    try:
        values = records_resolve(record.name, record.rtype, nameservers=_check_nameservers())
    except DnsError as exc:
        values, detail = [], str(exc)
    else:
        detail = ", ".join(values) or "no such record"
    if record.value in values:
        status = DnsRecord.Status.VERIFIED
        detail = f"{record.name} {record.rtype} {record.value} resolves as it should."
    elif values:
        status = DnsRecord.Status.WRONG
        detail = (
            f"{record.name} {record.rtype} resolves to {', '.join(values)}; it must be "
            f"{record.value}."
        )
    else:
        status = DnsRecord.Status.WAITING
        detail = f"{record.name} {record.rtype} does not resolve yet ({detail})."
    DnsRecord.objects.filter(pk=record.pk).update(
        status=status, detail=detail, checked_at=timezone.now()
    )
    record.status, record.detail = status, detail
    return record


def dns_customer_records_check() -> int:
    """Periodic: check customer-managed records; once one resolves, request the certificate
    that waited for it. Returns how many were checked."""
    checked = 0
    for record in DnsRecord.objects.filter(customer_managed=True).select_related("instance"):
        if record.instance.status not in LIVE_STATUSES:
            continue
        before = record.status
        dns_record_check(record)
        checked += 1
        if record.status == DnsRecord.Status.VERIFIED and before != record.status:
            cert = Certificate.objects.filter(instance=record.instance).first()
            if cert is not None and cert.status != Certificate.Status.VALID and acme_directory():
                _start_quietly(cert, OperationKind.CERTIFICATE_ISSUE, actor=None)
    return checked


# --- certificates ---------------------------------------------------------------------------


def acme_account_for(directory_url: str) -> AcmeAccount:
    """The panel's account at ``directory_url`` (its key made and stored encrypted once)."""
    account = AcmeAccount.objects.filter(directory_url=directory_url).first()
    if account is None:
        account, _ = AcmeAccount.objects.get_or_create(
            directory_url=directory_url,
            defaults={
                "key": private_key_generate("ec256"),
                "email": getattr(settings, "PANEL_ACME_EMAIL", "") or "",
            },
        )
    return account


def certificate_for_instance(instance: AtlassianInstance) -> Certificate:
    """The certificate ``instance``'s site uses: its zone's wildcard when the zone asks for one
    and the hostname is directly below it, else its own (HTTP-01)."""
    zone = zone_for_hostname(instance.hostname)
    if zone is not None and zone.wildcard and instance.hostname.split(".", 1)[-1] == zone.name:
        cert, _ = Certificate.objects.get_or_create(
            zone=zone,
            instance=None,
            defaults={"names": [f"*.{zone.name}", zone.name], "challenge": "dns-01"},
        )
        return cert
    cert, created = Certificate.objects.get_or_create(
        instance=instance, defaults={"names": [instance.hostname], "challenge": "http-01"}
    )
    if not created and cert.names != [instance.hostname]:
        Certificate.objects.filter(pk=cert.pk).update(
            names=[instance.hostname], status=Certificate.Status.PENDING, certificate_pem=""
        )
        cert.refresh_from_db()
    return cert


def certificate_placeholder_ensure(cert: Certificate) -> Certificate:
    """Give a certificate that has none yet a self-signed stand-in the proxy can serve."""
    if cert.certificate_pem and cert.private_key:
        return cert
    key = private_key_generate(_key_kind())
    pem = self_signed_generate(cert.names, key)
    parsed = certificate_parse(pem)
    Certificate.objects.filter(pk=cert.pk).update(
        private_key=key,
        certificate_pem=parsed.certificate_pem,
        chain_pem="",
        issuer=parsed.issuer,
        serial=parsed.serial,
        not_before=parsed.not_before,
        not_after=parsed.not_after,
        status=Certificate.Status.PLACEHOLDER,
    )
    cert.refresh_from_db()
    return cert


def _key_kind() -> str:
    return getattr(settings, "PANEL_CERTIFICATE_KEY_TYPE", "") or "ec256"


def renew_after(not_before: datetime, not_after: datetime) -> datetime:
    """Renew when a third of the lifetime is left (whatever the lifetime is)."""
    return not_before + (not_after - not_before) * 2 / 3


def _retry_delay(failures: int) -> timedelta:
    base = float(getattr(settings, "PANEL_ACME_RETRY_BASE_SECONDS", 3600))
    return timedelta(seconds=min(base * 2 ** max(failures - 1, 0), 24 * 3600))


class _HttpSolver:
    """HTTP-01: the key authorization as a file the host's proxy serves on port 80."""

    def __init__(self, conn: HostConnection, layout: proxy.ProxyLayout) -> None:
        self.conn, self.layout = conn, layout

    def http01_publish(self, token: str, key_authorization: str) -> None:
        self.conn.upload(
            self.layout.challenge_path(token),
            key_authorization,
            mode=0o644,
            message=f"Published the HTTP-01 challenge {token[:12]}… on the proxy",
        )

    def http01_cleanup(self, token: str) -> None:
        self.conn.run(
            ["rm", "-f", self.layout.challenge_path(token)],
            message="Removed the HTTP-01 challenge file",
        )

    def dns01_publish(self, records: dict[str, list[str]]) -> None:  # pragma: no cover
        raise AcmeError("this certificate is validated over HTTP")

    dns01_cleanup = dns01_publish


class _DnsSolver:
    """DNS-01: TXT records through the zone's provider, all in one batch."""

    def __init__(self, zone: DnsZone, ctx: OperationContext) -> None:
        self.zone = zone
        self.provider = provider_for(zone.account, log=ctx.step)
        self.ctx = ctx

    def dns01_publish(self, records: dict[str, list[str]]) -> None:
        changes = [RecordChange("upsert", n, "TXT", tuple(v), 60) for n, v in records.items()]
        try:
            self.provider.apply(_zone_ref(self.zone), changes)
        except DnsError as exc:
            raise AcmeError(f"The DNS-01 TXT records could not be published: {exc}") from exc
        self.ctx.step(
            f"Published {sum(map(len, records.values()))} DNS-01 TXT value(s) in {self.zone.name}"
        )

    def dns01_cleanup(self, records: dict[str, list[str]]) -> None:
        self.provider.apply(
            _zone_ref(self.zone), [RecordChange("delete", n, "TXT") for n in records]
        )

    def http01_publish(self, token: str, key_authorization: str) -> None:  # pragma: no cover
        raise AcmeError("this certificate is validated through DNS")

    http01_cleanup = http01_publish


def _status_after_failure(status: str) -> str:
    # A valid certificate stays valid (it still serves); a placeholder stays what is served.
    if status in (Certificate.Status.VALID, Certificate.Status.PLACEHOLDER):
        return status
    return Certificate.Status.FAILED


def _budget_check(cert: Certificate, now: datetime) -> str:
    domain = registered_domain(cert.names[0])
    used = CertificateOrder.objects.filter(
        registered_domain=domain, created_at__gte=now - timedelta(days=7)
    ).count()
    budget = _weekly_budget()
    if used >= budget:
        oldest = (
            CertificateOrder.objects.filter(
                registered_domain=domain, created_at__gte=now - timedelta(days=7)
            )
            .order_by("created_at")
            .first()
        )
        when = oldest.created_at + timedelta(days=7) if oldest else now
        raise AcmeError(
            f"The weekly budget of {budget} new orders for {domain} is used up ({used} in the "
            f"last 7 days); the next one is possible after {when:%Y-%m-%d %H:%M} UTC. "
            "(PANEL_ACME_WEEKLY_ORDER_BUDGET keeps the panel below the CA's limit.)"
        )
    return domain


def certificate_obtain(ctx: OperationContext, cert: Certificate) -> Certificate:
    """Order ``cert`` from the configured CA and store the result (key encrypted). On failure
    the certificate keeps what it had and is retried later with a growing delay."""
    directory = acme_directory()
    if not directory:
        raise AcmeError("No ACME CA is configured (PANEL_ACME_DIRECTORY).")
    now = timezone.now()
    domain = _budget_check(cert, now)
    account = acme_account_for(directory)
    session = AcmeSession(
        directory,
        account.key,
        account_uri=account.uri,
        ca_bundle=_acme_ca_bundle(),
        log=ctx.step,
        tries=int(getattr(settings, "PANEL_ACME_TRIES", 4)),
        backoff=float(getattr(settings, "PANEL_ACME_BACKOFF", 1.0)),
        timeout=float(getattr(settings, "PANEL_ACME_TIMEOUT", 120)),
    )
    key = private_key_generate(_key_kind())
    order = CertificateOrder.objects.create(
        certificate=cert, registered_domain=domain, names=cert.names, directory_url=directory
    )
    ctx.step(
        f"Ordering a certificate for {', '.join(cert.names)} from {directory} "
        f"({cert.challenge}); order {order.pk} for {domain} this week"
    )
    try:
        if cert.challenge == Certificate.Challenge.DNS01:
            zone = cert.zone or zone_for_hostname(cert.names[0].removeprefix("*."))
            if zone is None:
                raise AcmeError(f"DNS-01 needs a managed zone for {cert.names[0]}.")
            issued = session.certificate_order(
                cert.names,
                key,
                challenge="dns-01",
                solver=_DnsSolver(zone, ctx),
                email=account.email,
            )
        else:
            instance = cert.instance
            if instance is None or instance.host is None:
                raise AcmeError("HTTP-01 needs the instance's host to serve the challenge.")
            with HostConnection(SSHTarget.for_host(instance.host), ctx=ctx) as conn:
                layout = proxy.proxy_ensure(conn, instance.host)
                issued = session.certificate_order(
                    cert.names,
                    key,
                    challenge="http-01",
                    solver=_HttpSolver(conn, layout),
                    email=account.email,
                )
    except (AcmeError, RemoteError, DnsError) as exc:
        order.succeeded = False
        order.save(update_fields=["succeeded"])
        failures = cert.failures + 1
        Certificate.objects.filter(pk=cert.pk).update(
            failures=failures,
            last_error=str(exc),
            next_attempt_at=now + _retry_delay(failures),
            status=_status_after_failure(cert.status),
        )
        raise
    finally:
        if session.account_uri and session.account_uri != account.uri:
            AcmeAccount.objects.filter(pk=account.pk).update(uri=session.account_uri)
    order.succeeded = True
    order.save(update_fields=["succeeded"])
    Certificate.objects.filter(pk=cert.pk).update(
        private_key=key,
        certificate_pem=issued.certificate_pem,
        chain_pem=issued.chain_pem,
        issuer=issued.issuer,
        serial=issued.serial,
        not_before=issued.not_before,
        not_after=issued.not_after,
        issued_at=timezone.now(),
        renew_after=renew_after(issued.not_before, issued.not_after),
        status=Certificate.Status.VALID,
        acme_account=account,
        failures=0,
        next_attempt_at=None,
        last_error="",
    )
    cert.refresh_from_db()
    return cert


# --- the proxy site of an instance ------------------------------------------------------------


def site_deploy(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance, cert: Certificate
) -> ProxySite:
    """Render and deploy ``instance``'s site (and its certificate file) on its host's proxy."""
    layout = proxy.proxy_ensure(conn, instance.host)
    config = proxy.site_render(instance, cert)
    site, _ = ProxySite.objects.get_or_create(instance=instance)
    files = [
        (layout.certificate_path(cert), proxy.certificate_file_content(cert), 0o600),
        (layout.site_path(instance), config, 0o644),
    ]
    ctx.add_secrets([cert.private_key])
    try:
        proxy.proxy_files_deploy(conn, layout, files, what=f"the site of {instance.hostname}")
    except proxy.ProxyConfigRefused as exc:
        ProxySite.objects.filter(pk=site.pk).update(
            status=ProxySite.Status.FAILED
            if site.status != ProxySite.Status.DEPLOYED
            else site.status,
            last_error=str(exc),
        )
        raise OperationFailed(str(exc)) from exc
    ProxySite.objects.filter(pk=site.pk).update(
        host=instance.host,
        certificate=cert,
        status=ProxySite.Status.DEPLOYED,
        config=config,
        config_hash=proxy.config_hash(config),
        deployed_at=timezone.now(),
        last_error="",
    )
    site.refresh_from_db()
    ctx.step(
        f"Proxy serves https://{instance.hostname}{instance.context_path} with "
        f"{'a placeholder' if cert.status != Certificate.Status.VALID else 'the'} certificate "
        f"{cert.serial[:16]}"
    )
    return site


def certificate_deploy(ctx: OperationContext, cert: Certificate) -> int:
    """Put ``cert`` (new key and chain) on every host whose proxy uses it, atomically, and
    reload those proxies (graceful: open connections finish on the old certificate)."""
    sites = list(
        ProxySite.objects.filter(certificate=cert, status=ProxySite.Status.DEPLOYED)
        .exclude(instance__status=InstanceStatus.DELETED)
        .select_related("instance__host", "instance__tenant")
    )
    if cert.instance_id and not sites and cert.instance.host is not None:
        sites = [ProxySite(instance=cert.instance)]
    by_host: dict[Any, list[ProxySite]] = defaultdict(list)
    for site in sites:
        if site.instance.host is not None:
            by_host[site.instance.host].append(site)
    ctx.add_secrets([cert.private_key])
    for host, host_sites in by_host.items():
        with HostConnection(SSHTarget.for_host(host), ctx=ctx) as conn:
            for site in host_sites:
                site_deploy(ctx, conn, site.instance, cert)
    return len(sites)


def instance_publish(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """PUBLISH_HOOK: DNS record, proxy site (placeholder certificate first, so the site works at
    once), the CA's certificate when it can be validated, then the consistency check."""
    instance = AtlassianInstance.objects.select_related("host", "tenant").get(pk=instance.pk)
    ctx.step(f"Publishing https://{instance.hostname}{instance.context_path}")
    records = dns_publish(ctx, instance)
    cert = certificate_placeholder_ensure(certificate_for_instance(instance))
    try:
        with HostConnection(SSHTarget.for_host(instance.host), ctx=ctx) as conn:
            site_deploy(ctx, conn, instance, cert)
    except RemoteError as exc:
        raise OperationFailed(
            f"The proxy site of {instance.hostname} was not deployed: {exc}"
        ) from exc
    dns_ready = all(r.ok for r in records)
    if cert.status == Certificate.Status.VALID and not cert.expires_within(0):
        ctx.step(f"Certificate {cert} is valid until {cert.not_after:%Y-%m-%d}")
    elif not acme_directory():
        ctx.step(
            "No ACME CA is configured: the proxy serves a self-signed placeholder.", level="warning"
        )
    elif not dns_ready:
        ctx.step(
            "The certificate is requested once the customer's DNS record resolves.", level="warning"
        )
    else:
        try:
            cert = certificate_obtain(ctx, cert)
        except (AcmeError, RemoteError, DnsError) as exc:
            ctx.step(
                f"The certificate was not issued: {exc} The proxy serves a placeholder; the "
                "panel tries again later.",
                level="warning",
            )
        else:
            certificate_deploy(ctx, cert)
    endpoint_check_safely(instance, ctx=ctx)


def instance_unpublish(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """UNPUBLISH_HOOK (instance delete): remove the proxy site and DNS records."""
    site = ProxySite.objects.filter(instance=instance).select_related("certificate").first()
    if instance.host is not None and site is not None and site.status != ProxySite.Status.REMOVED:
        layout = proxy.ProxyLayout.for_host(instance.host)
        paths = [layout.site_path(instance)]
        if site.certificate is not None and site.certificate.instance_id == instance.pk:
            paths.append(layout.certificate_path(site.certificate))
        try:
            with HostConnection(SSHTarget.for_host(instance.host), ctx=ctx) as conn:
                if conn.exists(layout.directory):
                    proxy.proxy_files_remove(conn, layout, paths)
        except RemoteError as exc:
            raise OperationFailed(
                f"The proxy site of {instance.name} was not removed: {exc}"
            ) from exc
        ProxySite.objects.filter(pk=site.pk).update(status=ProxySite.Status.REMOVED)
    dns_unpublish(ctx, instance)


def endpoint_check_safely(
    instance: AtlassianInstance, *, ctx: OperationContext | None = None
) -> list[dict]:
    """Run the consistency check, logging its problems into ``ctx``; never raises."""
    from certificates.checks import endpoint_check

    try:
        problems = endpoint_check(instance)
    except Exception as exc:  # noqa: BLE001 - a failing check must not fail the operation
        log.exception("consistency check of %s failed", instance.name)
        if ctx is not None:
            ctx.step(f"The consistency check could not run: {exc}", level="warning")
        return []
    if ctx is not None:
        for p in problems:
            ctx.step(f"Consistency: {p['problem']} Fix: {p['fix']}", level="warning")
        if not problems:
            ctx.step(
                "Consistency: DNS, certificate, proxy and the application's connector agree "
                f"on {instance.base_url}"
            )
    return problems


# --- requests (people and schedules) -------------------------------------------------------------


def _lock_key(cert: Certificate) -> str:
    from provisioning.services import instance_lock_key

    if cert.instance_id:
        return instance_lock_key(cert.instance)
    return f"certificate:{cert.pk}"


def certificate_renew(
    *, actor: Access | None, certificate: Certificate, idempotency_key: str = ""
) -> Any:
    """Start renewing ``certificate`` now (staff, or the renewal schedule)."""
    if not acme_directory():
        raise ValidationError("No ACME CA is configured (PANEL_ACME_DIRECTORY).")
    return operation_start(
        kind=OperationKind.CERTIFICATE_RENEW,
        actor=actor,
        instance=certificate.instance,
        tenant=certificate.instance.tenant if certificate.instance_id else None,
        params={"certificate": str(certificate.pk)},
        lock_key=_lock_key(certificate),
        idempotency_key=idempotency_key,
    )


def instance_certificate_renew(
    *, actor: Access, instance: AtlassianInstance, idempotency_key: str = ""
) -> Any:
    """Renew the certificate ``instance``'s site uses (staff)."""
    site = ProxySite.objects.filter(instance=instance).select_related("certificate").first()
    cert = site.certificate if site and site.certificate else certificate_for_instance(instance)
    if cert.instance_id is None:
        # A zone's wildcard: the operation is about the certificate, shown on this instance.
        return operation_start(
            kind=OperationKind.CERTIFICATE_RENEW,
            actor=actor,
            instance=instance,
            params={"certificate": str(cert.pk)},
            lock_key=f"certificate:{cert.pk}",
            idempotency_key=idempotency_key,
        )
    return certificate_renew(actor=actor, certificate=cert, idempotency_key=idempotency_key)


def proxy_deploy(*, actor: Access, instance: AtlassianInstance, idempotency_key: str = "") -> Any:
    """Render and deploy the instance's proxy site again (tenant admins and staff)."""
    if instance.status not in LIVE_STATUSES or instance.host is None:
        raise ValidationError(f"{instance.name} is {instance.status}; it has no proxy site.")
    return operation_start(
        kind=OperationKind.PROXY_DEPLOY,
        actor=actor,
        instance=instance,
        lock_key=_instance_lock(instance),
        idempotency_key=idempotency_key,
    )


def dns_update(*, actor: Access, instance: AtlassianInstance, idempotency_key: str = "") -> Any:
    """Publish the instance's DNS records again."""
    if instance.status not in LIVE_STATUSES or instance.host is None:
        raise ValidationError(f"{instance.name} is {instance.status}; it has no DNS records.")
    return operation_start(
        kind=OperationKind.DNS_UPDATE,
        actor=actor,
        instance=instance,
        lock_key=_instance_lock(instance),
        idempotency_key=idempotency_key,
    )


def _instance_lock(instance: AtlassianInstance) -> str:
    from provisioning.services import instance_lock_key

    return instance_lock_key(instance)


def _start_quietly(cert: Certificate, kind: str, *, actor: Access | None) -> Any:
    try:
        with transaction.atomic():
            return operation_start(
                kind=kind,
                actor=actor,
                instance=cert.instance,
                tenant=cert.instance.tenant if cert.instance_id else None,
                params={"certificate": str(cert.pk)},
                lock_key=_lock_key(cert),
            )
    except OperationConflict as exc:
        log.info("certificate %s: target busy (%s); next run will try again", cert.pk, exc)
        return None


def certificates_due(now: datetime | None = None) -> list[Certificate]:
    """Certificates to (re)issue now: a third of the lifetime left, or never issued / failed,
    and not waiting out a retry delay."""
    now = now or timezone.now()
    live = Q(instance__isnull=True, zone__wildcard=True) | Q(instance__status__in=LIVE_STATUSES)
    due = Q(status=Certificate.Status.VALID, renew_after__lte=now) | Q(
        status__in=[
            Certificate.Status.PLACEHOLDER,
            Certificate.Status.FAILED,
            Certificate.Status.EXPIRED,
        ]
    )
    waiting = Q(next_attempt_at__gt=now)
    certs = list(
        Certificate.objects.filter(live & due).exclude(waiting).select_related("instance__tenant")
    )
    ready = []
    for cert in certs:
        if cert.instance_id and cert.status != Certificate.Status.VALID:
            records = list(DnsRecord.objects.filter(instance_id=cert.instance_id))
            if not records or not all(r.ok for r in records):
                continue  # waits for its DNS record (customer-managed, checked separately)
        ready.append(cert)
    return ready


def certificates_renew_due(now: datetime | None = None) -> list[str]:
    """The renewal schedule: start an operation for every due certificate; mark expired ones.
    Returns the ids of the operations started."""
    now = now or timezone.now()
    Certificate.objects.filter(status=Certificate.Status.VALID, not_after__lte=now).update(
        status=Certificate.Status.EXPIRED
    )
    if not acme_directory():
        return []
    started = []
    for cert in certificates_due(now):
        kind = (
            OperationKind.CERTIFICATE_RENEW
            if cert.status in (Certificate.Status.VALID, Certificate.Status.EXPIRED)
            else OperationKind.CERTIFICATE_ISSUE
        )
        op = _start_quietly(cert, kind, actor=None)
        if op is not None:
            started.append(str(op.id))
    for cert in Certificate.objects.filter(
        status=Certificate.Status.VALID, not_after__lte=now + timedelta(days=14)
    ):
        log.warning(
            "certificate %s (%s) expires %s", cert.pk, ", ".join(cert.names), cert.not_after
        )
    return started


def endpoint_check_request(instance: AtlassianInstance) -> None:
    """Run the consistency check of ``instance`` in the background, after commit."""
    from certificates.tasks import endpoint_check

    transaction.on_commit(lambda: _enqueue_quietly(endpoint_check, str(instance.pk)))


def _enqueue_quietly(task: Any, *args: Any) -> None:
    try:
        task.delay(*args)
    except Exception as exc:  # noqa: BLE001 - the periodic check runs anyway
        log.warning("could not enqueue %s: %s", task.name, exc)


# The provisioning forms and API run this on every new instance's hostname.
if instance_hostname_check not in validators.INSTANCE_HOSTNAME_CHECKS:
    validators.INSTANCE_HOSTNAME_CHECKS.append(instance_hostname_check)
