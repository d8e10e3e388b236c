"""Resource use in the API: an instance's samples of the last 24 hours (whoever sees the
instance; another tenant's answers 404, as its detail does) and a host's totals against its
capacity (platform admins, like every host route). Reads only, through the selectors the pages
use."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.access import access_for
from panel.api.permissions import IsPlatformAdmin, PanelPermission
from panel.api.schema import FORBIDDEN, NOT_FOUND
from provisioning import selectors
from provisioning.models import InstanceUsage

USAGE_HOURS = 24


class UsageSampleSerializer(serializers.ModelSerializer):
    """One sample: CPU in percent of one CPU (200 = two CPUs busy), memory and disk in bytes.
    The disk fields are those of the last measurement (taken less often), dated by
    ``disk_sampled_at``; null when it failed, with the reason in ``disk_error``."""

    class Meta:
        model = InstanceUsage
        fields = [
            "sampled_at",
            "app_cpu_percent",
            "app_memory_bytes",
            "app_memory_limit_bytes",
            "db_cpu_percent",
            "db_memory_bytes",
            "db_memory_limit_bytes",
            "home_bytes",
            "db_disk_bytes",
            "disk_sampled_at",
            "disk_error",
        ]
        read_only_fields = fields


class UsageLimitsSerializer(serializers.Serializer):
    heap_max_mb = serializers.IntegerField()
    app_memory_limit_mb = serializers.IntegerField()
    db_memory_limit_mb = serializers.IntegerField()
    app_cpus = serializers.FloatField()
    db_cpus = serializers.FloatField()


class InstanceUsageSerializer(serializers.Serializer):
    """An instance's resource use over the last ``hours`` hours, oldest sample first, and
    what it is measured against (its heap and its containers' limits)."""

    instance = serializers.UUIDField()
    hours = serializers.IntegerField()
    limits = UsageLimitsSerializer()
    samples = UsageSampleSerializer(many=True)


class InstanceUsageView(APIView):
    """``GET /api/instances/<id>/usage/``."""

    permission_classes = [PanelPermission]

    @extend_schema(
        responses={200: InstanceUsageSerializer, 404: NOT_FOUND},
        operation_id="instances_usage_retrieve",
        description="The instance's resource-use samples of the last 24 hours (one a minute "
        "while it runs, taken with the health checks): CPU and memory of its app and "
        "database containers, disk use of its home and database directories.",
    )
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        access = access_for(request)
        instance = selectors.instance_get(access, pk)
        samples = selectors.instance_usage_samples(access, instance, hours=USAGE_HOURS)
        data = {
            "instance": instance.pk,
            "hours": USAGE_HOURS,
            "limits": selectors.instance_usage_limits(instance),
            "samples": samples,
        }
        return Response(InstanceUsageSerializer(data).data)


class HostUsageRowSerializer(serializers.Serializer):
    """One instance of the host with its newest sample (CPU and memory null when that sample
    is older than ten minutes: the instance is stopped or does not answer)."""

    instance = serializers.UUIDField(source="instance.pk")
    name = serializers.CharField(source="instance.name")
    tenant = serializers.UUIDField(source="instance.tenant_id")
    status = serializers.CharField(source="instance.status")
    sampled_at = serializers.DateTimeField(source="sample.sampled_at", allow_null=True)
    cpu_percent = serializers.FloatField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True)
    memory_limit_bytes = serializers.IntegerField(
        help_text="Its containers' memory limits together (what placement reserves)."
    )
    disk_bytes = serializers.IntegerField(allow_null=True)


class HostUsageSerializer(serializers.Serializer):
    """The host's instances' newest use together, against the host's capacity (shares in
    percent; null when the host's capacity is not known yet)."""

    host = serializers.UUIDField(source="host_id")
    cpu_percent = serializers.FloatField(help_text="Percent of one CPU, all instances.")
    cpus_used = serializers.FloatField()
    cpu_count = serializers.IntegerField(allow_null=True)
    cpu_share = serializers.FloatField(allow_null=True)
    memory_bytes = serializers.IntegerField()
    memory_committed_bytes = serializers.IntegerField(
        help_text="The instances' containers' memory limits together."
    )
    memory_capacity_bytes = serializers.IntegerField(allow_null=True)
    memory_share = serializers.FloatField(allow_null=True)
    memory_committed_share = serializers.FloatField(allow_null=True)
    disk_bytes = serializers.IntegerField()
    disk_total_bytes = serializers.IntegerField(allow_null=True)
    disk_free_bytes = serializers.IntegerField(allow_null=True)
    disk_share = serializers.FloatField(allow_null=True)
    instances = HostUsageRowSerializer(many=True, source="rows")


class HostUsageView(APIView):
    """``GET /api/hosts/<id>/usage/``."""

    permission_classes = [PanelPermission, IsPlatformAdmin]
    platform_admin_refusal = "Only platform administrators manage hosts."

    @extend_schema(
        responses={200: HostUsageSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
        operation_id="hosts_usage_retrieve",
        description="The newest resource-use sample of each instance on the host and their "
        "totals against the host's CPUs, memory and disk (platform admins only).",
    )
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        access = access_for(request)
        host = selectors.host_get(access, pk)
        totals = selectors.host_usage_totals(access, host)
        return Response(HostUsageSerializer({**totals, "host_id": host.pk}).data)
