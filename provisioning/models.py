"""Managed hosts, Atlassian instances, their licenses, and the Operations that change them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from panel.crypto import EncryptedJSONField, EncryptedTextField
from panel.scoping import ScopedQuerySet, scoped_manager
from provisioning import validators as v
from provisioning.products import Product
from tenants.models import ApiToken, Tenant
from tenants.tiers import ServiceTier


class Host(models.Model):
    """A managed server owned by the platform: an app host runs instances, a backup host keeps
    their backups. Customers never see hosts, only their instance's address."""

    class Role(models.TextChoices):
        APP = "app", "App host"
        BACKUP = "backup", "Backup host"

    class Status(models.TextChoices):
        ENROLLED = "enrolled", "Enrolled (key not trusted yet)"
        TRUSTED = "trusted", "Trusted, not provisioned"
        PROVISIONING = "provisioning", "Provisioning"
        READY = "ready", "Ready"
        UNREACHABLE = "unreachable", "Unreachable"
        ERROR = "error", "Error"
        RETIRED = "retired", "Retired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=40, unique=True, validators=[v.validate_slug])
    role = models.CharField(max_length=10, choices=Role.choices)
    address = models.CharField(max_length=253, validators=[v.validate_host_address])
    # How other managed hosts reach this one (e.g. a private network name); defaults to address.
    private_address = models.CharField(
        max_length=253, blank=True, validators=[v.validate_host_address]
    )
    ssh_port = models.PositiveIntegerField(
        default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    ssh_user = models.CharField(max_length=32, default="root", validators=[v.validate_ssh_user])
    host_key_fingerprint = models.CharField(
        max_length=60,
        blank=True,
        validators=[v.validate_fingerprint],
        help_text="Pinned SHA256 fingerprint of the host's SSH key; connections refuse any other.",
    )
    # Fingerprint seen on first contact, waiting for an admin to trust it.
    seen_host_key_fingerprint = models.CharField(max_length=60, blank=True)
    seen_host_key = models.TextField(blank=True)
    host_key = models.TextField(blank=True, help_text="The pinned public host key (OpenSSH).")
    ssh_private_key = EncryptedTextField(blank=True)
    ssh_public_key = models.TextField(blank=True)
    data_root = models.CharField(
        max_length=200, default="/srv/atlassian", validators=[v.validate_abs_path]
    )
    backup_host = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="app_hosts",
        limit_choices_to={"role": "backup"},
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ENROLLED)
    status_reason = models.TextField(blank=True)
    facts = models.JSONField(default=dict, blank=True)
    cpu_count = models.PositiveIntegerField(null=True, blank=True)
    memory_mb = models.PositiveIntegerField(null=True, blank=True)
    disk_total_bytes = models.BigIntegerField(null=True, blank=True)
    disk_free_bytes = models.BigIntegerField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_health_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager(staff_only=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def disk_used_percent(self) -> float | None:
        if not self.disk_total_bytes or self.disk_free_bytes is None:
            return None
        return round(100 * (1 - self.disk_free_bytes / self.disk_total_bytes), 1)

    @property
    def disk_warning(self) -> bool:
        used = self.disk_used_percent
        return used is not None and used >= settings.PANEL_HOST_DISK_WARNING_PERCENT

    @property
    def peer_address(self) -> str:
        return self.private_address or self.address


class InstanceStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"
    RESTORING = "restoring", "Restoring"
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"


class InstanceHealth(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"


class AtlassianInstance(models.Model):
    """One customer's Jira, Confluence, Bitbucket, ... running on an app host."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="instances")
    name = models.CharField(
        max_length=40,
        unique=True,
        validators=[v.validate_slug],
        help_text="Short name used for directories and containers, e.g. acme-jira.",
    )
    product = models.CharField(max_length=30, choices=Product.choices)
    version = models.CharField(max_length=40, validators=[v.validate_version])
    hostname = models.CharField(max_length=253, unique=True, validators=[v.validate_fqdn])
    context_path = models.CharField(max_length=64, blank=True, validators=[v.validate_context_path])
    host = models.ForeignKey(
        Host, on_delete=models.PROTECT, null=True, blank=True, related_name="instances"
    )
    heap_min_mb = models.PositiveIntegerField(default=1024)
    heap_max_mb = models.PositiveIntegerField(default=2048)
    tier = models.CharField(max_length=10, choices=ServiceTier.choices, default=ServiceTier.TIER2)
    db_name = models.CharField(max_length=63, blank=True)
    db_user = models.CharField(max_length=63, blank=True)
    db_password = EncryptedTextField(blank=True)
    # Opaque extra environment for the application (e.g. a monitoring agent's settings).
    extra_env = EncryptedJSONField(blank=True, default=dict)
    status = models.CharField(
        max_length=20, choices=InstanceStatus.choices, default=InstanceStatus.PENDING
    )
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    health = models.CharField(
        max_length=20, choices=InstanceHealth.choices, default=InstanceHealth.UNKNOWN
    )
    health_changed_at = models.DateTimeField(null=True, blank=True)
    deployed_compose_hash = models.CharField(max_length=64, blank=True)
    # What the periodic drift check found differing from what the panel deployed ("" = none).
    drift = models.TextField(blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    # A copy (a restore into a new instance, a drill's scratch instance) starts with outgoing
    # and incoming mail off, so it never mails real users or empties production mailboxes:
    # the flags Jira's staging guide uses, passed through JVM_SUPPORT_RECOMMENDED_ARGS
    # (https://confluence.atlassian.com/adminjiraserver072/establishing-staging-server-environments-for-jira-applications-828787655.html).
    # Staff turn it off, audited, when a copy goes live.
    outbound_disabled = models.BooleanField(default=False)
    # Continuous WAL archiving for point-in-time recovery (backups.wal): the compose project
    # gets a `wal` service streaming the database's WAL with pg_receivewal, and the app
    # host's shipper copies it to the backup host every few seconds.
    wal_archiving = models.BooleanField(default=False)
    copy_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept when the source is deleted, so the copy still says what it is a copy of.
    copy_of_name = models.CharField(max_length=40, blank=True)
    # The backup point (backups.Backup) the copy was made from: a plain id, because
    # provisioning sits below backups and must not refer to its models.
    copy_point = models.UUIDField(null=True, blank=True)
    copy_point_taken_at = models.DateTimeField(null=True, blank=True)
    # The port on its host's public address where the product's non-HTTP port is published
    # (Bitbucket's git over SSH, Bamboo's agent broker), allocated by provisioning.ports from
    # PANEL_INSTANCE_PORT_RANGE; null for products that publish nothing but HTTP.
    host_port = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    # The docker compose project (and so its containers' and edge network's names) on its host:
    # "" means the instance's name. An evacuation gives the copy on the new host a name of its
    # own, so the old host's containers, when it comes back, can be told apart and fenced (and
    # lab hosts sharing one Docker engine do not drive each other's containers).
    compose_project = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    purge_after = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager("tenant")

    class Meta:
        ordering = ["tenant__name", "name"]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["tenant", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(heap_min_mb__lte=models.F("heap_max_mb")),
                name="instance_heap_min_le_max",
            ),
            # One instance per published port on a host; a deleted instance's containers are
            # gone, so its port is free again.
            models.UniqueConstraint(
                fields=["host", "host_port"],
                condition=Q(host_port__isnull=False) & ~Q(status="deleted"),
                name="instance_host_port_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def base_url(self) -> str:
        return f"https://{self.hostname}{self.context_path}"

    @property
    def published_url(self) -> str:
        """What clients use for the published port (see ``host_port``): Bitbucket's SSH clone
        base URL, Bamboo's broker URL for remote agents; ``""`` when nothing is published."""
        if not self.host_port:
            return ""
        if self.product == Product.BITBUCKET:
            return f"ssh://{self.hostname}:{self.host_port}/"
        if self.product == Product.BAMBOO:
            return f"failover:(tcp://{self.hostname}:{self.host_port})"
        return ""

    @property
    def display_status(self) -> str:
        """Status as a person reads it: a running instance that fails health shows degraded."""
        if self.status == InstanceStatus.RUNNING and self.health == InstanceHealth.DEGRADED:
            return "degraded"
        return self.status


class InstanceHealthCheck(models.Model):
    """One result of polling an instance's ``/status`` endpoint (kept as health history)."""

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="health_checks"
    )
    checked_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    state = models.CharField(max_length=40, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-checked_at"]
        indexes = [models.Index(fields=["instance", "-checked_at"])]

    def __str__(self) -> str:
        return f"{self.instance_id} {'ok' if self.ok else 'failed'} at {self.checked_at:%H:%M:%S}"


class InstanceUsageQuerySet(ScopedQuerySet):
    """Usage samples, scoped by their instance's tenant (a class of its own rather than
    ``scoped_manager()``, so the type checker can tell the manager's type)."""

    tenant_path = "instance__tenant"


class InstanceUsage(models.Model):
    """One sample of what an instance uses on its host, taken with the health checks: CPU and
    memory of its app and database containers (``docker stats``) and the disk under its home
    and database directories (``du``, measured less often: see ``provisioning.usage``).

    The disk fields are carried forward from the last measurement, which ``disk_sampled_at``
    dates; a field is null when that measurement failed (``disk_error`` says why) or when the
    value could not be read (e.g. a container that was not running)."""

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="usage_samples"
    )
    sampled_at = models.DateTimeField(default=timezone.now)
    # Percent of one CPU, as docker stats gives it (200 = two CPUs busy).
    app_cpu_percent = models.FloatField(null=True, blank=True)
    app_memory_bytes = models.BigIntegerField(null=True, blank=True)
    app_memory_limit_bytes = models.BigIntegerField(null=True, blank=True)
    db_cpu_percent = models.FloatField(null=True, blank=True)
    db_memory_bytes = models.BigIntegerField(null=True, blank=True)
    db_memory_limit_bytes = models.BigIntegerField(null=True, blank=True)
    home_bytes = models.BigIntegerField(null=True, blank=True)
    db_disk_bytes = models.BigIntegerField(null=True, blank=True)
    disk_sampled_at = models.DateTimeField(null=True, blank=True)
    disk_error = models.CharField(max_length=200, blank=True)

    objects = InstanceUsageQuerySet.as_manager()

    class Meta:
        ordering = ["-sampled_at"]
        indexes = [
            models.Index(fields=["instance", "sampled_at"]),
            # the retention prune deletes by age alone
            models.Index(fields=["sampled_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} usage at {self.sampled_at:%H:%M:%S}"

    @property
    def cpu_percent(self) -> float | None:
        """Both containers' CPU together (percent of one CPU)."""
        values = [v for v in (self.app_cpu_percent, self.db_cpu_percent) if v is not None]
        return round(sum(values), 2) if values else None

    @property
    def memory_bytes(self) -> int | None:
        """Both containers' memory together."""
        values = [v for v in (self.app_memory_bytes, self.db_memory_bytes) if v is not None]
        return sum(values) if values else None

    @property
    def disk_bytes(self) -> int | None:
        """The home and database directories together."""
        values = [v for v in (self.home_bytes, self.db_disk_bytes) if v is not None]
        return sum(values) if values else None


class License(models.Model):
    """An Atlassian license key attached to an instance, with the facts decoded from it."""

    class DecodeStatus(models.TextChoices):
        DECODED = "decoded", "Decoded"
        NOT_DECODED = "not_decoded", "Not decoded (facts entered by hand)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="licenses"
    )
    product = models.CharField(max_length=30, choices=Product.choices)
    key = EncryptedTextField()
    decode_status = models.CharField(
        max_length=20, choices=DecodeStatus.choices, default=DecodeStatus.NOT_DECODED
    )
    sen = models.CharField("SEN", max_length=40, blank=True)
    organisation = models.CharField(max_length=200, blank=True)
    license_type = models.CharField(max_length=60, blank=True)
    user_tier = models.CharField(max_length=40, blank=True)
    expiry_date = models.DateField(null=True, blank=True)
    maintenance_expiry_date = models.DateField(null=True, blank=True)
    evaluation = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_product_display()} license {self.sen or '(no SEN)'}"

    @property
    def effective_expiry(self):  # noqa: ANN201 - a date or None
        dates = [d for d in (self.expiry_date, self.maintenance_expiry_date) if d]
        return min(dates) if dates else None


class OperationKind(models.TextChoices):
    """The provisioning app's operation kinds (hosts, instances, licenses).

    Other apps declare theirs (``backups.models.BackupOperationKind``,
    ``certificates.models.CertificateOperationKind``); every kind is registered with its label
    in :data:`panel.registry.registry`, which is where labels are read.
    """

    HOST_CONNECT = "host.connect", "Host first contact"
    HOST_PROVISION = "host.provision", "Host provision"
    HOST_HEALTH = "host.health", "Host health check"
    INSTANCE_CREATE = "instance.create", "Instance create"
    INSTANCE_START = "instance.start", "Instance start"
    INSTANCE_STOP = "instance.stop", "Instance stop"
    INSTANCE_RESTART = "instance.restart", "Instance restart"
    INSTANCE_UPGRADE = "instance.upgrade", "Instance upgrade"
    INSTANCE_RESIZE = "instance.resize", "Instance heap change"
    INSTANCE_DELETE = "instance.delete", "Instance delete"
    INSTANCE_PURGE = "instance.purge", "Instance purge"
    INSTANCE_OUTBOUND_ENABLE = "instance.outbound_enable", "Instance mail turned on"
    LICENSE_APPLY = "license.apply", "License apply"
    HOST_FENCE = "host.fence", "Host fence of evacuated instances"
    HOST_FENCE_PURGE = "host.fence_purge", "Host purge of fenced copies"


class OperationStatus(models.TextChoices):
    """Where an operation is; ``OperationStatus.ACTIVE`` are the states that hold a target."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# Not a member (an Enum would make a tuple in the class body a choice): set afterwards, as
# NetBox's TERMINAL_STATE_CHOICES sits beside its choice set. The runner is bound to it.
OperationStatus.ACTIVE = (OperationStatus.PENDING, OperationStatus.RUNNING)  # type: ignore[attr-defined]
ACTIVE_STATUSES = OperationStatus.ACTIVE  # type: ignore[attr-defined]


class Operation(models.Model):
    """One long or remote action, from request to a terminal state, with its step log.

    ``lock_key`` names the target a mutating operation holds (``instance:<id>``,
    ``host:<id>``); a partial unique index keeps two active operations off one target.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=40)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="operations"
    )
    host = models.ForeignKey(
        Host, on_delete=models.SET_NULL, null=True, blank=True, related_name="operations"
    )
    instance = models.ForeignKey(
        AtlassianInstance,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="operations",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_by_token = models.ForeignKey(
        ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=20, choices=OperationStatus.choices, default=OperationStatus.PENDING
    )
    lock_key = models.CharField(max_length=80, blank=True, null=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    # Whose key it is ("token:<id>" or "user:<id>", panel.idempotency) and a digest of the
    # request that used it: the same key with another request is refused.
    idempotency_scope = models.CharField(max_length=60, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    progress_current = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    # The lease of the worker that claimed it (new at every claim, cleared when the reaper ends
    # it). Every remote command, progress write and target transition of the handler checks it,
    # so a handler whose operation was reaped stops at its next step (fencing).
    fence_token = models.CharField(max_length=64, blank=True)
    # The operation this one is a part of (an evacuation's per-instance restores): the parent
    # runs its children, so the sweeper leaves a child alone while its parent is active.
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager("tenant")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["lock_key"],
                condition=Q(status__in=["pending", "running"]) & Q(lock_key__isnull=False),
                name="operation_one_active_per_target",
            ),
            models.UniqueConstraint(
                fields=["idempotency_scope", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="operation_unique_scoped_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["instance", "-created_at"]),
            models.Index(fields=["host", "-created_at"]),
            # The newest operation of a kind (the DR dashboard's last evacuation) without
            # reading every operation of the fleet.
            models.Index(fields=["kind", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}"

    @property
    def is_terminal(self) -> bool:
        return self.status not in ACTIVE_STATUSES

    @property
    def progress_percent(self) -> int:
        if self.status == OperationStatus.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return min(100, round(100 * self.progress_current / self.progress_total))

    @property
    def duration(self):  # noqa: ANN201 - a timedelta or None
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def target_label(self) -> str:
        if self.instance_id:
            return str(self.instance)
        if self.host_id:
            return str(self.host)
        return ""


class EvacuatedCopy(models.Model):
    """An instance's old deployment on a host it was evacuated from: while the host is away its
    containers may still exist there. When the host answers again they are stopped and kept
    aside (fenced) before the host is ready; staff purge them after the retention period."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the host to come back"
        FENCED = "fenced", "Stopped and kept aside"
        PURGED = "purged", "Purged"

    id = models.BigAutoField(primary_key=True)
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="evacuated_copies")
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    instance_name = models.CharField(max_length=40)
    # The old deployment's compose project and directory on ``host``.
    project = models.CharField(max_length=60)
    directory = models.CharField(max_length=500)
    # Where the fence moved the directory to (kept aside, never under instances/).
    kept_at = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    detail = models.TextField(blank=True)
    evacuated_at = models.DateTimeField(default=timezone.now)
    fenced_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-evacuated_at"]
        indexes = [models.Index(fields=["host", "status"])]

    def __str__(self) -> str:
        return f"{self.instance_name} on {self.host_id} ({self.status})"


class OperationStep(models.Model):
    """One log line of an operation, saved at once so a watcher sees it live."""

    class Level(models.TextChoices):
        DEBUG = "debug", "Debug"
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    id = models.BigAutoField(primary_key=True)
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="steps")
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    message = models.TextField()
    command = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    output = models.TextField(blank=True)

    objects = scoped_manager("operation__tenant")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["operation", "id"])]

    def __str__(self) -> str:
        return self.message[:80]
