"""The API's permissions: authenticated, read-only tokens cannot write, and who may change what.

Object visibility is not decided here: viewsets only ever see ``for_user`` querysets, so
other tenants' objects are simply not found (404). The object-level checks below run after
that lookup, so a visible object the caller may not change answers 403, a foreign one 404.
"""

from __future__ import annotations

from rest_framework import permissions

from panel.access import access_for
from panel.operations import operation_cancel_allowed
from panel.scoping import tenant_id_of


class PanelPermission(permissions.BasePermission):
    message = "This token is read-only."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        access = access_for(request)
        if not access.is_authenticated:
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        return access.can_write


class IsPlatformAdmin(permissions.BasePermission):
    """Hosts, DNS provider accounts and other platform-owned resources: platform admins only.

    The refusal says what the view manages: its ``platform_admin_refusal`` (e.g. "Only
    platform administrators manage DNS provider accounts."), else a general sentence.
    """

    message = "Only platform administrators can do this."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        self.message = getattr(view, "platform_admin_refusal", type(self).message)
        return access_for(request).is_platform_admin


class IsStaffRole(permissions.BasePermission):
    """Cross-tenant staff actions (support and platform admins)."""

    message = "Only support staff can do this."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        return access_for(request).is_staff_role


class TenantAdminForChanges(permissions.BasePermission):
    """Everyone who sees an object may read it; changing it takes the admin role in its tenant
    (or a staff role). Objects of no tenant (host operations) take a platform admin."""

    message = "You need the admin role in this tenant to do this."

    def has_object_permission(self, request, view, obj) -> bool:  # noqa: ANN001
        if request.method in permissions.SAFE_METHODS:
            return True
        access = access_for(request)
        if getattr(view, "action", None) == "cancel":
            # One rule for the UI and the API: restores and drills only staff may cancel.
            if not operation_cancel_allowed(access, obj):
                self.message = (
                    "Only support staff can cancel restores and drills."
                    if obj.tenant_id is not None and access.administers_tenant(obj.tenant_id)
                    else self.message
                )
                return False
            return True
        tenant_id = tenant_id_of(obj)
        if tenant_id is None:
            return access.can_write and access.is_platform_admin
        return access.administers_tenant(tenant_id)


class PlatformAdminForChanges(permissions.BasePermission):
    """Everyone reads what they see; only platform admins create or change (e.g. tenants).

    On detail routes the check waits for the object, so a foreign object still answers 404.
    """

    message = "Only platform administrators can do this."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        if request.method in permissions.SAFE_METHODS or getattr(view, "detail", False):
            return True
        return access_for(request).is_platform_admin

    def has_object_permission(self, request, view, obj) -> bool:  # noqa: ANN001
        if request.method in permissions.SAFE_METHODS:
            return True
        return access_for(request).is_platform_admin
