"""API of notification settings: the same rules as the page (``notifications.views``).

Tenant admins read and change their tenants' settings; platform admins every tenant's and the
platform staff's; support staff read every tenant's and change none (403). Another tenant's
settings answer 404, a tenant the caller only sees as a viewer 403. Changes and test
notifications go through the page's services, which check and audit them.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, Throttled
from rest_framework.request import Request
from rest_framework.response import Response

from notifications.api.serializers import (
    NotificationDeliverySerializer,
    NotificationSettingsSerializer,
    NotificationTestSerializer,
)
from notifications.selectors import delivery_list, notification_tenants_readable
from notifications.services import (
    NotificationThrottled,
    notification_preference_update,
    notification_send_test,
    preference_for,
    preferences_for,
)
from panel.api.mixins import ScopedQuerysetMixin
from panel.api.permissions import IsPlatformAdmin, PanelPermission
from panel.api.schema import FORBIDDEN, NOT_FOUND, VALIDATION_ERROR, ErrorSerializer
from panel.api.serializers import request_body_refuse_fields
from tenants.models import Tenant
from tenants.selectors import manages_tenant, tenant_list

THROTTLED = OpenApiResponse(
    ErrorSerializer, description="Too many test notifications this hour; see Retry-After."
)
_SETTINGS_RESPONSES = {200: NotificationSettingsSerializer, 403: FORBIDDEN, 404: NOT_FOUND}
_CHANGE = extend_schema(
    responses={**_SETTINGS_RESPONSES, 400: VALIDATION_ERROR},
    description="Change who is told about what (the page's rules and checks; audited).",
)


@extend_schema_view(
    list=extend_schema(
        description="The notification settings of every tenant the caller reads (staff: all; "
        "tenant admins: their own). The platform staff's are at /notification-settings/platform/."
    ),
    retrieve=extend_schema(responses=_SETTINGS_RESPONSES),
    update=_CHANGE,
    partial_update=_CHANGE,
)
class NotificationSettingsViewSet(ScopedQuerysetMixin, viewsets.GenericViewSet):
    """A tenant's notification settings (by the tenant's id), or with ``platform`` the
    platform staff's (platform admins only)."""

    serializer_class = NotificationSettingsSerializer
    permission_classes = [PanelPermission]
    platform_admin_refusal = (
        "Only platform administrators choose the platform staff's notifications."
    )
    lookup_value_converter = "uuid"
    filter_backends: list[Any] = []
    platform = False  # the platform staff's settings (the routes without a tenant id)

    def get_permissions(self) -> list[Any]:
        permissions = list(super().get_permissions())
        if self.platform:
            permissions.append(IsPlatformAdmin())
        return permissions

    def scoped_queryset(self, access: Any) -> Any:
        return notification_tenants_readable(access)

    def _audience(self, pk: Any, *, change: bool = False) -> Tenant | None:
        """The tenant whose settings the route names (None: platform staff), checked."""
        if self.platform:
            return None
        tenant = self.get_queryset().filter(pk=pk).first()
        if tenant is None:
            get_object_or_404(tenant_list(self.access), pk=pk)  # another tenant's: 404
            raise PermissionDenied(
                "Only the tenant's administrators and support staff read its notifications."
            )
        if change and not manages_tenant(self.access, tenant.pk):
            raise PermissionDenied(
                "Only the tenant's administrators change its notifications; support reads them."
            )
        return tenant

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        prefs = preferences_for(page if page is not None else self.get_queryset())
        data = self.get_serializer(prefs, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, pk: Any = None) -> Response:
        return Response(self.get_serializer(preference_for(self._audience(pk))).data)

    def update(self, request: Request, pk: Any = None, partial: bool = False) -> Response:
        tenant = self._audience(pk, change=True)
        pref = preference_for(tenant)
        serializer = self.get_serializer(pref, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        pref = notification_preference_update(
            actor=self.access,
            tenant=tenant,
            email_enabled=data.get("email_enabled", pref.email_enabled),
            recipients=data.get("recipient_list", pref.recipient_list),
            events=data.get("events", list(pref.events or [])),
            webhook_enabled=data.get("webhook_enabled", pref.webhook_enabled),
            webhook_url=data.get("webhook_url", pref.webhook_url),
            webhook_secret=data.get("webhook_secret", ""),
        )
        return Response(self.get_serializer(pref).data)

    def partial_update(self, request: Request, pk: Any = None) -> Response:
        return self.update(request, pk, partial=True)

    @extend_schema(
        request=None,
        responses={202: NotificationTestSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 429: THROTTLED},
        description="Send a test notification through every channel set up (a few per hour; "
        "then 429 with Retry-After). Its deliveries show in the delivery log.",
    )
    @action(detail=True, methods=["post"], url_path="test", url_name="test")
    def send_test(self, request: Request, pk: Any = None) -> Response:
        tenant = self._audience(pk, change=True)
        request_body_refuse_fields(request)  # a test takes no body
        try:
            notification = notification_send_test(actor=self.access, tenant=tenant)
        except NotificationThrottled as exc:
            raise Throttled(wait=exc.wait, detail=str(exc)) from exc
        data = NotificationTestSerializer(notification, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=NotificationDeliverySerializer(many=True),
        description="Every delivery attempt series of the audience's notifications, newest "
        "first: when, where, outcome.",
    )
    @action(detail=True, methods=["get"], serializer_class=NotificationDeliverySerializer)
    def deliveries(self, request: Request, pk: Any = None) -> Response:
        tenant = self._audience(pk)
        page = self.paginate_queryset(delivery_list(self.access, tenant))
        data = NotificationDeliverySerializer(page, many=True).data
        return self.get_paginated_response(data)
