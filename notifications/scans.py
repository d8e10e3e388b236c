"""Conditions worth telling that no code path raises by itself, found by a periodic scan.

Failed operations (the runner's listener tells them at once; the scan catches one it missed),
expiring licenses, overdue certificates, degraded instances and full host disks. This app sits
on top of every other, so it reads their tables directly. Each scanner is registered in
``registry["notification_scans"]`` and returns how many notices it raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from certificates.models import Certificate
from notifications.models import NotificationEvent
from notifications.services import (
    CERTIFICATE_EXPIRING,
    HOST_DISK_FULL,
    OPERATION_FAILED,
    notice_sink,
)
from panel.notices import Notice, notify, notify_resolved
from panel.registry import registry
from panel.templatetags.panel_tags import kind_label
from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceHealth,
    InstanceStatus,
    License,
    Operation,
    OperationStatus,
)
from provisioning.selectors import host_mask

LICENSE_EXPIRING = "license.expiring"
INSTANCE_DEGRADED = "instance.degraded"

# Days before an expiry at which people are told (each threshold once).
EXPIRY_THRESHOLDS = (60, 30, 7, 1)


def expiry_threshold(days_left: int) -> int | None:
    """The smallest of 60/30/7/1 days that ``days_left`` is within (None beyond 60 days)."""
    for threshold in reversed(EXPIRY_THRESHOLDS):
        if days_left <= threshold:
            return threshold
    return None


def notify_expiring(
    *,
    event: str,
    tenant: Any,
    obj: models.Model,
    what: str,
    expires_on: date,
    url: str,
    today: date | None = None,
    advice: str = "Renew it before then to avoid an interruption.",
) -> NotificationEvent | None:
    """Tell about something that expires (a license, a certificate) at 60, 30, 7 and 1 days
    before ``expires_on``, once per threshold; a new expiry date starts over."""
    today = today or timezone.localdate()
    days = (expires_on - today).days
    threshold = expiry_threshold(days)
    if threshold is None:
        return None
    if days < 0:
        when = f"expired {-days} day{'s' if days != -1 else ''} ago, on {expires_on:%Y-%m-%d}"
    elif days == 0:
        when = f"expires today, {expires_on:%Y-%m-%d}"
    else:
        when = f"expires in {days} day{'s' if days != 1 else ''}, on {expires_on:%Y-%m-%d}"
    return notify(
        event=event,
        tenant=tenant,
        obj=obj,
        dedupe_key=f"{obj._meta.label_lower}:{obj.pk}:{expires_on:%Y-%m-%d}:{threshold}",
        subject=f"{what} {when.split(',')[0]}",
        body=f"{what} {when}. {advice}",
        url=url,
    )


def notify_operation_failed(operation: Any) -> NotificationEvent | None:
    """Tell the tenant (or staff, for host operations) that ``operation`` failed, once.

    Registered as the runner's ``operation_listeners["failed"]``; also run by the scan."""
    if operation.status != OperationStatus.FAILED:
        return None
    label = kind_label(operation.kind)
    target = operation.target_label
    subject = f"{label} of {target} failed" if target else f"{label} failed"
    reason = operation.error or "No reason was recorded."
    if operation.tenant_id is not None:
        # The tenant's people and webhook get the reason as a customer sees it on the page:
        # no host addresses, SSH users or backup-host names (panel/customer_view.py).
        reason = host_mask().text(reason)
    return notify(
        event=OPERATION_FAILED,
        tenant=operation.tenant,
        obj=operation,
        dedupe_key=f"operation:{operation.pk}",
        subject=subject,
        body=f"{subject}.\n\nWhy it failed: {reason}\n\nThe full step log is on the operation's "
        "page.",
        url=reverse("provisioning:operation_detail", args=[operation.pk]),
    )


def _not_yet_told(event: str, keys: dict[str, Any]) -> list[Any]:
    """The values of ``keys`` (dedupe key -> object) whose key has no open event yet."""
    if not keys:
        return []
    told = set(
        NotificationEvent.objects.filter(
            event=event, dedupe_key__in=list(keys), resolved_at=None
        ).values_list("dedupe_key", flat=True)
    )
    return [obj for key, obj in keys.items() if key not in told]


def operations_scan(now: datetime) -> int:
    """Failed operations of the last day the runner's listener did not tell (it crashed)."""
    failed = Operation.objects.filter(
        status=OperationStatus.FAILED, finished_at__gte=now - timedelta(days=1)
    ).select_related("tenant", "instance", "host")
    keys = {f"operation:{op.pk}": op for op in failed}
    return sum(
        notify_operation_failed(op) is not None for op in _not_yet_told(OPERATION_FAILED, keys)
    )


def licenses_scan(now: datetime) -> int:
    """Licenses (or their maintenance) expiring within 60 days, or expired in the last 30."""
    today = timezone.localdate(now)
    limit = today + timedelta(days=EXPIRY_THRESHOLDS[0])
    licenses = (
        License.objects.filter(Q(expiry_date__lte=limit) | Q(maintenance_expiry_date__lte=limit))
        .exclude(instance__status=InstanceStatus.DELETED)
        .select_related("instance", "instance__tenant")
    )
    sent = 0
    for lic in licenses:
        expiry = lic.effective_expiry
        if expiry is None or (expiry - today).days < -30:
            continue
        kind = "license" if expiry == lic.expiry_date else "maintenance"
        what = (
            f"The {lic.get_product_display()} license of {lic.instance.name}"
            if kind == "license"
            else f"Maintenance of the {lic.get_product_display()} license of {lic.instance.name}"
        )
        sent += (
            notify_expiring(
                event=LICENSE_EXPIRING,
                tenant=lic.instance.tenant,
                obj=lic,
                what=what,
                expires_on=expiry,
                url=reverse("provisioning:instance_detail", args=[lic.instance_id]) + "#licenses",
                today=today,
            )
            is not None
        )
    return sent


def certificates_scan(now: datetime) -> int:
    """Certificates the panel renews itself: told only once their renewal is overdue (a healthy
    90-day certificate is always within 60 days of expiry), at the usual thresholds."""
    today = timezone.localdate(now)
    certs = (
        Certificate.objects.filter(
            status__in=[Certificate.Status.VALID, Certificate.Status.EXPIRED],
            not_after__lte=now + timedelta(days=EXPIRY_THRESHOLDS[0]),
            not_after__gte=now - timedelta(days=30),
        )
        .filter(Q(renew_after__isnull=True) | Q(renew_after__lte=now))
        .select_related("instance", "instance__tenant", "zone")
    )
    sent = 0
    for cert in certs:
        names = ", ".join(cert.names)
        if cert.instance_id is not None:
            tenant = cert.instance.tenant
            what = f"The certificate of {cert.instance.name} ({names})"
            url = reverse("provisioning:instance_detail", args=[cert.instance_id]) + "#endpoint"
        else:
            tenant, what, url = None, f"The wildcard certificate {names}", "/"
        sent += (
            notify_expiring(
                event=CERTIFICATE_EXPIRING,
                tenant=tenant,
                obj=cert,
                what=what,
                expires_on=timezone.localdate(cert.not_after),
                url=url,
                today=today,
                advice="The panel renews it by itself, but has not managed to yet"
                + (f" (last error: {cert.last_error})" if cert.last_error else "")
                + ". The instance page shows what is wrong.",
            )
            is not None
        )
    return sent


def instances_scan(now: datetime) -> int:
    """Running instances that failed their health checks (told once per degraded spell)."""
    degraded = AtlassianInstance.objects.filter(
        status=InstanceStatus.RUNNING, health=InstanceHealth.DEGRADED
    ).select_related("tenant")
    keys = {
        f"instance:{i.pk}:degraded:{(i.health_changed_at or i.status_changed_at).isoformat()}": i
        for i in degraded
    }
    sent = 0
    for inst in _not_yet_told(INSTANCE_DEGRADED, keys):
        since = inst.health_changed_at or inst.status_changed_at
        last = inst.health_checks.filter(ok=False).order_by("-checked_at").first()
        detail = f" The last check said: {last.detail}" if last and last.detail else ""
        key = f"instance:{inst.pk}:degraded:{since.isoformat()}"
        sent += (
            notify(
                event=INSTANCE_DEGRADED,
                tenant=inst.tenant,
                obj=inst,
                dedupe_key=key,
                subject=f"{inst.name} is degraded",
                body=f"{inst.name} ({inst.base_url}) has failed its health checks since "
                f"{since:%Y-%m-%d %H:%M} UTC.{detail}",
                url=reverse("provisioning:instance_detail", args=[inst.pk]),
            )
            is not None
        )
    return sent


def hosts_scan(now: datetime) -> int:
    """Hosts whose disk is past the warning level (staff); resolved when it is not any more."""
    sent = 0
    hosts = Host.objects.exclude(status=Host.Status.RETIRED).filter(disk_total_bytes__isnull=False)
    for host in hosts:
        key = f"host:{host.pk}:disk-full"
        if not host.disk_warning:
            notify_resolved(event=HOST_DISK_FULL, tenant=None, dedupe_key=key)
            continue
        free = (host.disk_free_bytes or 0) / 1024**3
        sent += (
            notify(
                event=HOST_DISK_FULL,
                tenant=None,
                obj=host,
                dedupe_key=key,
                subject=f"Disk of {host.name} is {host.disk_used_percent}% full",
                body=f"{host.data_root} on {host.name} is {host.disk_used_percent}% used "
                f"({free:.1f} GiB free; the warning starts at "
                f"{settings.PANEL_HOST_DISK_WARNING_PERCENT}%).",
                url=reverse("hosts:detail", args=[host.pk]),
            )
            is not None
        )
    return sent


# The scanners this app brings (registered in ready()); each reports under its name without
# the "_scan" suffix.
SCANS = [operations_scan, licenses_scan, certificates_scan, instances_scan, hosts_scan]


def _told(result: int | Iterable[Notice]) -> int:
    """A scanner either notified itself (and says how many) or returns notices to raise."""
    if isinstance(result, int):
        return result
    return sum(notice_sink(notice) not in (None, False) for notice in result)


def notifications_scan(now: Any = None) -> dict[str, int]:
    """Run every registered scanner once and notify each condition found once; returns how many
    were told per scanner."""
    now = now or timezone.now()
    return {
        scan.__name__.removesuffix("_scan"): _told(scan(now))
        for scan in registry["notification_scans"]
    }
