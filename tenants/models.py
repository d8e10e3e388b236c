"""Tenants (customer companies), their members, API tokens and the audit log."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from panel.crypto import EncryptedTextField
from panel.scoping import ScopedQuerySet, scoped_manager
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
        # Instance lists sort by tenant name, then name: with this index the first page of
        # 10,000 instances walks the tenants in order instead of sorting the fleet.
        indexes = [models.Index(fields=["name"], name="tenant_name_idx")]

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


class InvitationQuerySet(ScopedQuerySet):
    tenant_path = "tenant"

    def pending(self) -> InvitationQuerySet:
        """Invitations that may still be accepted: not used, not revoked, not expired."""
        return self.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )


class Invitation(models.Model):
    """An invitation by email to join a tenant with a role: single use, expires, revocable.

    Only a SHA-256 hash of the secret in the accept link is stored; the clear secret exists
    only in the mail sent to ``email``.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(
        max_length=10, choices=Membership.Role.choices, default=Membership.Role.VIEWER
    )
    key_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="invitations_sent",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="invitations_accepted",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant} ({self.role})"

    @staticmethod
    def generate() -> tuple[str, str]:
        """Return (clear secret for the accept link, its hash) for a new invitation."""
        secret = secrets.token_urlsafe(32)
        return secret, _token_hash(secret)

    @staticmethod
    def hash_of(secret: str) -> str:
        return _token_hash(secret)

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return self.Status.ACCEPTED
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.expires_at <= timezone.now():
            return self.Status.EXPIRED
        return self.Status.PENDING


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


def _all_tenant_events() -> list[str]:
    """Default of a field of migration 0003 (notification preferences, which now live in the
    ``notifications`` app with their own default); kept so the old migration still imports."""
    return []


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
