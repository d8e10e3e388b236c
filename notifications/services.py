"""Notifications: tell a tenant's chosen people (and platform staff) when something needs them.

Apps raise notices with :func:`panel.notices.notify` / :func:`panel.notices.notify_resolved`;
:func:`notice_sink` (registered by this app) receives each one. The first notice with a
``dedupe_key`` records a :class:`~notifications.models.NotificationEvent` and queues one
delivery per channel (email, signed webhook); later ones with the same key do nothing, so a
condition seen by every scan is told once, until it changes (a new key) or is resolved.

Deliveries run in Celery (:func:`notification_deliver`), are claimed with a conditional UPDATE,
and are retried with growing delays until delivered or out of attempts. Only what the transport
calls retryable (SMTP and network errors, a 5xx answer) is retried; a bug fails the delivery at
once and is logged with its traceback.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from notifications.models import (
    TEST_EVENT,
    NotificationDelivery,
    NotificationEvent,
    NotificationPreference,
    event_label,
    platform_event_choices,
    tenant_event_choices,
)
from notifications.transports import DeliveryError, email_send, webhook_send, webhook_target
from panel.access import PLATFORM_ADMIN_GROUP, Access
from panel.audit import audit_record
from panel.notices import Notice, notify
from panel.sanitize import sanitize
from tenants.models import Tenant

log = logging.getLogger(__name__)

Delivery = NotificationDelivery

OPERATION_FAILED = "operation.failed"
CERTIFICATE_EXPIRING = "certificate.expiring"
HOST_DISK_FULL = "host.disk_full"
# What platform staff hear about until they choose (restore requests reach the operator's
# PANEL_BACKUP_ALERT_EMAILS whatever the staff chose, see PLATFORM_EXTRA_RECIPIENTS).
PLATFORM_DEFAULT_EVENTS = [HOST_DISK_FULL, OPERATION_FAILED, CERTIFICATE_EXPIRING]
# Platform events that also go by email to addresses from a setting, whatever the platform
# preference says (the setting's people were mailed directly before notices existed).
PLATFORM_EXTRA_RECIPIENTS = {"backup.restore_requested": "PANEL_BACKUP_ALERT_EMAILS"}
# A delivery stuck in "sending" this long (its worker died) is tried again.
SENDING_STUCK_AFTER = timedelta(minutes=10)
TEST_WINDOW = timedelta(hours=1)


def retry_delays() -> list[int]:
    """Seconds to wait after each failed attempt; its length + 1 is the number of attempts."""
    return [int(d) for d in settings.PANEL_NOTIFICATION_RETRY_DELAYS]


def absolute_url(path_or_url: str) -> str:
    """``/instances/…`` as the absolute URL people open from an email (PANEL_BASE_URL)."""
    if not path_or_url or "://" in path_or_url:
        return path_or_url
    return settings.PANEL_BASE_URL.rstrip("/") + "/" + path_or_url.lstrip("/")


def _scope(tenant: Any) -> str:
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
    return pref or _tenant_default(tenant)


def _tenant_default(tenant: Tenant) -> NotificationPreference:
    return NotificationPreference(tenant=tenant, recipients=tenant.contact_email)


def preferences_for(tenants: Iterable[Tenant]) -> list[NotificationPreference]:
    """:func:`preference_for` of each of ``tenants``, in their order, in one query."""
    tenants = list(tenants)
    chosen = {p.tenant_id: p for p in NotificationPreference.objects.filter(tenant__in=tenants)}
    prefs = []
    for tenant in tenants:
        pref = chosen.get(tenant.pk) or _tenant_default(tenant)
        pref.tenant = tenant  # already read: no query per row for its name
        prefs.append(pref)
    return prefs


def _platform_recipients(pref: NotificationPreference) -> list[str]:
    if pref.recipient_list:
        return pref.recipient_list
    emails = [e.strip() for e in settings.PANEL_STAFF_NOTIFICATION_EMAILS if e.strip()]
    admins = (
        get_user_model()
        .objects.filter(Q(groups__name=PLATFORM_ADMIN_GROUP) | Q(is_superuser=True))
        .filter(is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    return sorted(set(emails) | set(admins))


def _extra_platform_recipients(event: str) -> list[str]:
    name = PLATFORM_EXTRA_RECIPIENTS.get(event)
    if name is None:
        return []
    return [e.strip() for e in getattr(settings, name) if e.strip()]


MAX_RECIPIENTS = 20


def notification_recipients_clean(addresses: Iterable[str]) -> list[str]:
    """The email recipients of a preference as the page and the API take them: trimmed,
    lower-case, each once, at most ``MAX_RECIPIENTS`` (a mailing list beyond that)."""
    seen: list[str] = []
    for line in addresses:
        address = line.strip().lower()
        if not address:
            continue
        try:
            validate_email(address)
        except ValidationError as exc:
            raise ValidationError(f"{address} is not an email address.") from exc
        if address not in seen:
            seen.append(address)
    if len(seen) > MAX_RECIPIENTS:
        raise ValidationError(f"At most {MAX_RECIPIENTS} addresses; use a mailing list.")
    return seen


def webhook_url_check(url: str) -> None:
    """Refuse webhook URLs the panel must not call: other schemes, ports other than
    ``PANEL_WEBHOOK_PORTS``, and names that resolve to an address that is not public (see
    :mod:`notifications.transports`), so a tenant cannot make the panel probe its own network."""
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
    allowed = dict(tenant_event_choices() if tenant is not None else platform_event_choices())
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


def _claim_event(notice: Notice, url: str) -> NotificationEvent | None:
    """Record the notice once per key: a new row, or a resolved one reopened; else None."""
    scope = _scope(notice.tenant)
    now = timezone.now()
    fields = {
        "subject": notice.subject[:200],
        "body": notice.body,
        "url": url,
        "object_type": notice.object_type,
        "object_id": notice.object_id,
    }
    key = notice.dedupe_key[:200]
    event = notice.event
    if NotificationEvent.objects.filter(
        event=event, scope=scope, dedupe_key=key, resolved_at=None
    ).exists():
        return None  # the common case for periodic checks: told already, nothing changed
    try:
        with transaction.atomic():
            return NotificationEvent.objects.create(
                event=event, tenant=notice.tenant, scope=scope, dedupe_key=key, **fields
            )
    except IntegrityError:
        pass
    # Seen before: tell again only if it had been resolved (a condition that came back).
    reopened = NotificationEvent.objects.filter(
        event=event, scope=scope, dedupe_key=key, resolved_at__isnull=False
    ).update(
        resolved_at=None,
        last_notified_at=now,
        times_notified=F("times_notified") + 1,
        **fields,
    )
    if not reopened:
        return None
    return NotificationEvent.objects.get(event=event, scope=scope, dedupe_key=key)


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
    notification: NotificationEvent,
    pref: NotificationPreference,
    *,
    audience: Tenant | None,
    recipients: list[str],
    webhook: bool = True,
) -> list[NotificationDelivery]:
    """An email delivery to ``recipients`` (if any) and the webhook ``pref`` set up (if
    ``webhook``), for ``audience`` (None: the platform staff)."""
    rows = []
    if recipients:
        rows.append(
            NotificationDelivery(
                notification=notification,
                tenant=audience,
                channel=Delivery.Channel.EMAIL,
                destination="\n".join(recipients),
            )
        )
    if webhook and pref.webhook_enabled and pref.webhook_url and pref.webhook_secret:
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


def notice_fan_out(notice: Notice) -> NotificationEvent | None:
    """Tell the people who asked for ``notice.event`` about it, once per ``dedupe_key``.

    ``tenant`` None means a platform notice (staff only). Returns the recorded event, or None
    when this key was already told and not resolved since. Deliveries are sent after the
    transaction commits.
    """
    notification = _claim_event(notice, absolute_url(notice.url))
    if notification is None:
        return None
    event, tenant = notice.event, notice.tenant
    rows: list[NotificationDelivery] = []
    if tenant is not None:
        pref = preference_for(tenant)
        if event == TEST_EVENT or pref.wants(event):
            emails = pref.recipient_list if pref.email_enabled else []
            rows += _deliveries_for(notification, pref, audience=tenant, recipients=emails)
    platform = preference_for(None)
    wanted = (event == TEST_EVENT and tenant is None) or (
        event != TEST_EVENT and platform.wants(event)
    )
    extra = _extra_platform_recipients(event)
    if wanted or extra:
        emails = _platform_recipients(platform) if wanted and platform.email_enabled else []
        emails += [e for e in extra if e not in emails]
        rows += _deliveries_for(
            notification, platform, audience=None, recipients=emails, webhook=wanted
        )
    NotificationDelivery.objects.bulk_create(rows)
    ids = [row.id for row in rows]
    transaction.on_commit(lambda: [notification_enqueue(i) for i in ids])
    return notification


def notice_resolve(notice: Notice) -> bool:
    """Close an event (the condition went away) so that it is told again if it comes back."""
    return bool(
        NotificationEvent.objects.filter(
            event=notice.event,
            scope=_scope(notice.tenant),
            dedupe_key=notice.dedupe_key[:200],
            resolved_at=None,
        ).update(resolved_at=timezone.now())
    )


def notice_sink(notice: Notice) -> NotificationEvent | bool | None:
    """The sink registered in ``registry["notification_sinks"]``: record or close a notice."""
    return notice_resolve(notice) if notice.resolved else notice_fan_out(notice)


class NotificationThrottled(Exception):
    """Too many test notifications for one audience lately; ``wait`` seconds until the next."""

    def __init__(self, message: str, *, wait: int) -> None:
        super().__init__(message)
        self.wait = wait


def _test_throttle(tenant: Tenant | None, now: Any) -> None:
    """At most ``PANEL_NOTIFICATION_TESTS_PER_HOUR`` tests per audience: each one mails up to
    20 addresses and calls a webhook, so without a limit the panel is a spam relay."""
    limit = int(settings.PANEL_NOTIFICATION_TESTS_PER_HOUR)
    if tenant is not None:
        # Serialise concurrent tests of one tenant so that the count below cannot be raced.
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    recent = list(
        NotificationEvent.objects.filter(
            event=TEST_EVENT, scope=_scope(tenant), first_notified_at__gte=now - TEST_WINDOW
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
    url = reverse("notifications:notification_settings")
    if tenant is not None:
        url += f"?tenant={tenant.pk}"
    who = actor.user.get_username() if actor.is_authenticated else "someone"
    notification = notify(
        event=TEST_EVENT,
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


def notification_enqueue(delivery_id: Any, countdown: float | None = None) -> None:
    """Send the delivery's task to the broker (the retry sweeper catches a lost message)."""
    from notifications.tasks import notification_deliver_task  # tasks import this module

    try:
        notification_deliver_task.apply_async((str(delivery_id),), countdown=countdown)
    except Exception as exc:  # noqa: BLE001 - the sweeper retries; the caller must not fail
        log.warning("could not enqueue notification delivery %s: %s", delivery_id, exc)


def _email_body(notification: NotificationEvent) -> str:
    settings_url = absolute_url(reverse("notifications:notification_settings"))
    audience = notification.tenant.name if notification.tenant else "platform staff"
    return (
        f"{notification.body}\n\n"
        f"Open it in the panel: {notification.url}\n\n"
        "-- \n"
        f"Event: {event_label(notification.event)} ({audience}).\n"
        f"Choose who gets which notifications at {settings_url}\n"
    )


def _send(delivery: NotificationDelivery) -> int | None:
    """One attempt over the delivery's channel; the HTTP status for a webhook."""
    notification = delivery.notification
    if delivery.channel == Delivery.Channel.EMAIL:
        email_send(
            subject=f"[Panel] {notification.subject}",
            body=_email_body(notification),
            to=delivery.destination.split("\n"),
            headers={
                "Auto-Submitted": "auto-generated",
                "X-Panel-Event": notification.event,
                "X-Panel-Notification": str(notification.id),
            },
        )
        return None
    pref = preference_for(delivery.tenant)
    if not pref.webhook_secret:
        raise DeliveryError("The webhook has no secret any more; nothing was sent.", retry=False)
    return webhook_send(
        url=delivery.destination,
        body=delivery.payload.encode(),
        secret=pref.webhook_secret,
        headers={"X-Panel-Event": notification.event, "X-Panel-Delivery": str(delivery.id)},
    )


def _failed(delivery: NotificationDelivery, error: str, code: int | None) -> str:
    NotificationDelivery.objects.filter(id=delivery.id).update(
        status=Delivery.Status.FAILED, last_error=error, response_code=code
    )
    log.warning("notification delivery %s failed for good: %s", delivery.id, error)
    return Delivery.Status.FAILED


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
        code = _send(delivery)
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
        return _failed(delivery, error, exc.code)
    except Exception:  # failed at once and logged, never retried
        # A bug, not a flaky receiver: trying again cannot help. The delivery fails now (the
        # log shows it) rather than staying in "sending" until the sweeper retries it.
        log.exception("notification delivery %s failed on an unexpected error", delivery.id)
        return _failed(
            delivery, "The panel could not send this notification (internal error).", None
        )
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
