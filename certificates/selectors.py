"""Reads of the certificates app, always through ``for_user`` scoping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from certificates.models import Certificate, DnsRecord, DnsZone, ProxySite
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
    return DnsZone.objects.for_user(access).select_related("account")
