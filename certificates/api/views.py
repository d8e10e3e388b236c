"""API of DNS zones and provider accounts (platform admins: create, change, remove, test the
connection), certificates, and each instance's address: DNS records, certificate, proxy
config, Apache export and actions.

Thin: instances come from the scoped selector (404 for other tenants); actions call the same
services as the pages and answer 202 with the operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from certificates import proxy, selectors, services
from certificates.api.serializers import (
    CertificateListQuerySerializer,
    CertificateSerializer,
    DnsAccountCheckSerializer,
    DnsProviderAccountSerializer,
    DnsProviderAccountUpdateSerializer,
    DnsZoneSerializer,
    EndpointSerializer,
)
from certificates.models import (
    Certificate,
    CertificateOperationKind,
    DnsProviderAccount,
    DnsZone,
)
from panel.access import Access, access_for
from panel.api.exceptions import Conflict
from panel.api.mixins import ScopedQuerysetMixin, idempotency_key
from panel.api.permissions import IsPlatformAdmin, PanelPermission
from panel.api.schema import CONFLICT, NOT_FOUND, VALIDATION_ERROR
from panel.api.serializers import request_body_refuse_fields
from provisioning.api.operations import action_schema, operation_accepted, operation_replay
from provisioning.selectors import instance_get


class CertificateViewSet(
    ScopedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Certificates the caller sees (``?expiring=14`` for those within 14 days of expiry)."""

    serializer_class = CertificateSerializer
    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"

    @extend_schema(parameters=[CertificateListQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def scoped_queryset(self, access: Access) -> QuerySet:
        if self.action != "list":
            return Certificate.objects.for_user(access).select_related("zone")
        # A bad number is a 400 with the field's message (it used to be a 500 past ~10^13).
        query = CertificateListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        days = query.validated_data.get("expiring")
        if days is not None:
            return selectors.certificates_expiring(access, days)
        return Certificate.objects.for_user(access).select_related("zone")


@extend_schema_view(
    partial_update=extend_schema(
        request=DnsProviderAccountUpdateSerializer,
        responses={200: DnsProviderAccountSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
        description="Rename the account, change its settings or replace its secrets (the "
        "kind stays). Without `credentials` the stored secrets are kept.",
    ),
    destroy=extend_schema(
        responses={204: None, 404: NOT_FOUND, 409: CONFLICT},
        description="Forget the account; refused (409) while it serves zones.",
    ),
)
class DnsProviderAccountViewSet(ScopedQuerysetMixin, viewsets.ModelViewSet):
    """DNS provider accounts (platform admins); credentials are write-only."""

    serializer_class = DnsProviderAccountSerializer
    # Changes go through services; a change is a PATCH (secrets are never sent back, so a
    # PUT could not carry the whole account).
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    permission_classes = [PanelPermission, IsPlatformAdmin]
    platform_admin_refusal = "Only platform administrators manage DNS provider accounts."
    lookup_value_converter = "uuid"

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.dns_account_list(access)

    def get_serializer_class(self) -> type:
        if self.action == "partial_update":
            return DnsProviderAccountUpdateSerializer
        return DnsProviderAccountSerializer

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        serializer.instance = services.dns_account_create(
            actor=self.access,
            name=data["name"],
            kind=data["kind"],
            config=data.get("config") or {},
            credentials=data.get("credentials") or {},
        )

    def perform_update(self, serializer: Any) -> None:
        data = serializer.validated_data
        serializer.instance = services.dns_account_update(
            actor=self.access,
            account=serializer.instance,
            name=data.get("name"),
            config=data.get("config"),
            credentials=data.get("credentials"),
        )

    def perform_destroy(self, instance: DnsProviderAccount) -> None:
        try:
            services.dns_account_delete(actor=self.access, account=instance)
        except ValidationError as exc:
            raise Conflict(" ".join(exc.messages)) from exc

    @extend_schema(
        request=None,
        responses={200: DnsAccountCheckSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
        description="Test the connection now: the provider accepts the account's "
        "credentials, and serves each of its zones. Read-only lookups; the answer says "
        "what each one found (`ok` false when any failed).",
    )
    @action(detail=True, methods=["post"], url_path="check")
    def check(self, request: Request, pk: Any = None) -> Response:
        account = self.get_object()
        request_body_refuse_fields(request)  # the test takes no body
        result = services.dns_account_check(actor=self.access, account=account)
        return Response(DnsAccountCheckSerializer(result).data)


@extend_schema_view(
    destroy=extend_schema(
        responses={204: None, 404: NOT_FOUND, 409: CONFLICT},
        description="Forget the zone (nothing changes at the provider); refused (409) while "
        "instances have records in it or its wildcard certificate serves sites.",
    ),
)
class DnsZoneViewSet(ScopedQuerysetMixin, viewsets.ModelViewSet):
    """Zones the panel manages records in (platform admins)."""

    serializer_class = DnsZoneSerializer
    http_method_names = ["get", "post", "delete", "head", "options"]
    permission_classes = [PanelPermission, IsPlatformAdmin]
    platform_admin_refusal = "Only platform administrators manage DNS zones."
    lookup_value_converter = "uuid"

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.zone_list(access)

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        serializer.instance = services.dns_zone_create(actor=self.access, **data)

    def perform_destroy(self, instance: DnsZone) -> None:
        try:
            services.dns_zone_delete(actor=self.access, zone=instance)
        except ValidationError as exc:
            raise Conflict(" ".join(exc.messages)) from exc


def _instance(request: Request, pk: Any) -> Any:
    return instance_get(access_for(request), pk)


@extend_schema(
    responses={200: EndpointSerializer, 404: NOT_FOUND},
    description="The instance's DNS records, certificate, proxy site and the last "
    "consistency check.",
)
@api_view(["GET"])
@permission_classes([PanelPermission])
def instance_endpoint(request: Request, pk: Any) -> Response:
    access = access_for(request)
    instance = _instance(request, pk)
    data = selectors.instance_endpoint(access, instance)
    return Response(
        EndpointSerializer(
            {
                "base_url": instance.base_url,
                "certificate": data["certificate"],
                "dns_records": data["records"],
                "proxy": data["site"],
                "problems": data["problems"],
                "checked_at": data["checked_at"],
            },
            context={"request": request},
        ).data
    )


@extend_schema(
    responses={(200, "text/plain"): OpenApiTypes.STR, 404: NOT_FOUND},
    description="The Apache httpd 2.4 virtual host for the instance (seed 002).",
)
@api_view(["GET"])
@permission_classes([PanelPermission])
def instance_apache_config(request: Request, pk: Any) -> HttpResponse:
    instance = _instance(request, pk)
    response = HttpResponse(
        proxy.apache_vhost_render(instance), content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{instance.hostname}-apache.conf"'
    return response


def _accepted_action(
    request: Request, pk: Any, *, kind: str, staff: bool, start: Callable[..., Any]
) -> Response:
    """Look up, check the role, replay a repeated request, start: every instance action."""
    access = access_for(request)
    instance = _instance(request, pk)
    if staff and not access.is_staff_role:
        raise PermissionDenied("Only support staff can renew certificates on demand.")
    if not staff and not access.administers_tenant(instance.tenant_id):
        raise PermissionDenied("You need the admin role in this tenant to do this.")
    request_body_refuse_fields(request)  # these actions take no body
    replay = operation_replay(access, request, kind=kind, instance=instance)
    if replay is not None:
        return replay
    operation = start(actor=access, instance=instance, idempotency_key=idempotency_key(request))
    return operation_accepted(operation, request)


@action_schema(description="Renew the instance's certificate now (support staff).")
@api_view(["POST"])
@permission_classes([PanelPermission])
def instance_certificate_renew(request: Request, pk: Any) -> Response:
    return _accepted_action(
        request,
        pk,
        kind=CertificateOperationKind.CERTIFICATE_RENEW,
        staff=True,
        start=services.instance_certificate_renew,
    )


@action_schema(description="Render and deploy the instance's proxy site again.")
@api_view(["POST"])
@permission_classes([PanelPermission])
def instance_proxy_deploy(request: Request, pk: Any) -> Response:
    return _accepted_action(
        request,
        pk,
        kind=CertificateOperationKind.PROXY_DEPLOY,
        staff=False,
        start=services.proxy_deploy,
    )


@action_schema(description="Publish the instance's DNS records again.")
@api_view(["POST"])
@permission_classes([PanelPermission])
def instance_dns_update(request: Request, pk: Any) -> Response:
    return _accepted_action(
        request,
        pk,
        kind=CertificateOperationKind.DNS_UPDATE,
        staff=False,
        start=services.dns_update,
    )
