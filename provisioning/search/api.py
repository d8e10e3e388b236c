"""The staff search in the REST API (``GET /api/search/?q=``): the page's read, as JSON.

Staff only, like the DR dashboard: customers get 403 (the route itself is no secret; every
object it could name is another tenant's).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.access import access_for
from panel.api.permissions import IsStaffRole, PanelPermission
from panel.api.schema import FORBIDDEN, VALIDATION_ERROR
from provisioning.search.selectors import SEARCH_LIMIT, SEARCH_MIN_LENGTH, staff_search
from provisioning.search.views import QUERY_MAX_LENGTH


class StaffSearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        min_length=SEARCH_MIN_LENGTH,
        max_length=QUERY_MAX_LENGTH,
        help_text="Part of an instance name or hostname, a tenant's name or slug, a license "
        "SEN or a host name (case-insensitive).",
    )


class InstanceHitSerializer(serializers.Serializer):
    """An instance that matched, and on which of its fields."""

    id = serializers.UUIDField(source="instance.id")
    name = serializers.CharField(source="instance.name")
    hostname = serializers.CharField(source="instance.hostname")
    product = serializers.CharField(source="instance.product")
    version = serializers.CharField(source="instance.version")
    status = serializers.CharField(source="instance.status")
    display_status = serializers.CharField(source="instance.display_status")
    base_url = serializers.CharField(source="instance.base_url")
    tenant = serializers.UUIDField(source="instance.tenant_id")
    tenant_name = serializers.CharField(source="instance.tenant.name")
    tenant_slug = serializers.CharField(source="instance.tenant.slug")
    host_name = serializers.CharField(source="instance.host.name", allow_null=True)
    matched = serializers.ListField(
        child=serializers.ChoiceField(choices=["name", "hostname", "tenant", "SEN", "host"]),
        help_text="The fields that contain the query.",
    )
    sens = serializers.ListField(
        child=serializers.CharField(), help_text="SENs of its licenses that contain the query."
    )


class TenantHitSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    instance_count = serializers.IntegerField(help_text="Its instances (not deleted).")
    member_count = serializers.IntegerField()


class HostHitSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    role = serializers.CharField()
    status = serializers.CharField()


class StaffSearchSerializer(serializers.Serializer):
    """What matched, at most ``limit`` rows of each kind (``truncated`` when there were more:
    refine the query). Hosts are listed for platform admins only."""

    q = serializers.CharField()
    limit = serializers.IntegerField()
    truncated = serializers.BooleanField()
    instances = InstanceHitSerializer(many=True)
    tenants = TenantHitSerializer(many=True)
    hosts = HostHitSerializer(many=True)


class StaffSearchView(APIView):
    """Support staff and platform admins: find instances, tenants and hosts across tenants."""

    permission_classes = [PanelPermission, IsStaffRole]

    @extend_schema(
        parameters=[StaffSearchQuerySerializer],
        responses={200: StaffSearchSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN},
        operation_id="search_retrieve",
    )
    def get(self, request: Request) -> Response:
        query = StaffSearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = staff_search(access_for(request), query.validated_data["q"])
        data: dict[str, Any] = {
            "q": result.q,
            "limit": SEARCH_LIMIT,
            "truncated": result.truncated,
            "instances": result.instances,
            "tenants": result.tenants,
            "hosts": result.hosts,
        }
        return Response(StaffSearchSerializer(data).data)
