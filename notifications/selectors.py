"""Reads of the notifications app."""

from __future__ import annotations

from django.db.models import QuerySet

from notifications.models import NotificationDelivery
from panel.access import Access
from tenants.models import Tenant


def delivery_list(access: Access, tenant: Tenant | None) -> QuerySet[NotificationDelivery]:
    """The delivery log of ``tenant`` (None: the platform staff's), newest first."""
    qs = NotificationDelivery.objects.for_user(access).select_related("notification")
    return qs.filter(tenant=tenant) if tenant is not None else qs.filter(tenant__isnull=True)
