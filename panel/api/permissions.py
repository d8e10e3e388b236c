"""The API's default permission: authenticated, and read-only tokens cannot write.

Object visibility is not decided here: viewsets only ever see ``for_user`` querysets, so
other tenants' objects are simply not found (404).
"""

from __future__ import annotations

from rest_framework import permissions

from panel.access import access_for


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
    """Hosts and other platform-owned resources: platform admins only."""

    message = "Only platform administrators manage hosts."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        return access_for(request).is_platform_admin


class IsStaffRole(permissions.BasePermission):
    """Cross-tenant staff actions (support and platform admins)."""

    message = "Only support staff can do this."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001
        return access_for(request).is_staff_role
