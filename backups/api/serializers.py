"""API shapes of backup points, policies, restores, drills, restore requests, the DR figures
and host evacuations. Related fields in write shapes are narrowed to what the caller sees, so
another tenant's object is simply "not found"."""

from __future__ import annotations

from functools import cache
from typing import Any

from rest_framework import serializers

from backups.models import (
    Backup,
    BackupMode,
    BackupPolicy,
    BaseBackup,
    Restore,
    RestoreDrill,
    RestoreMode,
    RestoreRequest,
)
from backups.selectors import instance_points
from panel.access import access_for
from panel.api.rows import ValuesShape
from panel.api.serializers import StrictFieldsMixin
from provisioning.models import AtlassianInstance, EvacuatedCopy, Host
from provisioning.selectors import instance_list


def _access(context: dict[str, Any]) -> Any:
    return access_for(context["request"])


class BackupSerializer(serializers.ModelSerializer):
    """One backup point (or attempt) in the catalogue, with what it holds and cost."""

    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    backup_host_name = serializers.CharField(
        source="backup_host.name", read_only=True, allow_null=True
    )
    status = serializers.CharField(
        read_only=True,
        help_text=("running, succeeded (retained), failed, expired (aged out), missing"),
    )
    kind = serializers.CharField(read_only=True, help_text="scheduled, manual, pre_upgrade, safety")
    mode = serializers.CharField(read_only=True, help_text="hot or cold")

    class Meta:
        model = Backup
        fields = [
            "id",
            "instance",
            "instance_name",
            "point_name",
            "label",
            "kind",
            "mode",
            "status",
            "taken_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "downtime_seconds",
            "bytes_transferred",
            "logical_bytes",
            "disk_bytes",
            "file_count",
            "dump_bytes",
            "dump_sha256",
            "database",
            "database_at",
            "manifest_sha256",
            "verified_at",
            "changed_during_backup",
            "offsite_status",
            "backup_host_name",
            "product",
            "version",
            "error",
            "pruned_at",
        ]
        read_only_fields = fields


@cache
def backup_shape() -> ValuesShape:
    """BackupSerializer's answer from ``values()`` rows (every field is a column): the list's.
    Built once, as it depends on the serializer's declaration only."""
    return ValuesShape(BackupSerializer())


# The columns BackupSerializer reads (a list loads only these: no instance credentials to
# decrypt, no tenant row).
BACKUP_COLUMNS = (
    *(
        name
        for name in BackupSerializer.Meta.fields
        if name not in ("instance_name", "backup_host_name")
    ),
    "backup_host",
    "instance__name",
    "backup_host__name",
)


class BackupStartSerializer(StrictFieldsMixin, serializers.Serializer):
    """Start an extra backup of an instance now (tenant admins and staff)."""

    instance = serializers.PrimaryKeyRelatedField(
        queryset=AtlassianInstance.objects.none(),
        error_messages={"does_not_exist": "Unknown instance."},
    )
    mode = serializers.CharField(
        required=False, allow_blank=True, help_text="hot or cold; empty: the policy's mode"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            self.fields["instance"].queryset = instance_list(_access(self.context))

    def validate_mode(self, value: str) -> str:
        if value and value not in BackupMode.values:
            raise serializers.ValidationError("Choose hot or cold.")
        return value


def _copy_host_field(help_text: str) -> serializers.SlugRelatedField[Host]:
    """The app host a copy goes to, by name (None: the source's)."""
    return serializers.SlugRelatedField(
        slug_field="name",
        queryset=Host.objects.filter(role=Host.Role.APP),
        required=False,
        allow_null=True,
        default=None,
        help_text=help_text,
        error_messages={"does_not_exist": "No app host is named {value}."},
    )


class RestoreStartSerializer(StrictFieldsMixin, serializers.Serializer):
    """Restore this point in place (``confirm`` = the instance's name) or into a new instance
    (``name`` and ``hostname`` of the copy)."""

    mode = serializers.ChoiceField(choices=RestoreMode.choices)
    confirm = serializers.CharField(required=False, allow_blank=True, default="")
    skip_safety = serializers.BooleanField(
        required=False,
        default=False,
        help_text="In place only: no safety backup first (when the current state cannot be "
        "backed up); a failed restore then only puts the previous database back.",
    )
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=40)
    hostname = serializers.CharField(required=False, allow_blank=True, default="", max_length=253)
    host: serializers.SlugRelatedField[Host] = _copy_host_field(
        "New instance only: the app host of the copy, by name (a ready app host that "
        "reads the point's backup host and has room); empty: the source's host."
    )


class BackupPolicySerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """An instance's backup policy. Staff change it (PATCH); everyone who sees it reads it."""

    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    mode = serializers.CharField(required=False, help_text="hot or cold")
    backup_host_name = serializers.CharField(
        source="backup_host.name", read_only=True, allow_null=True
    )
    retention = serializers.CharField(source="retention_text", read_only=True)

    class Meta:
        model = BackupPolicy
        fields = [
            "id",
            "instance",
            "instance_name",
            "enabled",
            "interval_minutes",
            "window_start",
            "jitter_minutes",
            "keep_hourly",
            "keep_daily",
            "keep_weekly",
            "keep_monthly",
            "retention",
            "mode",
            "backup_host_name",
            "offsite_enabled",
            "next_run_at",
            "last_dispatched_at",
            "missed_count",
            "last_missed_at",
            "stored_bytes",
        ]
        read_only_fields = [
            "id",
            "instance",
            "instance_name",
            "retention",
            "backup_host_name",
            "next_run_at",
            "last_dispatched_at",
            "missed_count",
            "last_missed_at",
            "stored_bytes",
        ]

    def validate_mode(self, value: str) -> str:
        if value not in BackupMode.values:
            raise serializers.ValidationError("Choose hot or cold.")
        return value


class RestoreSerializer(serializers.ModelSerializer):
    """A restore and its outcome: the point, how long it took (the achieved RTO), health."""

    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    source = serializers.UUIDField(source="source_id", read_only=True)
    backup = serializers.UUIDField(source="backup_id", read_only=True, allow_null=True)
    operation = serializers.UUIDField(source="operation_id", read_only=True, allow_null=True)
    status = serializers.CharField(
        read_only=True, help_text="running, succeeded, failed, rolled_back"
    )
    mode = serializers.CharField(read_only=True, help_text="in_place or new_instance")

    class Meta:
        model = Restore
        fields = [
            "id",
            "instance",
            "instance_name",
            "source",
            "backup",
            "point_name",
            "point_label",
            "mode",
            "status",
            "operation",
            "started_at",
            "finished_at",
            "rto_seconds",
            "health",
            "error",
        ]
        read_only_fields = fields


class RestoreDrillSerializer(serializers.ModelSerializer):
    """A restore drill: the point, the time it took to come back, and whether it met the RTO."""

    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    operation = serializers.UUIDField(source="operation_id", read_only=True, allow_null=True)
    status = serializers.CharField(read_only=True, help_text="running, passed, failed")

    class Meta:
        model = RestoreDrill
        fields = [
            "id",
            "instance",
            "instance_name",
            "point_name",
            "tier",
            "status",
            "operation",
            "started_at",
            "finished_at",
            "rto_seconds",
            "rto_objective_seconds",
            "within_rto",
            "cleaned_up",
            "error",
        ]
        read_only_fields = fields


class DrillStartSerializer(StrictFieldsMixin, serializers.Serializer):
    instance = serializers.PrimaryKeyRelatedField(
        queryset=AtlassianInstance.objects.none(),
        required=False,
        allow_null=True,
        help_text="Empty: the least recently drilled instance.",
        error_messages={"does_not_exist": "Unknown instance."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            self.fields["instance"].queryset = instance_list(_access(self.context))


class RestoreRequestSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A customer's request that support restore a point."""

    instance = serializers.PrimaryKeyRelatedField(
        queryset=AtlassianInstance.objects.none(),
        error_messages={"does_not_exist": "Unknown instance."},
    )
    backup = serializers.PrimaryKeyRelatedField(
        queryset=Backup.objects.none(),
        required=False,
        allow_null=True,
        error_messages={"does_not_exist": "Unknown backup point."},
    )
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )
    status = serializers.CharField(read_only=True, help_text="open, done, declined")

    class Meta:
        model = RestoreRequest
        fields = [
            "id",
            "instance",
            "instance_name",
            "backup",
            "note",
            "status",
            "requested_by",
            "created_at",
            "handled_at",
            "response",
        ]
        read_only_fields = [
            "id",
            "instance_name",
            "status",
            "requested_by",
            "created_at",
            "handled_at",
            "response",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            access = _access(self.context)
            self.fields["instance"].queryset = instance_list(access)
            self.fields["backup"].queryset = Backup.objects.for_user(access)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        backup = attrs.get("backup")
        instance = attrs.get("instance")
        if backup is not None and instance is not None:
            access = _access(self.context)
            if not instance_points(access, instance).filter(pk=backup.pk).exists():
                raise serializers.ValidationError(
                    {"backup": "Not a retained point of this instance."}
                )
        return attrs


class RestoreRequestHandleSerializer(StrictFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[RestoreRequest.Status.DONE, RestoreRequest.Status.DECLINED]
    )
    response = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class TierFiguresSerializer(serializers.Serializer):
    """DR figures of one service tier."""

    tier = serializers.CharField()
    label = serializers.CharField()
    rpo_seconds = serializers.FloatField()
    rto_seconds = serializers.FloatField()
    instances = serializers.IntegerField()
    within_rpo = serializers.IntegerField()
    outside_rpo = serializers.IntegerField()
    drills_run = serializers.IntegerField()
    drills_passed = serializers.IntegerField()
    drills_failed = serializers.IntegerField()
    last_drill = serializers.DateTimeField(allow_null=True)
    worst_rto_seconds = serializers.FloatField(allow_null=True)
    worst_rto_ok = serializers.BooleanField()


class BaseBackupSerializer(serializers.ModelSerializer):
    """A physical base backup of an instance's database (the start of a replay)."""

    class Meta:
        model = BaseBackup
        fields = ["id", "label", "status", "started_at", "finished_at", "size_bytes", "error"]
        read_only_fields = fields


class RecoveryStateSerializer(serializers.Serializer):
    """An instance's point-in-time recovery: whether its WAL is archived, how far the archive
    reaches, and the window a restore to a time may choose from."""

    instance = serializers.UUIDField()
    wal_archiving = serializers.BooleanField()
    shipped_at = serializers.DateTimeField(allow_null=True)
    lag_seconds = serializers.FloatField(allow_null=True)
    receiver_running = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    window_start = serializers.DateTimeField(allow_null=True)
    window_end = serializers.DateTimeField(allow_null=True)
    base_backups = BaseBackupSerializer(many=True)


class RestoreToTimeSerializer(StrictFieldsMixin, serializers.Serializer):
    """Restore to ``target_time`` (ISO 8601 with a zone, to the second), inside the
    recoverable window: ``in_place`` (``confirm`` = the instance's name) or ``new_instance``
    (the copy's ``name``, ``hostname`` and optionally its app ``host``)."""

    target_time = serializers.DateTimeField()
    mode = serializers.ChoiceField(
        choices=RestoreMode.choices, required=False, default=RestoreMode.IN_PLACE
    )
    confirm = serializers.CharField(required=False, allow_blank=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=40)
    hostname = serializers.CharField(required=False, allow_blank=True, default="", max_length=253)
    host: serializers.SlugRelatedField[Host] = _copy_host_field(
        "New instance only: the app host of the copy, by name; empty: the source's."
    )


# --- host evacuation -----------------------------------------------------------------------


class EvacuationPlanRowSerializer(serializers.Serializer):
    """Where one instance of the host would go now, from which point, or why it cannot."""

    instance = serializers.UUIDField()
    name = serializers.CharField()
    tenant = serializers.CharField()
    tier = serializers.CharField()
    tier_label = serializers.CharField()
    rto_objective_seconds = serializers.FloatField()
    point = serializers.UUIDField(allow_null=True, help_text="The point it is restored from.")
    point_name = serializers.CharField(allow_blank=True)
    point_taken_at = serializers.DateTimeField(allow_null=True)
    target = serializers.CharField(
        allow_blank=True, help_text="The app host it goes to, by name; empty: it is not moved."
    )
    problem = serializers.CharField(allow_blank=True, help_text="Why it is not moved.")


class EvacuationOutcomeSerializer(serializers.Serializer):
    """One instance's part of an evacuation (its own operation) and what it achieved."""

    instance = serializers.CharField(help_text="The instance's name.")
    instance_id = serializers.UUIDField(allow_null=True)
    status = serializers.CharField(help_text="The part's operation status.")
    operation = serializers.UUIDField()
    to_host = serializers.CharField(allow_blank=True)
    rto_seconds = serializers.FloatField(
        allow_null=True,
        help_text="From the host's last successful contact to the instance answering again.",
    )
    rto_objective_seconds = serializers.FloatField(allow_null=True)
    data_age_seconds = serializers.FloatField(
        allow_null=True, help_text="How much older the restored point is than the failure."
    )
    restore_seconds = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class EvacuationNotMovedSerializer(serializers.Serializer):
    """An instance the evacuation's plan left where it was, and why."""

    instance = serializers.CharField()
    name = serializers.CharField()
    tier = serializers.CharField()
    problem = serializers.CharField(allow_blank=True)


class EvacuationSerializer(serializers.Serializer):
    """One evacuation (a ``host.evacuate`` operation) with its figures: per instance while it
    runs, the totals once it ended."""

    operation = serializers.UUIDField()
    host = serializers.UUIDField(allow_null=True)
    host_name = serializers.CharField()
    status = serializers.CharField()
    automatic = serializers.BooleanField(help_text="Started by the panel itself (auto-evacuation).")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    instances = EvacuationOutcomeSerializer(many=True)
    not_moved = EvacuationNotMovedSerializer(many=True)
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Parts that failed or were cancelled.")
    seconds = serializers.FloatField(allow_null=True, help_text="The whole evacuation, once ended.")
    sum_of_restores_seconds = serializers.FloatField(allow_null=True)


class EvacuatedCopySerializer(serializers.ModelSerializer):
    """An evacuated instance's old deployment on the host: pending (fenced when the host comes
    back), fenced (stopped and kept aside) or purged."""

    instance = serializers.UUIDField(source="instance_id", read_only=True, allow_null=True)

    class Meta:
        model = EvacuatedCopy
        fields = [
            "id",
            "instance",
            "instance_name",
            "status",
            "project",
            "directory",
            "kept_at",
            "detail",
            "evacuated_at",
            "fenced_at",
            "purged_at",
        ]
        read_only_fields = fields


class EvacuationStateSerializer(serializers.Serializer):
    """An app host's evacuation: its state, where each instance on it would go now, its last
    evacuation and the copies of evacuated instances it keeps."""

    host = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    status_reason = serializers.CharField(allow_blank=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    down = serializers.BooleanField(help_text="Unreachable or in error: it can be evacuated.")
    plan = EvacuationPlanRowSerializer(many=True)
    last_evacuation = EvacuationSerializer(allow_null=True)
    copies = EvacuatedCopySerializer(many=True)
