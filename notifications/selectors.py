"""Reads of the notifications app."""

from __future__ import annotations

from django.db.models import QuerySet

from notifications.models import NotificationDelivery
from panel.access import Access
from tenants.models import Tenant
from tenants.selectors import tenant_list


def notification_tenants_readable(access: Access) -> QuerySet[Tenant]:
    """Tenants whose notification settings and delivery log the caller reads: every tenant
    for staff (support reads but changes none), a tenant admin's own; viewers none. Who may
    change them is :func:`tenants.selectors.manages_tenant`."""
    if access.is_staff_role:
        return tenant_list(access)
    return tenant_list(access).filter(id__in=access.admin_tenant_ids)


def delivery_list(access: Access, tenant: Tenant | None) -> QuerySet[NotificationDelivery]:
    """The delivery log of ``tenant`` (None: the platform staff's), newest first."""
    qs = NotificationDelivery.objects.for_user(access).select_related("notification")
    return qs.filter(tenant=tenant) if tenant is not None else qs.filter(tenant__isnull=True)
