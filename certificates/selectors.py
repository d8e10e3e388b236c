"""Reads of the certificates app, always through ``for_user`` scoping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from certificates.models import Certificate, DnsProviderAccount, DnsRecord, DnsZone, ProxySite
from panel.access import Access
from provisioning.models import AtlassianInstance

ALERT_DAYS = 14


def certificates_expiring(access: Access, days: int = ALERT_DAYS) -> QuerySet:
    """Issued certificates the caller sees that expire within ``days`` (default 14)."""
    return (
        Certificate.objects.for_user(access)
        .filter(
            status__in=[Certificate.Status.VALID, Certificate.Status.EXPIRED],
            not_after__lte=timezone.now() + timedelta(days=days),
        )
        .select_related("instance")
        .order_by("not_after")
    )


def instance_endpoint(access: Access, instance: AtlassianInstance) -> dict[str, Any]:
    """Everything the instance page shows about its address: DNS records, the certificate its
    proxy serves, the proxy site and the last consistency check. ``instance`` was already
    looked up through the caller's scope."""
    site = (
        ProxySite.objects.for_user(access)
        .filter(instance=instance)
        .select_related("certificate")
        .first()
    )
    cert = site.certificate if site is not None else None
    if cert is None:
        cert = Certificate.objects.for_user(access).filter(instance=instance).first()
    records = list(DnsRecord.objects.for_user(access).filter(instance=instance))
    return {
        "site": site,
        "certificate": cert,
        "records": records,
        "problems": site.problems if site is not None else [],
        "checked_at": site.checked_at if site is not None else None,
    }


def zone_list(access: Access) -> QuerySet:
    """Managed zones the caller sees (platform admins only), with their account."""
    return DnsZone.objects.for_user(access).select_related("account")


def dns_account_list(access: Access) -> QuerySet[DnsProviderAccount]:
    """DNS provider accounts (platform admins only; nobody else sees any), with their zones."""
    return DnsProviderAccount.objects.for_user(access).prefetch_related("zones")


def dns_account_get(access: Access, pk: Any) -> DnsProviderAccount:
    """One account the caller sees, else 404."""
    return get_object_or_404(DnsProviderAccount.objects.for_user(access), pk=pk)


def dns_zone_list(access: Access) -> QuerySet[DnsZone]:
    """Managed zones with their account and how many instance records each holds."""
    return zone_list(access).annotate(record_count=Count("records"))


def dns_zone_get(access: Access, pk: Any) -> DnsZone:
    """One zone the caller sees, else 404."""
    return get_object_or_404(zone_list(access), pk=pk)
