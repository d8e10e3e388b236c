"""Who hears about what (preferences), what was told (events) and how it went (deliveries).

The tables were created by the tenants app and keep their names (``tenants_notification*``):
the models moved here without touching the data (migration ``0001_initial``).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from panel.crypto import EncryptedTextField
from panel.registry import NotificationEvent as NotificationEventSpec
from panel.registry import registry
from panel.scoping import scoped_manager
from tenants.models import Tenant

# The event every audience may send itself from the settings page; never chosen in a preference.
TEST_EVENT = "test"


# The order the settings page lists events in (the order they had before the apps declared
# their own); events not named here follow in the order they were declared.
EVENT_ORDER = [
    "operation.failed",
    "backup.failed",
    "backup.rpo_breached",
    "certificate.expiring",
    "license.expiring",
    "instance.degraded",
    "host.disk_full",
]


def _declared_events() -> list[NotificationEventSpec]:
    events = [e for e in registry["notification_events"].values() if e.key != TEST_EVENT]
    rank = {key: i for i, key in enumerate(EVENT_ORDER)}
    return sorted(events, key=lambda e: rank.get(e.key, len(rank)))


def tenant_event_choices() -> list[tuple[str, str]]:
    """The events a tenant can choose to hear about (declared by the apps that raise them)."""
    return [(e.key, e.label) for e in _declared_events() if not e.platform]


def platform_event_choices() -> list[tuple[str, str]]:
    """The events platform staff can choose to hear about (every tenant's, and the platform's)."""
    return [(e.key, e.label) for e in _declared_events()]


def event_label(key: str) -> str:
    """The label of a declared event (the key itself for one no app declares any more)."""
    event = registry["notification_events"].get(key)
    return event.label if event is not None else key


def _all_tenant_events() -> list[str]:
    return [key for key, _ in tenant_event_choices()]


class NotificationPreference(models.Model):
    """Who hears about what: one row per tenant (or one ``platform`` row for staff events).

    Without a row a tenant's notifications go by email to its contact address, for every event.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.OneToOneField(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notification_preference",
    )
    # The platform row (tenant empty) holds the staff's recipients for host events.
    platform = models.BooleanField(default=False)
    email_enabled = models.BooleanField(default=True)
    # Addresses, one per line.
    recipients = models.TextField(blank=True)
    events = models.JSONField(default=_all_tenant_events, blank=True)
    webhook_enabled = models.BooleanField(default=False)
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = EncryptedTextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = scoped_manager("tenant")

    class Meta:
        db_table = "tenants_notificationpreference"
        constraints = [
            models.UniqueConstraint(
                fields=["platform"],
                condition=models.Q(platform=True),
                name="notification_preference_one_platform_row",
            ),
            models.CheckConstraint(
                condition=models.Q(platform=True, tenant__isnull=True)
                | models.Q(platform=False, tenant__isnull=False),
                name="notification_preference_tenant_xor_platform",
            ),
        ]

    def __str__(self) -> str:
        return f"Notifications of {self.tenant or 'platform staff'}"

    @property
    def recipient_list(self) -> list[str]:
        return [line.strip() for line in self.recipients.splitlines() if line.strip()]

    def wants(self, event: str) -> bool:
        return event in (self.events or [])


class NotificationEvent(models.Model):
    """One thing worth telling people about, keyed so it is told once until it changes.

    ``dedupe_key`` names the thing *and its state* (e.g. ``license:<id>:2026-05-01:30``); the
    first :func:`panel.notices.notify` with a key sends, later ones with the same key do
    nothing until :func:`panel.notices.notify_resolved` closes it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # A key declared in registry["notification_events"] (no choices: the apps declare them).
    event = models.CharField(max_length=40)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # "tenant:<id>" or "platform": one namespace of dedupe keys per audience.
    scope = models.CharField(max_length=60)
    dedupe_key = models.CharField(max_length=200)
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.URLField(max_length=500, blank=True)
    times_notified = models.PositiveIntegerField(default=1)
    first_notified_at = models.DateTimeField(default=timezone.now)
    last_notified_at = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager("tenant")

    class Meta:
        db_table = "tenants_notificationevent"
        ordering = ["-last_notified_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "scope", "dedupe_key"], name="notification_event_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.dedupe_key}"

    @property
    def event_label(self) -> str:
        return event_label(self.event)


class NotificationDelivery(models.Model):
    """One attempt series to deliver a notification by email or webhook, with its outcome.

    A failed attempt is retried with growing delays (``next_attempt_at``) until it is
    delivered or the attempts run out; every attempt's result is kept for the delivery log.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notification = models.ForeignKey(
        NotificationEvent, on_delete=models.CASCADE, related_name="deliveries"
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # Email: the addresses, one per line. Webhook: the URL.
    destination = models.TextField()
    # Webhook: the exact JSON body that is signed and sent (the same on every attempt).
    payload = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = scoped_manager("tenant")

    class Meta:
        db_table = "tenants_notificationdelivery"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} ({self.attempts} attempts)"
