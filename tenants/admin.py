"""Django admin for staff: tenants, memberships, API tokens and the (read-only) audit log.

Secrets never render here: token key hashes are excluded. Changes made in the admin are
audited like any other.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from panel.access import access_for
from panel.audit import audit_record
from tenants.models import ApiToken, AuditEvent, Membership, Tenant


class AuditedAdmin(admin.ModelAdmin):
    """Records an audit event (names of changed fields, never their values) for each save."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            actor=access_for(request),
            action=f"admin.{obj._meta.model_name}.{'change' if change else 'add'}",
            target=obj,
            changes={"fields": sorted(form.changed_data)},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(
            actor=access_for(request),
            action=f"admin.{obj._meta.model_name}.delete",
            target=obj,
        )
        super().delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the panel itself (logs, records): staff may look, not touch."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(AuditedAdmin):
    list_display = ["name", "slug", "contact_email", "default_tier", "created_at"]
    list_filter = ["default_tier"]
    search_fields = ["name", "slug", "contact_email"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__name", "tenant__slug"]
    autocomplete_fields = ["user", "tenant"]


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdmin):
    """Tokens are created by their owners in the panel (the secret is shown only to them);
    staff may look at them and revoke them here."""

    list_display = [
        "name",
        "prefix",
        "user",
        "tenant",
        "scope",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username", "tenant__name"]
    exclude = ["key_hash"]
    readonly_fields = ["user", "tenant", "name", "scope", "prefix", "created_at", "last_used_at"]
    fields = [
        "name",
        "user",
        "tenant",
        "scope",
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "actor_label",
        "source",
        "action",
        "target_label",
        "tenant",
        "source_ip",
    ]
    list_filter = ["source", "action", "tenant"]
    search_fields = ["actor_label", "action", "target_label", "target_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
