"""Django admin for staff: hosts, instances, licenses, health checks and operations.

Secrets never render here: the hosts' SSH private keys, instances' database passwords and
extra environment, and license keys are excluded. Instances are created and changed through
the panel (their changes are operations); operations and their logs are read-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceHealthCheck,
    License,
    Operation,
    OperationStep,
)
from tenants.admin import AuditedAdmin, ReadOnlyAdmin


@admin.register(Host)
class HostAdmin(AuditedAdmin):
    list_display = [
        "name",
        "role",
        "address",
        "ssh_port",
        "status",
        "last_seen_at",
        "disk_used_percent",
    ]
    list_filter = ["role", "status"]
    search_fields = ["name", "address", "private_address"]
    exclude = ["ssh_private_key"]
    readonly_fields = [
        "seen_host_key_fingerprint",
        "seen_host_key",
        "facts",
        "cpu_count",
        "memory_mb",
        "disk_total_bytes",
        "disk_free_bytes",
        "last_seen_at",
        "last_health_at",
        "created_at",
        "status",
        "status_reason",
    ]


class LicenseInline(admin.TabularInline):
    model = License
    extra = 0
    can_delete = False
    fields = [
        "product",
        "sen",
        "organisation",
        "license_type",
        "expiry_date",
        "maintenance_expiry_date",
        "decode_status",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AtlassianInstance)
class AtlassianInstanceAdmin(AuditedAdmin):
    list_display = [
        "name",
        "tenant",
        "product",
        "version",
        "hostname",
        "host",
        "status",
        "health",
        "tier",
    ]
    list_filter = ["status", "health", "product", "tier", "tenant"]
    search_fields = ["name", "hostname", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant", "host"]
    exclude = ["db_password", "extra_env"]
    # What the instance runs is changed by operations in the panel, never by editing a row.
    readonly_fields = [
        "tenant",
        "name",
        "product",
        "version",
        "hostname",
        "context_path",
        "host",
        "heap_min_mb",
        "heap_max_mb",
        "db_name",
        "db_user",
        "status",
        "status_reason",
        "status_changed_at",
        "health",
        "health_changed_at",
        "deployed_compose_hash",
        "created_at",
        "updated_at",
        "deleted_at",
    ]
    inlines = [LicenseInline]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(License)
class LicenseAdmin(AuditedAdmin):
    list_display = [
        "instance",
        "product",
        "sen",
        "organisation",
        "expiry_date",
        "maintenance_expiry_date",
        "decode_status",
    ]
    list_filter = ["product", "decode_status", "evaluation"]
    search_fields = ["sen", "organisation", "instance__name", "instance__tenant__name"]
    list_select_related = ["instance"]
    exclude = ["key"]
    readonly_fields = ["instance", "product", "decode_status", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A key is pasted on the instance page, where it is decoded; never typed in here.
        return False


@admin.register(InstanceHealthCheck)
class InstanceHealthCheckAdmin(ReadOnlyAdmin):
    list_display = ["instance", "checked_at", "ok", "state", "response_ms"]
    list_filter = ["ok"]
    search_fields = ["instance__name"]
    list_select_related = ["instance"]


class OperationStepInline(admin.TabularInline):
    model = OperationStep
    extra = 0
    can_delete = False
    fields = ["created_at", "level", "message", "command", "exit_code", "duration_ms"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "tenant",
        "instance",
        "host",
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["id", "instance__name", "host__name", "tenant__name", "error"]
    list_select_related = ["tenant", "instance", "host", "requested_by"]
    date_hierarchy = "created_at"
    inlines = [OperationStepInline]


@admin.register(OperationStep)
class OperationStepAdmin(ReadOnlyAdmin):
    list_display = ["operation", "created_at", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message", "operation__id"]
    list_select_related = ["operation"]
