"""Reads of tenants, memberships, tokens and audit events (scoped to the caller)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from panel.access import Access
from tenants.models import ApiToken, AuditEvent, Invitation, Membership, Tenant


def tenant_list(access: Access) -> QuerySet:
    return Tenant.objects.for_user(access)


def tenant_get(access: Access, tenant_id: Any) -> Tenant:
    return get_object_or_404(tenant_list(access), pk=tenant_id)


def membership_list(access: Access) -> QuerySet:
    return Membership.objects.for_user(access).select_related("user", "tenant")


def invitation_list(access: Access) -> QuerySet:
    """Invitations to the caller's tenants: staff see all, tenant admins their tenants',
    viewers none (who is invited, by which address, is the administrators' business)."""
    qs = Invitation.objects.for_user(access).select_related("tenant", "invited_by")
    if access.is_staff_role:
        return qs
    return qs.filter(tenant_id__in=access.admin_tenant_ids)


def invitation_in_scope(access: Access, invitation_id: Any) -> Invitation:
    """An invitation of one of the caller's tenants (another tenant's is not found), for a
    change the service then allows or refuses (403) by role."""
    return get_object_or_404(Invitation.objects.for_user(access), pk=invitation_id)


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


def tenants_managed(access: Access) -> QuerySet:
    """Tenants whose members and notification settings the caller may change: a tenant
    admin's own tenants, and every tenant for platform admins.

    Support staff act on any tenant's *instances* (``tenants_administered``), but do not
    decide who belongs to a tenant or where its notifications (webhooks) go.
    """
    qs = tenant_list(access)
    if not access.can_write:
        return qs.none()
    if access.is_platform_admin:
        return qs
    return qs.filter(id__in=access.admin_tenant_ids)


def manages_tenant(access: Access, tenant_id: Any) -> bool:
    """Whether the caller may change ``tenant_id``'s members and notification settings."""
    if not access.can_write:
        return False
    return access.is_platform_admin or tenant_id in access.admin_tenant_ids


def tenant_list_with_counts(access: Access) -> QuerySet:
    """Tenants with how many (not deleted) instances and members each has, for staff lists."""
    from django.db.models import Count, Q

    return tenant_list(access).annotate(
        instance_count=Count("instances", filter=~Q(instances__status="deleted"), distinct=True),
        member_count=Count("memberships", distinct=True),
    )


def tenants_switchable(access: Access) -> tuple[tuple[Any, str], ...]:
    """(id, name) of the tenants the header's switcher offers: a customer's own tenants, when
    they belong to several. Staff always work across every tenant, and an API token has its
    own tenant, so neither has one."""
    if access.is_staff_role or access.token is not None or len(access.member_tenants) < 2:
        return ()
    return access.member_tenants
