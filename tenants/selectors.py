"""Reads of tenants, memberships, tokens and audit events (scoped to the caller)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from panel.access import Access
from tenants.models import ApiToken, AuditEvent, Membership, Tenant


def tenant_list(access: Access) -> QuerySet:
    return Tenant.objects.for_user(access)


def tenant_get(access: Access, tenant_id: Any) -> Tenant:
    return get_object_or_404(tenant_list(access), pk=tenant_id)


def membership_list(access: Access) -> QuerySet:
    return Membership.objects.for_user(access).select_related("user", "tenant")


def token_list(user: Any) -> QuerySet:
    return ApiToken.objects.for_owner(user).select_related("tenant")


def audit_list(access: Access) -> QuerySet:
    """Audit events: staff see all; tenant admins see their tenants'; viewers see none."""
    qs = AuditEvent.objects.for_user(access).select_related("actor", "tenant")
    if access.tenant_ids is None:
        return qs
    return qs.filter(tenant_id__in=access.admin_tenant_ids)


def tenants_administered(access: Access) -> QuerySet:
    """Tenants whose instances the caller may create and change (staff: every tenant)."""
    qs = tenant_list(access)
    if not access.can_write:
        return qs.none()
    if access.is_staff_role:
        return qs
    return qs.filter(id__in=access.admin_tenant_ids)


def tenant_list_with_counts(access: Access) -> QuerySet:
    """Tenants with how many (not deleted) instances and members each has, for staff lists."""
    from django.db.models import Count, Q

    return tenant_list(access).annotate(
        instance_count=Count("instances", filter=~Q(instances__status="deleted"), distinct=True),
        member_count=Count("memberships", distinct=True),
    )
