"""Backup policies, the catalogue of retained backup points, restores, drills and restore
requests. Every row belongs to one instance and is scoped through ``instance__tenant``."""

from __future__ import annotations

import uuid
from datetime import time, timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from panel.scoping import ScopedQuerySet, scoped_manager
from provisioning.models import AtlassianInstance, Host, Operation


class BackupOperationKind(models.TextChoices):
    """The backups app's operation kinds (registered with these labels by backups.operations)."""

    BACKUP_CREATE = "backup.create", "Backup"
    BACKUP_RESTORE = "backup.restore", "Restore"
    BACKUP_DRILL = "backup.drill", "Restore drill"
    WAL_ENABLE = "backup.wal_enable", "Turn on point-in-time recovery"
    WAL_BASE = "backup.wal_base", "Base backup"
    RESTORE_TIME = "backup.restore_time", "Restore to a point in time"
    HOST_EVACUATE = "host.evacuate", "Evacuate host"
    INSTANCE_EVACUATE = "backup.evacuate", "Evacuation of an instance"


class BackupMode(models.TextChoices):
    HOT = "hot", "Hot (no downtime)"
    COLD = "cold", "Cold (stops the application)"


class BackupPolicy(models.Model):
    """How and when one instance is backed up: schedule, retention, mode, where to.

    Defaults come from the instance's service tier (:func:`backups.policies.policy_defaults`);
    staff change them, tenant admins read them.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.OneToOneField(
        AtlassianInstance, on_delete=models.CASCADE, related_name="backup_policy"
    )
    enabled = models.BooleanField(default=True)
    interval_minutes = models.PositiveIntegerField(
        default=24 * 60,
        validators=[MinValueValidator(15), MaxValueValidator(7 * 24 * 60)],
        help_text="Time between scheduled backups (1440 = once a day).",
    )
    window_start = models.TimeField(
        default=time(1, 0), help_text="UTC time of day the first backup of a day is due."
    )
    jitter_minutes = models.PositiveIntegerField(
        default=30,
        validators=[MaxValueValidator(12 * 60)],
        help_text="Each instance starts at a stable offset within this many minutes, so "
        "instances of one host do not all start at once.",
    )
    keep_hourly = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(168)])
    keep_daily = models.PositiveIntegerField(default=7, validators=[MaxValueValidator(366)])
    keep_weekly = models.PositiveIntegerField(default=4, validators=[MaxValueValidator(520)])
    keep_monthly = models.PositiveIntegerField(default=12, validators=[MaxValueValidator(240)])
    mode = models.CharField(max_length=10, choices=BackupMode.choices, default=BackupMode.HOT)
    backup_host = models.ForeignKey(
        Host,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="backup_policies",
        limit_choices_to={"role": "backup"},
        help_text="Empty: the backup host of the instance's app host.",
    )
    offsite_enabled = models.BooleanField(
        default=False, help_text="Also copy each point to S3-compatible object storage."
    )
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_dispatched_at = models.DateTimeField(null=True, blank=True)
    missed_count = models.PositiveIntegerField(default=0)
    last_missed_at = models.DateTimeField(null=True, blank=True)
    # Set while the instance's newest good backup is older than its tier's RPO (one alert).
    rpo_alerted_at = models.DateTimeField(null=True, blank=True)
    # All retained points of the instance together on the backup host (hard links once).
    stored_bytes = models.BigIntegerField(null=True, blank=True)
    # How long its last successful backup held a slot (the operation's start to end): what the
    # DR dashboard's capacity plan expects the next one to take.
    last_run_seconds = models.FloatField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        verbose_name_plural = "backup policies"
        indexes = [
            # The dispatcher's due runs of policies more frequent than daily, which it sorts by
            # deadline apart from the nightly ones (backups.services._due_runs).
            models.Index(
                fields=["next_run_at"],
                name="backup_policy_frequent_due",
                condition=models.Q(interval_minutes__lt=24 * 60),
            ),
        ]

    def __str__(self) -> str:
        return f"Backup policy of {self.instance_id}"

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.interval_minutes)

    @property
    def retention_text(self) -> str:
        parts = [
            f"{n} {label}"
            for n, label in (
                (self.keep_hourly, "hourly"),
                (self.keep_daily, "daily"),
                (self.keep_weekly, "weekly"),
                (self.keep_monthly, "monthly"),
            )
            if n
        ]
        return " / ".join(parts) or "newest point only"


class BackupKind(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    MANUAL = "manual", "Extra (on request)"
    PRE_UPGRADE = "pre_upgrade", "Before an upgrade"
    SAFETY = "safety", "Safety (before a restore)"


class PointDatabase(models.TextChoices):
    """Where a point's database comes from on a restore."""

    DUMP = "dump", "Database dump in the point"
    WAL = "wal", "Archived WAL, replayed to the point's time"


class BackupStatus(models.TextChoices):
    RUNNING = "running", "In progress"
    SUCCEEDED = "succeeded", "Retained"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Aged out"
    MISSING = "missing", "Missing on the backup host"


class Backup(models.Model):
    """One backup point (or an attempt at one) in the catalogue.

    A succeeded row is a directory ``points/<point_name>`` on ``backup_host`` holding the home
    directory, the database dump (``db.dump``), the checksum manifest and ``point.json``. The
    catalogue is kept in sync with what really is there (:func:`backups.catalogue.catalogue_sync`).
    A point of an instance that archives its WAL may carry no dump (``database`` "wal"): its
    database is the archive replayed to ``database_at`` (see :mod:`backups.take`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="backups"
    )
    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    backup_host = models.ForeignKey(
        Host, on_delete=models.PROTECT, null=True, blank=True, related_name="backups"
    )
    app_host = models.ForeignKey(
        Host, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=BackupKind.choices, default=BackupKind.MANUAL)
    mode = models.CharField(max_length=10, choices=BackupMode.choices, default=BackupMode.HOT)
    status = models.CharField(
        max_length=20, choices=BackupStatus.choices, default=BackupStatus.RUNNING
    )
    point_name = models.CharField(max_length=60, blank=True)
    label = models.CharField(max_length=30, blank=True, help_text="daily.0, weekly.1, ...")
    taken_at = models.DateTimeField(default=timezone.now, db_index=True)
    product = models.CharField(max_length=30, blank=True)
    version = models.CharField(max_length=40, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    downtime_seconds = models.FloatField(null=True, blank=True)
    bytes_transferred = models.BigIntegerField(null=True, blank=True)
    logical_bytes = models.BigIntegerField(null=True, blank=True)
    disk_bytes = models.BigIntegerField(
        null=True, blank=True, help_text="New space this point took after hard-link sharing."
    )
    file_count = models.PositiveIntegerField(null=True, blank=True)
    dump_bytes = models.BigIntegerField(null=True, blank=True)
    dump_sha256 = models.CharField(max_length=64, blank=True)
    database = models.CharField(
        max_length=10, choices=PointDatabase.choices, default=PointDatabase.DUMP
    )
    # The second a "wal" point's database is recovered to (its home was copied from then on).
    database_at = models.DateTimeField(null=True, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    changed_during_backup = models.PositiveIntegerField(default=0)
    offsite_status = models.CharField(max_length=20, blank=True)
    offsite_key = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    pruned_at = models.DateTimeField(null=True, blank=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-taken_at"]
        indexes = [models.Index(fields=["instance", "status", "-taken_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "point_name"],
                condition=~models.Q(point_name=""),
                name="backup_unique_point_per_instance",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label or self.point_name or 'backup'} of {self.instance_id}"

    @property
    def is_restorable(self) -> bool:
        return self.status == BackupStatus.SUCCEEDED

    @property
    def display_label(self) -> str:
        return self.label or self.point_name


class RestoreMode(models.TextChoices):
    IN_PLACE = "in_place", "In place"
    NEW_INSTANCE = "new_instance", "Into a new instance"


class Restore(models.Model):
    """A restore of one backup point, in place or into a new instance, and how it went."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        ROLLED_BACK = "rolled_back", "Failed, brought back"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The instance that receives the data (the source itself for in-place restores).
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="restores"
    )
    source = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="restores_from"
    )
    backup = models.ForeignKey(Backup, on_delete=models.SET_NULL, null=True, related_name="+")
    point_name = models.CharField(max_length=60)
    point_label = models.CharField(max_length=30, blank=True)
    mode = models.CharField(max_length=20, choices=RestoreMode.choices)
    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    safety_backup = models.ForeignKey(
        Backup, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    rto_seconds = models.FloatField(null=True, blank=True)
    health = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Restore of {self.point_name} ({self.mode})"


class RestoreDrill(models.Model):
    """An automatic restore of an instance's latest point into a scratch instance, checked
    healthy, timed (the RTO actually achievable) and removed again."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(AtlassianInstance, on_delete=models.CASCADE, related_name="drills")
    backup = models.ForeignKey(Backup, on_delete=models.SET_NULL, null=True, related_name="+")
    point_name = models.CharField(max_length=60, blank=True)
    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    tier = models.CharField(max_length=10)
    scratch_name = models.CharField(max_length=40, blank=True)
    scratch_host = models.ForeignKey(
        Host, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    rto_seconds = models.FloatField(null=True, blank=True)
    rto_objective_seconds = models.FloatField(null=True, blank=True)
    within_rto = models.BooleanField(null=True)
    cleaned_up = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Drill of {self.instance_id} ({self.status})"


class RestoreRequest(models.Model):
    """A customer's request that support restore a point (customers have no restore button)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"
        DECLINED = "declined", "Declined"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="restore_requests"
    )
    backup = models.ForeignKey(
        Backup, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    note = models.TextField(max_length=2000, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    handled_at = models.DateTimeField(null=True, blank=True)
    response = models.TextField(max_length=2000, blank=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Restore request for {self.instance_id} ({self.status})"


class BaseBackup(models.Model):
    """A physical base backup of an instance's database (``pg_basebackup``, tar, gzip), the
    start of the WAL replay of a point-in-time restore. Lives on the backup host at
    ``hosts/<app host>/<instance>/wal-base/<label>/base.tar.gz``."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        AtlassianInstance, on_delete=models.CASCADE, related_name="base_backups"
    )
    backup_host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="+")
    app_host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="+")
    operation = models.ForeignKey(
        Operation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    label = models.CharField(max_length=40)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    # Recovery may stop at any moment after this (the backup's end is consistent).
    finished_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    duration_seconds = models.FloatField(null=True, blank=True)
    # The first WAL segment the replay from this base needs (its backup_label's START WAL
    # LOCATION): the archive keeps every segment from the oldest retained base's on.
    start_wal = models.CharField(max_length=24, blank=True)
    error = models.TextField(blank=True)

    objects = scoped_manager("instance__tenant")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "label"], name="base_backup_label_unique")
        ]

    def __str__(self) -> str:
        return f"{self.instance.name} base {self.label}"


class WalArchive(models.Model):
    """The state of one instance's continuous WAL archive, as last read from its app host:
    when the shipper last copied WAL to the backup host, and what went wrong if it did not."""

    instance = models.OneToOneField(
        AtlassianInstance, on_delete=models.CASCADE, related_name="wal_archive"
    )
    enabled_at = models.DateTimeField(default=timezone.now)
    # The last moment the shipper finished a copy of everything pg_receivewal had written.
    shipped_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    receiver_running = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # Set while a "broken archiver" alert is open (the periodic check clears it on recovery).
    alerted_at = models.DateTimeField(null=True, blank=True)
    # [[from, to], ...] (ISO 8601): a restore in place to ``from``, finished at ``to``, forked a
    # new timeline there; a time in between can no longer be restored (a replay would follow
    # the new timeline and silently give the database as of ``from``).
    gaps = models.JSONField(default=list, blank=True)

    objects = scoped_manager("instance__tenant")

    def __str__(self) -> str:
        return f"WAL archive of {self.instance.name}"


class InstanceBackupStateQuerySet(ScopedQuerySet):
    """Backup states, scoped by their instance's tenant (a class of its own rather than
    ``scoped_manager()``, so the type checker can tell the manager's type)."""

    tenant_path = "instance__tenant"


class InstanceBackupState(models.Model):
    """What the catalogue holds for one instance, materialised so fleet-wide pages read one
    row per instance instead of its points: when its newest retained point was taken and how
    many catalogue rows (points and attempts) it has. Kept by
    :func:`backups.catalogue.instances_backup_state_refresh`, which every change of an
    instance's rows calls; an instance without a row has no backup yet."""

    instance = models.OneToOneField(
        AtlassianInstance,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="backup_state",
    )
    last_good_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0)
    refreshed_at = models.DateTimeField(default=timezone.now)

    objects = InstanceBackupStateQuerySet.as_manager()

    def __str__(self) -> str:
        return f"backup state of {self.instance_id}"
