"""Request-side services of the certificates app: what people (audited) and the schedules ask
for. Nothing here changes a host or a DNS zone: that runs in the Operations these start
(``certificates.operations``). The periodic checks here only look (DNS lookups of
customer-managed records, the read-only consistency check).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from certificates.models import (
    Certificate,
    CertificateOperationKind,
    DnsRecord,
    ProxySite,
)
from certificates.services.dns_records import customer_record_put, dns_record_check, dns_target
from certificates.services.issuance import certificate_for_instance
from certificates.services.publish import endpoint_check_safely
from panel.access import Access
from panel.audit import audit_record
from panel.operations import OperationConflict, operation_start
from provisioning.models import AtlassianInstance, InstanceStatus
from provisioning.services import instance_lock_key

log = logging.getLogger(__name__)

# Instances that have (or are getting) DNS records, a certificate and a proxy site.
LIVE_STATUSES = (
    InstanceStatus.PROVISIONING,
    InstanceStatus.RUNNING,
    InstanceStatus.STOPPED,
    InstanceStatus.FAILED,
    InstanceStatus.RESTORING,
)


def dns_customer_managed_mark(*, actor: Access, instance: AtlassianInstance) -> DnsRecord:
    """Accept that the customer runs the DNS of ``instance``'s hostname (the panel shows the
    record to create and checks it)."""
    rtype, value = dns_target(instance) if instance.host else (DnsRecord.Type.A, "")
    record = customer_record_put(instance, rtype=rtype, value=value)
    audit_record(
        actor=actor,
        action="dns.customer_managed",
        target=instance,
        changes={"hostname": instance.hostname},
    )
    return record


def _lock_key(cert: Certificate) -> str:
    # An instance's certificate is changed under the instance's lock; a zone's wildcard under
    # its own.
    if cert.instance_id:
        return instance_lock_key(cert.instance)
    return f"certificate:{cert.pk}"


def certificate_renew(
    *, actor: Access | None, certificate: Certificate, idempotency_key: str = ""
) -> Any:
    """Start renewing ``certificate`` now (staff, or the renewal schedule)."""
    if not settings.PANEL_ACME_DIRECTORY:
        raise ValidationError("No ACME CA is configured (PANEL_ACME_DIRECTORY).")
    return operation_start(
        kind=CertificateOperationKind.CERTIFICATE_RENEW,
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
            kind=CertificateOperationKind.CERTIFICATE_RENEW,
            actor=actor,
            instance=instance,
            params={"certificate": str(cert.pk)},
            lock_key=f"certificate:{cert.pk}",
            idempotency_key=idempotency_key,
        )
    return certificate_renew(actor=actor, certificate=cert, idempotency_key=idempotency_key)


def _instance_operation_start(
    *, kind: str, has: str, actor: Access, instance: AtlassianInstance, idempotency_key: str
) -> Any:
    """Start ``kind`` on a live instance that has a host (``has`` names what it would act on,
    for the refusal)."""
    if instance.status not in LIVE_STATUSES or instance.host is None:
        raise ValidationError(f"{instance.name} is {instance.status}; it has no {has}.")
    return operation_start(
        kind=kind,
        actor=actor,
        instance=instance,
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )


def proxy_deploy(*, actor: Access, instance: AtlassianInstance, idempotency_key: str = "") -> Any:
    """Render and deploy the instance's proxy site again (tenant admins and staff)."""
    return _instance_operation_start(
        kind=CertificateOperationKind.PROXY_DEPLOY,
        has="proxy site",
        actor=actor,
        instance=instance,
        idempotency_key=idempotency_key,
    )


def dns_update(*, actor: Access, instance: AtlassianInstance, idempotency_key: str = "") -> Any:
    """Publish the instance's DNS records again."""
    return _instance_operation_start(
        kind=CertificateOperationKind.DNS_UPDATE,
        has="DNS records",
        actor=actor,
        instance=instance,
        idempotency_key=idempotency_key,
    )


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
    if not settings.PANEL_ACME_DIRECTORY:
        return []
    started = []
    for cert in certificates_due(now):
        kind = (
            CertificateOperationKind.CERTIFICATE_RENEW
            if cert.status in (Certificate.Status.VALID, Certificate.Status.EXPIRED)
            else CertificateOperationKind.CERTIFICATE_ISSUE
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
            if (
                cert is not None
                and cert.status != Certificate.Status.VALID
                and settings.PANEL_ACME_DIRECTORY
            ):
                _start_quietly(cert, CertificateOperationKind.CERTIFICATE_ISSUE, actor=None)
    return checked


def endpoints_check_all() -> int:
    """Periodic: check every running instance that has a proxy site; returns how many."""
    count = 0
    for instance in AtlassianInstance.objects.filter(
        status=InstanceStatus.RUNNING, host__isnull=False, proxy_site__isnull=False
    ):
        try:
            endpoint_check_safely(instance)
        except Exception:  # one instance's failure must not stop the sweep
            # endpoint_check_safely lets unexpected errors (bugs) through; here they are
            # reported with their traceback and the other instances are still checked.
            log.exception("the consistency check of %s failed", instance.name)
            continue
        count += 1
    return count


def endpoint_check_request(instance: AtlassianInstance) -> None:
    """Run the consistency check of ``instance`` in the background, after commit."""
    # Imported here: the tasks module is the layer above the services (it imports them).
    from certificates.tasks import endpoint_check

    transaction.on_commit(lambda: _enqueue_quietly(endpoint_check, str(instance.pk)))


def _enqueue_quietly(task: Any, *args: Any) -> None:
    try:
        task.delay(*args)
    except KombuOperationalError as exc:
        # The broker is unreachable: the request still succeeds, the periodic check runs anyway.
        log.warning("could not enqueue %s: %s", task.name, exc)
