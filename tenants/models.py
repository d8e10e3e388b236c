"""Tenants (customer companies), their members, API tokens and the audit log."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from panel.scoping import scoped_manager
from tenants.tiers import ServiceTier

slug_validator = RegexValidator(
    r"^[a-z][a-z0-9-]{1,48}[a-z0-9]$",
    "Use 3-50 lowercase letters, digits and hyphens, starting with a letter.",
)


class Tenant(models.Model):
    """A customer company renting Atlassian instances from us."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    contact_email = models.EmailField()
    default_tier = models.CharField(
        max_length=10, choices=ServiceTier.choices, default=ServiceTier.TIER2
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager("id")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one tenant: viewers read, admins also create and change things."""

    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        ADMIN = "admin", "Admin"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager("tenant")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]
        ordering = ["tenant__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


TOKEN_PREFIX = "pnl_"  # noqa: S105 - a marker, not a secret


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def for_owner(self, user: object) -> ApiTokenQuerySet:
        """Tokens are private to their owner: nobody else lists or revokes them."""
        return self.filter(user=user)


class ApiToken(models.Model):
    """A named API token of one user, bound to one tenant (or cross-tenant for staff).

    Only a SHA-256 hash of the secret is stored; the clear token is shown once at creation.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read only"
        WRITE = "write", "Read and write"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def generate() -> tuple[str, str, str]:
        """Return (clear token, prefix, hash) for a new token."""
        prefix = secrets.token_hex(4)
        secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        return secret, prefix, _token_hash(secret)

    @staticmethod
    def hash_of(secret: str) -> str:
        return _token_hash(secret)

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class AuditEvent(models.Model):
    """One mutating action: who (user or token), where from, on what, and what changed.

    Append-only: rows are never updated or deleted by the panel.
    """

    id = models.BigAutoField(primary_key=True)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor_label = models.CharField(max_length=200, blank=True)
    token = models.ForeignKey(ApiToken, on_delete=models.SET_NULL, null=True, blank=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.SET_NULL, null=True, blank=True)
    source = models.CharField(max_length=20, default="system")  # ui, api, admin, task, system
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=80, db_index=True)
    target_type = models.CharField(max_length=80, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    objects = scoped_manager("tenant")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return (
            f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target_label}"
        )


# --- notifications --------------------------------------------------------------------------

from panel.crypto import EncryptedTextField  # noqa: E402 - kept with the models that use it


class NotificationEventType(models.TextChoices):
    """What a notification is about. ``HOST_DISK_FULL`` goes to platform staff only."""

    OPERATION_FAILED = "operation.failed", "An operation failed"
    BACKUP_FAILED = "backup.failed", "A backup was missed or failed"
    RPO_BREACHED = "backup.rpo_breached", "The recovery point objective was breached"
    CERTIFICATE_EXPIRING = "certificate.expiring", "A certificate expires soon"
    LICENSE_EXPIRING = "license.expiring", "A license expires soon"
    INSTANCE_DEGRADED = "instance.degraded", "An instance is degraded"
    HOST_DISK_FULL = "host.disk_full", "A host's disk is nearly full (staff)"
    TEST = "test", "Test notification"

    @classmethod
    def tenant_choices(cls) -> list[tuple[str, str]]:
        """The events a tenant can choose to hear about."""
        return [(v, label) for v, label in cls.choices if v not in (cls.HOST_DISK_FULL, cls.TEST)]

    @classmethod
    def platform_choices(cls) -> list[tuple[str, str]]:
        """The events platform staff can choose to hear about (every tenant's, and hosts')."""
        return [(v, label) for v, label in cls.choices if v != cls.TEST]


def _all_tenant_events() -> list[str]:
    return [value for value, _ in NotificationEventType.tenant_choices()]


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
    first :func:`tenants.notifications.notify` with a key sends, later ones with the same key
    do nothing until :func:`~tenants.notifications.notify_resolved` closes it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=40, choices=NotificationEventType.choices)
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
        ordering = ["-last_notified_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "scope", "dedupe_key"], name="notification_event_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.dedupe_key}"


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
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} ({self.attempts} attempts)"


from django_otp.models import Device, ThrottlingMixin, TimestampMixin  # noqa: E402
from django_otp.plugins.otp_totp.models import TOTPDevice, default_key  # noqa: E402


class SealedTOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    """A TOTP authenticator whose shared secret is encrypted at rest.

    django-otp's own ``TOTPDevice`` keeps the secret in clear text, so a database dump would
    let anyone mint codes. This device has the same fields and borrows django-otp's code for
    verification (drift, replay and throttling rules) and the set-up URL unchanged; only the
    key column differs (Fernet, like every other secret of the panel)."""

    key = EncryptedTextField(default=default_key)
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(default=-1)

    class Meta(Device.Meta):
        verbose_name = "TOTP device"

    bin_key = TOTPDevice.bin_key
    config_url = TOTPDevice.config_url
    _read_str_from_settings = TOTPDevice._read_str_from_settings
    verify_token = TOTPDevice.verify_token
    get_throttle_factor = TOTPDevice.get_throttle_factor
