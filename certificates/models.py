"""DNS provider accounts, zones and records; ACME accounts and certificates; proxy sites.

Platform admins manage provider accounts, zones and ACME accounts (staff only). Records,
certificates of an instance and its proxy site belong to the instance's tenant, who sees them
on the instance page. Secrets (provider credentials, ACME account keys, certificate private
keys) are encrypted at rest.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from panel.crypto import EncryptedJSONField, EncryptedTextField
from panel.scoping import scoped_manager
from provisioning import validators as v


class CertificateOperationKind(models.TextChoices):
    """The certificates app's operation kinds: DNS, certificates, the reverse proxy
    (registered with these labels by certificates.operations)."""

    DNS_UPDATE = "dns.update", "DNS change"
    CERTIFICATE_ISSUE = "certificate.issue", "Certificate issue"
    CERTIFICATE_RENEW = "certificate.renew", "Certificate renew"
    PROXY_DEPLOY = "proxy.deploy", "Proxy config deploy"


class DnsProviderAccount(models.Model):
    """Credentials for one DNS provider (Route53 account or an RFC 2136 server with TSIG)."""

    class Kind(models.TextChoices):
        ROUTE53 = "route53", "Amazon Route53"
        RFC2136 = "rfc2136", "RFC 2136 dynamic updates (TSIG)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=60, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Non-secret settings: Route53 region / endpoint_url; RFC 2136 server, port, tsig_key_name,
    # tsig_algorithm.
    config = models.JSONField(default=dict, blank=True)
    # Secrets: Route53 access_key_id / secret_access_key; RFC 2136 tsig_secret.
    credentials = EncryptedJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager(staff_only=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "DNS provider account"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class DnsZone(models.Model):
    """A DNS zone the panel manages records in; instance hostnames inside it get records."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(
        max_length=253, unique=True, validators=[v.validate_fqdn], help_text="e.g. example.com"
    )
    account = models.ForeignKey(DnsProviderAccount, on_delete=models.PROTECT, related_name="zones")
    # Route53: the hosted zone id. RFC 2136: the zone on the server, when this zone is a
    # subdomain of it (default: the zone's own name).
    provider_zone_id = models.CharField(max_length=253, blank=True)
    default_ttl = models.PositiveIntegerField(default=300)
    wildcard = models.BooleanField(
        default=False,
        help_text="Issue one wildcard certificate for the zone (DNS-01) and use it for every "
        "instance directly below it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager(staff_only=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "DNS zone"

    def __str__(self) -> str:
        return self.name

    def contains(self, hostname: str) -> bool:
        hostname = hostname.lower().rstrip(".")
        return hostname == self.name or hostname.endswith("." + self.name)


class DnsRecord(models.Model):
    """One DNS record an instance needs: managed in a zone, or shown to the customer to create
    (``customer_managed``), in which case the panel only checks it.

    ``owned`` marks a record the panel created at the provider for this instance: only owned
    records are ever replaced or deleted there, so a name that existed before (the zone apex,
    www, the panel's own name, anything made outside the panel) is never taken over.
    """

    class Type(models.TextChoices):
        A = "A"
        AAAA = "AAAA"
        CNAME = "CNAME"
        TXT = "TXT"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PUBLISHED = "published", "Published"
        FAILED = "failed", "Failed"
        WAITING = "waiting", "Waiting for the customer"
        VERIFIED = "verified", "Verified"
        WRONG = "wrong", "Points elsewhere"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        "provisioning.AtlassianInstance", on_delete=models.CASCADE, related_name="dns_records"
    )
    zone = models.ForeignKey(
        DnsZone, on_delete=models.PROTECT, null=True, blank=True, related_name="records"
    )
    customer_managed = models.BooleanField(default=False)
    owned = models.BooleanField(
        default=False,
        help_text="The panel created this record at the provider (and may change or delete it).",
    )
    name = models.CharField(max_length=253)
    rtype = models.CharField("type", max_length=8, choices=Type.choices, default=Type.A)
    value = models.CharField(max_length=500)
    ttl = models.PositiveIntegerField(default=300)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    detail = models.TextField(blank=True)
    change_id = models.CharField(max_length=200, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["name", "rtype"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "name", "rtype"], name="dns_record_once"),
            # A record at the provider belongs to one instance at most.
            models.UniqueConstraint(
                fields=["zone", "name", "rtype"],
                condition=Q(owned=True),
                name="dns_record_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.rtype} {self.value}"

    @property
    def ok(self) -> bool:
        return self.status in (self.Status.PUBLISHED, self.Status.VERIFIED)


class AcmeAccount(models.Model):
    """The panel's account at one ACME directory (Let's Encrypt, pebble, ...)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    directory_url = models.URLField(max_length=500, unique=True)
    email = models.EmailField(blank=True)
    key = EncryptedTextField(help_text="The account's private key (PEM).")
    uri = models.URLField(max_length=500, blank=True, help_text="The account URL at the CA.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager(staff_only=True)

    class Meta:
        ordering = ["directory_url"]

    def __str__(self) -> str:
        return self.directory_url


class Certificate(models.Model):
    """A TLS certificate for an instance's hostname (HTTP-01) or a zone's wildcard (DNS-01).

    ``placeholder`` certificates are self-signed stand-ins the proxy serves until the CA has
    issued the real one.
    """

    class Challenge(models.TextChoices):
        HTTP01 = "http-01", "HTTP-01 (served by the host's proxy)"
        DNS01 = "dns-01", "DNS-01 (TXT record through the DNS provider)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PLACEHOLDER = "placeholder", "Self-signed placeholder"
        VALID = "valid", "Valid"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        "provisioning.AtlassianInstance",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="certificates",
    )
    zone = models.ForeignKey(
        DnsZone, on_delete=models.CASCADE, null=True, blank=True, related_name="certificates"
    )
    names = models.JSONField(default=list)
    challenge = models.CharField(max_length=10, choices=Challenge.choices, default=Challenge.HTTP01)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    private_key = EncryptedTextField(blank=True)
    certificate_pem = models.TextField(blank=True, help_text="The leaf certificate.")
    chain_pem = models.TextField(blank=True, help_text="Intermediates, leaf first excluded.")
    issuer = models.CharField(max_length=300, blank=True)
    serial = models.CharField(max_length=80, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True, help_text="Last issue or renewal.")
    renew_after = models.DateTimeField(null=True, blank=True)
    acme_account = models.ForeignKey(
        AcmeAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "renew_after"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(instance__isnull=False) | Q(zone__isnull=False),
                name="certificate_has_owner",
            ),
            models.UniqueConstraint(
                fields=["zone"],
                condition=Q(instance__isnull=True),
                name="certificate_one_wildcard_per_zone",
            ),
            models.UniqueConstraint(
                fields=["instance"],
                condition=Q(instance__isnull=False),
                name="certificate_one_per_instance",
            ),
        ]

    def __str__(self) -> str:
        return ", ".join(self.names)

    @property
    def is_wildcard(self) -> bool:
        return any(n.startswith("*.") for n in self.names)

    @property
    def lifetime(self) -> timedelta | None:
        if self.not_before and self.not_after:
            return self.not_after - self.not_before
        return None

    def expires_within(self, days: int, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.not_after is not None and self.not_after - now <= timedelta(days=days)

    def covers(self, hostname: str) -> bool:
        """Whether one of the certificate's names matches ``hostname`` (one-label wildcards)."""
        hostname = hostname.lower()
        for name in self.names:
            name = name.lower()
            if name == hostname:
                return True
            if name.startswith("*.") and hostname.count(".") >= 1:
                if hostname.split(".", 1)[1] == name[2:]:
                    return True
        return False

    @property
    def fullchain_pem(self) -> str:
        return self.certificate_pem + self.chain_pem


class CertificateOrder(models.Model):
    """One new order sent to a CA, counted against the weekly budget per registered domain."""

    id = models.BigAutoField(primary_key=True)
    certificate = models.ForeignKey(
        Certificate, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    registered_domain = models.CharField(max_length=253, db_index=True)
    names = models.JSONField(default=list)
    directory_url = models.URLField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    succeeded = models.BooleanField(null=True)

    objects = scoped_manager(staff_only=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"order for {', '.join(self.names)} at {self.created_at:%Y-%m-%d %H:%M}"


class ProxySite(models.Model):
    """The reverse proxy's site for one instance on its app host, as last deployed, and the
    last consistency check of the instance's public address."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DEPLOYED = "deployed", "Deployed"
        FAILED = "failed", "Refused"
        REMOVED = "removed", "Removed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.OneToOneField(
        "provisioning.AtlassianInstance", on_delete=models.CASCADE, related_name="proxy_site"
    )
    host = models.ForeignKey(
        "provisioning.Host", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    certificate = models.ForeignKey(
        Certificate, on_delete=models.SET_NULL, null=True, blank=True, related_name="sites"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    config = models.TextField(blank=True, help_text="The nginx site config last deployed.")
    config_hash = models.CharField(max_length=64, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # [{"component": "dns"|"certificate"|"proxy"|"application", "problem": ..., "fix": ...}]
    problems = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["instance__name"]

    def __str__(self) -> str:
        return f"proxy site of {self.instance_id}"
