"""Django admin for staff: the backup catalogue, restores and drills are read-only records;
policies are changed through the panel (so changes are validated and audited)."""

from __future__ import annotations

from django.contrib import admin

from backups.models import Backup, BackupPolicy, Restore, RestoreDrill, RestoreRequest
from tenants.admin import ReadOnlyAdmin


@admin.register(BackupPolicy)
class BackupPolicyAdmin(ReadOnlyAdmin):
    list_display = [
        "instance",
        "enabled",
        "interval_minutes",
        "mode",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "next_run_at",
        "missed_count",
    ]
    list_filter = ["enabled", "mode", "offsite_enabled"]
    search_fields = ["instance__name"]


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdmin):
    list_display = [
        "instance",
        "point_name",
        "label",
        "kind",
        "mode",
        "status",
        "taken_at",
        "logical_bytes",
        "disk_bytes",
    ]
    list_filter = ["status", "kind", "mode"]
    search_fields = ["instance__name", "point_name"]


@admin.register(Restore)
class RestoreAdmin(ReadOnlyAdmin):
    list_display = ["instance", "point_name", "mode", "status", "rto_seconds", "started_at"]
    list_filter = ["status", "mode"]


@admin.register(RestoreDrill)
class RestoreDrillAdmin(ReadOnlyAdmin):
    list_display = ["instance", "point_name", "status", "rto_seconds", "within_rto", "started_at"]
    list_filter = ["status", "tier"]


@admin.register(RestoreRequest)
class RestoreRequestAdmin(ReadOnlyAdmin):
    list_display = ["instance", "status", "requested_by", "created_at", "handled_by"]
    list_filter = ["status"]
