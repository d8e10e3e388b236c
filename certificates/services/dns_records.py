"""DNS records of instances: which managed zone a hostname is in, whether a hostname may be
used, the record it needs, and publishing and removing it at the zone's provider (inside an
Operation, with its :class:`~panel.operations.OperationContext`). Customer-managed records are
checked through a resolver.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from certificates import proxy
from certificates.dns import (
    DnsConflict,
    DnsError,
    RecordChange,
    ZoneRef,
    provider_for,
    records_resolve,
)
from certificates.models import DnsRecord, DnsZone
from panel.operations import OperationContext, OperationFailed
from provisioning import validators
from provisioning.models import AtlassianInstance

log = logging.getLogger(__name__)


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


def zone_ref(zone: DnsZone) -> ZoneRef:
    """How the zone's provider names ``zone`` (its name and the provider's own zone id)."""
    return ZoneRef(zone.name, zone.provider_zone_id)


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
        if not customer_managed and settings.PANEL_DNS_UNMANAGED == "refuse":
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
            types = provider_for(zone.account).name_types(zone_ref(zone), hostname)
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


def instance_hostname_check(hostname: str) -> None:
    """INSTANCE_HOSTNAME_CHECKS hook (provisioning forms and API): the managed-zone checks of
    :func:`hostname_dns_check` for a new instance."""
    hostname_dns_check(hostname, customer_managed=True)


def dns_target(instance: AtlassianInstance) -> tuple[str, str]:
    """The record an instance's hostname needs: A/AAAA to its host's address, or a CNAME."""
    address = proxy.public_address(instance.host)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return DnsRecord.Type.CNAME, address.rstrip(".")
    return (DnsRecord.Type.AAAA if ip.version == 6 else DnsRecord.Type.A), str(ip)


def customer_record_put(instance: AtlassianInstance, *, rtype: str, value: str) -> DnsRecord:
    """The record the customer must create for ``instance`` (in a zone the panel does not
    manage): stored so the page can show it and the periodic check can look for it."""
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
    return record


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
        if not marked and settings.PANEL_DNS_UNMANAGED == "refuse":
            raise OperationFailed(
                f"{instance.hostname} is outside every DNS zone the panel manages "
                f"({', '.join(DnsZone.objects.values_list('name', flat=True)) or 'none'}). "
                "A platform admin must add its zone, or mark the instance's DNS as "
                "customer-managed; then retry."
            )
        _records_remove(ctx, instance, list(stale.select_related("zone__account")))
        record = customer_record_put(instance, rtype=rtype, value=value)
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
        result = provider.apply(zone_ref(zone), changes)
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
            result = provider_for(zone.account, log=ctx.step).apply(zone_ref(zone), changes)
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
        values = records_resolve(
            record.name, record.rtype, nameservers=settings.PANEL_DNS_CHECK_NAMESERVERS
        )
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


# The provisioning forms and API run this on every new instance's hostname.
if instance_hostname_check not in validators.INSTANCE_HOSTNAME_CHECKS:
    validators.INSTANCE_HOSTNAME_CHECKS.append(instance_hostname_check)
