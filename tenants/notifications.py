"""Notifications: tell a tenant's chosen people (and platform staff) when something needs them.

Other apps call :func:`notify` (or :func:`notify_expiring`) with the event, the tenant, the object
and a ``dedupe_key`` that names the object *and its state*: the first call with a key records a
:class:`~tenants.models.NotificationEvent` and queues one delivery per channel (email, signed
webhook); later calls with the same key do nothing, so a condition seen by every scan is told
once, until it changes (a new key) or :func:`notify_resolved` closes it.

Deliveries run in Celery (:func:`notification_deliver`), are claimed with a conditional UPDATE,
and are retried with growing delays until delivered or out of attempts. Webhooks are signed:
``X-Panel-Signature: sha256=<hex HMAC-SHA256 of the raw body with the tenant's secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import uuid
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from panel.access import PLATFORM_ADMIN_GROUP, Access
from panel.audit import audit_record
from panel.sanitize import sanitize
from tenants.models import (
    NotificationDelivery,
    NotificationEvent,
    NotificationEventType,
    NotificationPreference,
    Tenant,
)
from tenants.webhooks import WebhookError, webhook_post, webhook_target

log = logging.getLogger(__name__)

Event = NotificationEventType
Delivery = NotificationDelivery

# Days before an expiry at which people are told (each threshold once).
EXPIRY_THRESHOLDS = (60, 30, 7, 1)
PLATFORM_DEFAULT_EVENTS = [
    Event.HOST_DISK_FULL.value,
    Event.OPERATION_FAILED.value,
    Event.CERTIFICATE_EXPIRING.value,
]
SIGNATURE_HEADER = "X-Panel-Signature"
USER_AGENT = "atlassian-panel-webhooks/1"
# A delivery stuck in "sending" this long (its worker died) is tried again.
SENDING_STUCK_AFTER = timedelta(minutes=10)


def _setting(name: str, default: Any) -> Any:
    """A notification setting from Django settings, else from the environment (the worker)."""
    if hasattr(settings, name):
        return getattr(settings, name)
    from panel.settings import env

    value = env(name)
    if value is None:
        return default
    if isinstance(default, bool):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int | float):
        return type(default)(value)
    if isinstance(default, list | tuple):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def retry_delays() -> list[int]:
    """Seconds to wait after each failed attempt; its length + 1 is the number of attempts."""
    return [int(d) for d in _setting("PANEL_NOTIFICATION_RETRY_DELAYS", [30, 120, 600, 1800, 7200])]


def absolute_url(path_or_url: str) -> str:
    """``/instances/…`` as the absolute URL people open from an email (PANEL_BASE_URL)."""
    if not path_or_url or "://" in path_or_url:
        return path_or_url
    return settings.PANEL_BASE_URL.rstrip("/") + "/" + path_or_url.lstrip("/")


def _scope(tenant: Tenant | None) -> str:
    return f"tenant:{tenant.pk}" if tenant is not None else "platform"


# --- preferences --------------------------------------------------------------------------


def preference_for(tenant: Tenant | None) -> NotificationPreference:
    """A tenant's (or the platform's) preference; unsaved defaults when none was chosen yet.

    Defaults: a tenant's contact address gets every event by email; platform staff (platform
    admins' addresses) get host disk warnings, failed operations and overdue certificates.
    """
    if tenant is None:
        pref = NotificationPreference.objects.filter(platform=True).first()
        return pref or NotificationPreference(platform=True, events=list(PLATFORM_DEFAULT_EVENTS))
    pref = NotificationPreference.objects.filter(tenant=tenant).first()
    return pref or NotificationPreference(tenant=tenant, recipients=tenant.contact_email)


def _platform_recipients(pref: NotificationPreference) -> list[str]:
    if pref.recipient_list:
        return pref.recipient_list
    emails = [e.strip() for e in _setting("PANEL_STAFF_NOTIFICATION_EMAILS", []) if e.strip()]
    admins = (
        get_user_model()
        .objects.filter(Q(groups__name=PLATFORM_ADMIN_GROUP) | Q(is_superuser=True))
        .filter(is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    return sorted(set(emails) | set(admins))


def webhook_url_check(url: str) -> None:
    """Refuse webhook URLs the panel must not call: other schemes, ports other than
    ``PANEL_WEBHOOK_PORTS``, and names that resolve to an address that is not public (see
    :mod:`tenants.webhooks`), so a tenant cannot make the panel probe its own network."""
    webhook_target(url)


@transaction.atomic
def notification_preference_update(
    *,
    actor: Access,
    tenant: Tenant | None,
    email_enabled: bool,
    recipients: list[str],
    events: list[str],
    webhook_enabled: bool,
    webhook_url: str,
    webhook_secret: str = "",
) -> NotificationPreference:
    """Save who gets which notifications; an empty ``webhook_secret`` keeps the stored one."""
    pref = preference_for(tenant)
    allowed = dict(Event.tenant_choices() if tenant is not None else Event.platform_choices())
    unknown = sorted(set(events) - set(allowed))
    if unknown:
        raise ValidationError({"events": f"Unknown events: {', '.join(unknown)}."})
    if email_enabled and not recipients and tenant is not None:
        raise ValidationError({"recipients": "Add at least one address, or turn email off."})
    if webhook_url:
        try:
            webhook_url_check(webhook_url)
        except ValidationError as exc:
            raise ValidationError({"webhook_url": exc.messages}) from exc
    if webhook_enabled and not webhook_url:
        raise ValidationError({"webhook_url": "Give the URL to call, or turn the webhook off."})
    if webhook_enabled and not (webhook_secret or pref.webhook_secret):
        raise ValidationError({"webhook_secret": "Set a shared secret to sign the webhooks."})
    before = {
        "email_enabled": pref.email_enabled,
        "recipients": pref.recipient_list,
        "events": sorted(pref.events or []),
        "webhook_enabled": pref.webhook_enabled,
        "webhook_url": pref.webhook_url,
    }
    pref.email_enabled = email_enabled
    pref.recipients = "\n".join(recipients)
    pref.events = sorted(events)
    pref.webhook_enabled = webhook_enabled
    pref.webhook_url = webhook_url
    if webhook_secret:
        pref.webhook_secret = webhook_secret
    pref.full_clean(exclude=["tenant"])
    pref.save()
    after = {
        "email_enabled": pref.email_enabled,
        "recipients": pref.recipient_list,
        "events": sorted(pref.events),
        "webhook_enabled": pref.webhook_enabled,
        "webhook_url": pref.webhook_url,
    }
    changes = {k: v for k, v in after.items() if before[k] != v}
    if webhook_secret:
        changes["webhook_secret"] = "changed"  # noqa: S105 - a marker, never the value
    audit_record(
        actor=actor, action="notifications.update", target=pref, tenant=tenant, changes=changes
    )
    return pref


# --- notifying ----------------------------------------------------------------------------


def _claim_event(
    *,
    event: str,
    tenant: Tenant | None,
    obj: models.Model | None,
    dedupe_key: str,
    subject: str,
    body: str,
    url: str,
) -> NotificationEvent | None:
    """Record the event once per key: a new row, or a resolved one reopened; else None."""
    scope = _scope(tenant)
    now = timezone.now()
    fields = {
        "subject": subject[:200],
        "body": body,
        "url": url,
        "object_type": obj._meta.label_lower if obj is not None else "",
        "object_id": str(obj.pk) if obj is not None else "",
    }
    key = dedupe_key[:200]
    if NotificationEvent.objects.filter(
        event=event, scope=scope, dedupe_key=key, resolved_at=None
    ).exists():
        return None  # the common case for periodic checks: told already, nothing changed
    try:
        with transaction.atomic():
            return NotificationEvent.objects.create(
                event=event, tenant=tenant, scope=scope, dedupe_key=dedupe_key[:200], **fields
            )
    except IntegrityError:
        pass
    # Seen before: tell again only if it had been resolved (a condition that came back).
    reopened = NotificationEvent.objects.filter(
        event=event, scope=scope, dedupe_key=dedupe_key[:200], resolved_at__isnull=False
    ).update(
        resolved_at=None,
        last_notified_at=now,
        times_notified=F("times_notified") + 1,
        **fields,
    )
    if not reopened:
        return None
    return NotificationEvent.objects.get(event=event, scope=scope, dedupe_key=dedupe_key[:200])


def _webhook_payload(notification: NotificationEvent, delivery_id: uuid.UUID) -> str:
    tenant = notification.tenant
    return json.dumps(
        {
            "id": str(notification.id),
            "delivery": str(delivery_id),
            "event": notification.event,
            "tenant": (
                {"id": str(tenant.id), "slug": tenant.slug, "name": tenant.name}
                if tenant is not None
                else None
            ),
            "object": {"type": notification.object_type, "id": notification.object_id},
            "subject": notification.subject,
            "body": notification.body,
            "url": notification.url,
            "created_at": notification.last_notified_at.isoformat(),
        },
        sort_keys=True,
    )


def _deliveries_for(
    notification: NotificationEvent, pref: NotificationPreference, *, audience: Tenant | None
) -> list[NotificationDelivery]:
    """The deliveries ``pref`` asks for (``audience`` None: the platform staff's)."""
    rows = []
    recipients = pref.recipient_list if audience is not None else _platform_recipients(pref)
    if pref.email_enabled and recipients:
        rows.append(
            NotificationDelivery(
                notification=notification,
                tenant=audience,
                channel=Delivery.Channel.EMAIL,
                destination="\n".join(recipients),
            )
        )
    if pref.webhook_enabled and pref.webhook_url and pref.webhook_secret:
        delivery_id = uuid.uuid4()
        rows.append(
            NotificationDelivery(
                id=delivery_id,
                notification=notification,
                tenant=audience,
                channel=Delivery.Channel.WEBHOOK,
                destination=pref.webhook_url,
                payload=_webhook_payload(notification, delivery_id),
            )
        )
    return rows


def notify(
    *,
    event: str,
    tenant: Tenant | None,
    obj: models.Model | None,
    dedupe_key: str,
    subject: str,
    body: str,
    url: str,
) -> NotificationEvent | None:
    """Tell the people who asked for ``event`` about it, once per ``dedupe_key``.

    ``tenant`` None means a platform event (staff only). ``url`` (a path or an absolute URL)
    links to ``obj`` in the panel. Returns the recorded event, or None when this key was
    already told and not resolved since. Deliveries are sent after the transaction commits.
    """
    if event not in Event.values:
        raise ValueError(f"unknown notification event {event!r}")
    notification = _claim_event(
        event=event,
        tenant=tenant,
        obj=obj,
        dedupe_key=dedupe_key,
        subject=subject,
        body=body,
        url=absolute_url(url),
    )
    if notification is None:
        return None
    rows: list[NotificationDelivery] = []
    if tenant is not None:
        pref = preference_for(tenant)
        if event == Event.TEST or pref.wants(event):
            rows += _deliveries_for(notification, pref, audience=tenant)
    platform = preference_for(None)
    if (event == Event.TEST and tenant is None) or (event != Event.TEST and platform.wants(event)):
        rows += _deliveries_for(notification, platform, audience=None)
    NotificationDelivery.objects.bulk_create(rows)
    ids = [row.id for row in rows]
    transaction.on_commit(lambda: [notification_enqueue(i) for i in ids])
    return notification


def notify_resolved(*, event: str, tenant: Tenant | None, dedupe_key: str) -> bool:
    """Close an event (the condition went away) so that it is told again if it comes back."""
    return bool(
        NotificationEvent.objects.filter(
            event=event, scope=_scope(tenant), dedupe_key=dedupe_key[:200], resolved_at=None
        ).update(resolved_at=timezone.now())
    )


def expiry_threshold(days_left: int) -> int | None:
    """The smallest of 60/30/7/1 days that ``days_left`` is within (None beyond 60 days)."""
    for threshold in reversed(EXPIRY_THRESHOLDS):
        if days_left <= threshold:
            return threshold
    return None


def notify_expiring(
    *,
    event: str,
    tenant: Tenant,
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
    """Tell the tenant (or staff, for host operations) that ``operation`` failed, once."""
    from panel.templatetags.panel_tags import kind_label

    if operation.status != "failed":
        return None
    label = kind_label(operation.kind)
    target = operation.target_label
    subject = f"{label} of {target} failed" if target else f"{label} failed"
    reason = operation.error or "No reason was recorded."
    if operation.tenant_id is not None:
        # The tenant's people and webhook get the reason as a customer sees it on the page:
        # no host addresses, SSH users or backup-host names (panel/customer_view.py).
        from provisioning.selectors import host_mask  # notifications sit above provisioning

        reason = host_mask().text(reason)
    return notify(
        event=Event.OPERATION_FAILED,
        tenant=operation.tenant,
        obj=operation,
        dedupe_key=f"operation:{operation.pk}",
        subject=subject,
        body=f"{subject}.\n\nWhy it failed: {reason}\n\nThe full step log is on the operation's "
        "page.",
        url=reverse("provisioning:operation_detail", args=[operation.pk]),
    )


class NotificationThrottled(Exception):
    """Too many test notifications for one audience lately; ``wait`` seconds until the next."""

    def __init__(self, message: str, *, wait: int) -> None:
        super().__init__(message)
        self.wait = wait


TEST_WINDOW = timedelta(hours=1)


def _test_throttle(tenant: Tenant | None, now: Any) -> None:
    """At most ``PANEL_NOTIFICATION_TESTS_PER_HOUR`` tests per audience: each one mails up to
    20 addresses and calls a webhook, so without a limit the panel is a spam relay."""
    limit = int(_setting("PANEL_NOTIFICATION_TESTS_PER_HOUR", 5))
    if tenant is not None:
        # Serialise concurrent tests of one tenant so that the count below cannot be raced.
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    recent = list(
        NotificationEvent.objects.filter(
            event=Event.TEST, scope=_scope(tenant), first_notified_at__gte=now - TEST_WINDOW
        )
        .order_by("-first_notified_at")
        .values_list("first_notified_at", flat=True)[: max(limit, 1)]
    )
    if len(recent) >= limit:
        # The next test is allowed once the oldest of the last ``limit`` leaves the window.
        oldest = recent[-1] if recent else now
        wait = max(1, math.ceil((oldest + TEST_WINDOW - now).total_seconds()))
        raise NotificationThrottled(
            f"At most {limit} test notifications per hour; try again in "
            f"{math.ceil(wait / 60)} minutes.",
            wait=wait,
        )


@transaction.atomic
def notification_send_test(*, actor: Access, tenant: Tenant | None) -> NotificationEvent:
    """Send a test notification through every channel the tenant (or platform) set up.

    Raises :class:`NotificationThrottled` past the hourly limit (nothing is sent then).
    """
    _test_throttle(tenant, timezone.now())
    url = reverse("tenants:notification_settings")
    if tenant is not None:
        url += f"?tenant={tenant.pk}"
    who = actor.user.get_username() if actor.is_authenticated else "someone"
    notification = notify(
        event=Event.TEST,
        tenant=tenant,
        obj=tenant,
        dedupe_key=f"test:{uuid.uuid4()}",
        subject=f"Test notification for {tenant or 'platform staff'}",
        body=f"{who} sent this test from the panel's notification settings. If you read it, "
        "notifications reach you.",
        url=url,
    )
    audit_record(actor=actor, action="notifications.test", target=notification, tenant=tenant)
    return notification


# --- delivering ---------------------------------------------------------------------------


class DeliveryError(Exception):
    """A delivery attempt failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, code: int | None = None, retry: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retry = retry


def notification_enqueue(delivery_id: Any, countdown: float | None = None) -> None:
    """Send the delivery's task to the broker (the retry sweeper catches a lost message)."""
    from tenants.tasks import notification_deliver_task

    try:
        notification_deliver_task.apply_async((str(delivery_id),), countdown=countdown)
    except Exception as exc:  # noqa: BLE001 - the sweeper retries; the caller must not fail
        log.warning("could not enqueue notification delivery %s: %s", delivery_id, exc)


def _email_body(notification: NotificationEvent) -> str:
    settings_url = absolute_url(reverse("tenants:notification_settings"))
    audience = notification.tenant.name if notification.tenant else "platform staff"
    return (
        f"{notification.body}\n\n"
        f"Open it in the panel: {notification.url}\n\n"
        "-- \n"
        f"Event: {Event(notification.event).label} ({audience}).\n"
        f"Choose who gets which notifications at {settings_url}\n"
    )


def _send_email(delivery: NotificationDelivery) -> int | None:
    notification = delivery.notification
    message = EmailMessage(
        subject=f"[Panel] {notification.subject}",
        body=_email_body(notification),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=delivery.destination.split("\n"),
        headers={
            "Auto-Submitted": "auto-generated",
            "X-Panel-Event": notification.event,
            "X-Panel-Notification": str(notification.id),
        },
        connection=get_connection(fail_silently=False, timeout=20),
    )
    try:
        message.send()
    except Exception as exc:  # noqa: BLE001 - smtplib and sockets raise many kinds
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    return None


def webhook_signature(secret: str, body: bytes) -> str:
    """The value of ``X-Panel-Signature`` for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _send_webhook(delivery: NotificationDelivery) -> int | None:
    audience = delivery.tenant
    pref = preference_for(audience)
    if not pref.webhook_secret:
        raise DeliveryError("The webhook has no secret any more; nothing was sent.", retry=False)
    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Panel-Event": delivery.notification.event,
        "X-Panel-Delivery": str(delivery.id),
        SIGNATURE_HEADER: webhook_signature(pref.webhook_secret, body),
    }
    timeout = float(_setting("PANEL_WEBHOOK_TIMEOUT", 10.0))
    try:
        # Resolved and vetted once more now (the name may point elsewhere since it was saved),
        # and sent to exactly the address that was vetted.
        return webhook_post(delivery.destination, body=body, headers=headers, timeout=timeout)
    except ValidationError as exc:
        raise DeliveryError(" ".join(exc.messages), retry=False) from exc
    except WebhookError as exc:
        # Only a status code or a generic reason: never the receiver's response body.
        raise DeliveryError(str(exc), code=exc.code, retry=exc.retry) from exc


def notification_deliver(delivery_id: Any) -> str:
    """Claim one due delivery, try it once, and record the outcome (or schedule a retry)."""
    now = timezone.now()
    claimed = NotificationDelivery.objects.filter(
        id=delivery_id,
        status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING],
        next_attempt_at__lte=now,
    ).update(status=Delivery.Status.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
    if not claimed:
        return "skipped"
    delivery = NotificationDelivery.objects.select_related(
        "notification", "notification__tenant", "tenant"
    ).get(id=delivery_id)
    try:
        if delivery.channel == Delivery.Channel.EMAIL:
            code = _send_email(delivery)
        else:
            code = _send_webhook(delivery)
    except DeliveryError as exc:
        delays = retry_delays()
        error = sanitize(str(exc))[:2000]
        if exc.retry and delivery.attempts <= len(delays):
            delay = delays[delivery.attempts - 1]
            NotificationDelivery.objects.filter(id=delivery.id).update(
                status=Delivery.Status.RETRYING,
                last_error=error,
                response_code=exc.code,
                next_attempt_at=timezone.now() + timedelta(seconds=delay),
            )
            notification_enqueue(delivery.id, countdown=delay)
            return Delivery.Status.RETRYING
        NotificationDelivery.objects.filter(id=delivery.id).update(
            status=Delivery.Status.FAILED, last_error=error, response_code=exc.code
        )
        log.warning("notification delivery %s failed for good: %s", delivery.id, error)
        return Delivery.Status.FAILED
    NotificationDelivery.objects.filter(id=delivery.id).update(
        status=Delivery.Status.DELIVERED,
        response_code=code,
        last_error="",
        delivered_at=timezone.now(),
    )
    return Delivery.Status.DELIVERED


def notifications_retry_due(now: Any = None) -> list[str]:
    """Enqueue deliveries that are due (a retry whose message was lost, or a stuck send)."""
    now = now or timezone.now()
    NotificationDelivery.objects.filter(
        status=Delivery.Status.SENDING, last_attempt_at__lt=now - SENDING_STUCK_AFTER
    ).update(status=Delivery.Status.RETRYING, next_attempt_at=now)
    due = list(
        NotificationDelivery.objects.filter(
            status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING],
            next_attempt_at__lte=now,
            created_at__lt=now - timedelta(seconds=20),  # the first send is enqueued at once
        ).values_list("id", flat=True)[:500]
    )
    for delivery_id in due:
        notification_enqueue(delivery_id)
    return [str(d) for d in due]


# --- scanning -----------------------------------------------------------------------------


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


def _scan_operations(now: Any) -> int:
    from provisioning.models import Operation, OperationStatus

    failed = Operation.objects.filter(
        status=OperationStatus.FAILED, finished_at__gte=now - timedelta(days=1)
    ).select_related("tenant", "instance", "host")
    keys = {f"operation:{op.pk}": op for op in failed}
    return sum(
        notify_operation_failed(op) is not None
        for op in _not_yet_told(Event.OPERATION_FAILED, keys)
    )


def _scan_licenses(today: date) -> int:
    from provisioning.models import InstanceStatus, License

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
                event=Event.LICENSE_EXPIRING,
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


def _scan_certificates(now: Any) -> int:
    """Certificates the panel renews itself: told only once their renewal is overdue (a healthy
    90-day certificate is always within 60 days of expiry), at the usual thresholds."""
    try:
        from certificates.models import Certificate
    except ImportError:  # the certificates app is optional
        return 0
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
                event=Event.CERTIFICATE_EXPIRING,
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


def _scan_instances() -> int:
    from provisioning.models import AtlassianInstance, InstanceHealth, InstanceStatus

    degraded = AtlassianInstance.objects.filter(
        status=InstanceStatus.RUNNING, health=InstanceHealth.DEGRADED
    ).select_related("tenant")
    keys = {
        f"instance:{i.pk}:degraded:{(i.health_changed_at or i.status_changed_at).isoformat()}": i
        for i in degraded
    }
    sent = 0
    for inst in _not_yet_told(Event.INSTANCE_DEGRADED, keys):
        since = inst.health_changed_at or inst.status_changed_at
        last = inst.health_checks.filter(ok=False).order_by("-checked_at").first()
        detail = f" The last check said: {last.detail}" if last and last.detail else ""
        key = f"instance:{inst.pk}:degraded:{since.isoformat()}"
        sent += (
            notify(
                event=Event.INSTANCE_DEGRADED,
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


def _scan_hosts() -> int:
    from provisioning.models import Host

    sent = 0
    hosts = Host.objects.exclude(status=Host.Status.RETIRED).filter(disk_total_bytes__isnull=False)
    for host in hosts:
        key = f"host:{host.pk}:disk-full"
        if not host.disk_warning:
            notify_resolved(event=Event.HOST_DISK_FULL, tenant=None, dedupe_key=key)
            continue
        free = (host.disk_free_bytes or 0) / 1024**3
        sent += (
            notify(
                event=Event.HOST_DISK_FULL,
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


def notifications_scan(now: Any = None) -> dict[str, int]:
    """Look for conditions worth telling (failed operations, expiring licenses and overdue
    certificates, degraded instances, full host disks) and notify each once; returns how many
    were told per kind."""
    now = now or timezone.now()
    return {
        "operations": _scan_operations(now),
        "licenses": _scan_licenses(timezone.localdate(now)),
        "certificates": _scan_certificates(now),
        "instances": _scan_instances(),
        "hosts": _scan_hosts(),
    }


# --- reading ------------------------------------------------------------------------------


def delivery_list(access: Access, tenant: Tenant | None) -> models.QuerySet:
    """The delivery log of ``tenant`` (None: the platform staff's), newest first."""
    qs = NotificationDelivery.objects.for_user(access).select_related("notification")
    return qs.filter(tenant=tenant) if tenant is not None else qs.filter(tenant__isnull=True)
