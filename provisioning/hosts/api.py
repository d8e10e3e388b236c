"""API of managed hosts (platform admins only): list, enrol, trust a key, provision, health.

Read shapes show the panel's public key and the host-key fingerprints, never the private key.
Everything that reaches a host answers 202 with the Operation to poll.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.validators import UniqueValidator

from panel.access import Access
from panel.api.mixins import ScopedQuerysetMixin, idempotency_key
from panel.api.permissions import IsPlatformAdmin, PanelPermission
from panel.api.schema import CONFLICT, FORBIDDEN, IDEMPOTENCY_KEY, NOT_FOUND, VALIDATION_ERROR
from panel.api.serializers import StrictFieldsMixin, request_body_refuse_fields
from provisioning import selectors
from provisioning import validators as v
from provisioning.api.operations import (
    ACCEPTED,
    action_schema,
    operation_accepted,
    operation_replay,
)
from provisioning.hosts import services
from provisioning.models import Host, OperationKind

UUID_RE = "[0-9a-fA-F-]{36}"


def _no_control_characters(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise serializers.ValidationError("Control characters (newlines, tabs, ...) are refused.")


class HostSerializer(serializers.ModelSerializer):
    """A managed host as platform admins see it (never its private key)."""

    backup_host = serializers.UUIDField(source="backup_host_id", read_only=True, allow_null=True)
    backup_host_name = serializers.CharField(
        source="backup_host.name", read_only=True, allow_null=True
    )
    # A plain string here: the same choice set in two components needs an ENUM_NAME_OVERRIDES
    # entry to avoid a schema warning; the enrol request carries the enum.
    role = serializers.CharField(read_only=True, help_text="app (runs instances) or backup.")
    disk_used_percent = serializers.FloatField(read_only=True, allow_null=True)
    disk_warning = serializers.BooleanField(read_only=True)
    ssh_public_key = serializers.CharField(
        read_only=True,
        help_text="The panel's key for this host: install it in "
        "~/.ssh/authorized_keys if no one-time password was given.",
    )

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "role",
            "address",
            "private_address",
            "ssh_port",
            "ssh_user",
            "data_root",
            "backup_host",
            "backup_host_name",
            "status",
            "status_reason",
            "host_key_fingerprint",
            "seen_host_key_fingerprint",
            "ssh_public_key",
            "facts",
            "cpu_count",
            "memory_mb",
            "disk_total_bytes",
            "disk_free_bytes",
            "disk_used_percent",
            "disk_warning",
            "last_seen_at",
            "last_health_at",
            "created_at",
        ]
        read_only_fields = fields


class HostEnrolSerializer(StrictFieldsMixin, serializers.Serializer):
    """What an admin gives to enrol a host. Every value is checked before it nears a command."""

    name = serializers.CharField(
        max_length=40,
        validators=[v.validate_slug, UniqueValidator(Host.objects.all())],
        help_text="Short name, e.g. app-fra-1 (lowercase letters, digits, hyphens).",
    )
    role = serializers.ChoiceField(choices=Host.Role.choices)
    address = serializers.CharField(
        max_length=253,
        validators=[v.validate_host_address],
        help_text="IP address or DNS name the panel connects to.",
    )
    ssh_port = serializers.IntegerField(min_value=1, max_value=65535, default=22)
    ssh_user = serializers.CharField(
        max_length=32, default="root", validators=[v.validate_ssh_user]
    )
    private_address = serializers.CharField(
        max_length=253,
        required=False,
        allow_blank=True,
        default="",
        validators=[v.validate_host_address],
        help_text="How other managed hosts reach this one (defaults to address).",
    )
    peer_ssh_port = serializers.IntegerField(
        min_value=1,
        max_value=65535,
        required=False,
        allow_null=True,
        default=None,
        help_text="SSH port at the private address, if it differs from ssh_port.",
    )
    data_root = serializers.CharField(
        max_length=200, default="/srv/atlassian", validators=[v.validate_abs_path]
    )
    backup_host = serializers.PrimaryKeyRelatedField(
        queryset=Host.objects.filter(role=Host.Role.BACKUP),
        required=False,
        allow_null=True,
        default=None,
        help_text="The backup host of an app host.",
    )
    host_key_fingerprint = serializers.CharField(
        max_length=60,
        required=False,
        allow_blank=True,
        default="",
        validators=[v.validate_fingerprint],
        help_text="The host's SHA256 key fingerprint, if known; otherwise confirm the one seen.",
    )
    root_password = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        validators=[_no_control_characters],
        help_text="One-time password to install the panel's key; used once, never stored.",
    )


class HostTrustSerializer(StrictFieldsMixin, serializers.Serializer):
    """The fingerprint an admin compared with the host's, and optionally a one-time password."""

    fingerprint = serializers.CharField(max_length=60, validators=[v.validate_fingerprint])
    root_password = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        validators=[_no_control_characters],
    )


class HostFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Host.Status.choices)
    role = django_filters.ChoiceFilter(choices=Host.Role.choices)

    class Meta:
        model = Host
        fields = ["status", "role"]


@extend_schema_view(
    list=extend_schema(description="Managed hosts (platform admins only)."),
    retrieve=extend_schema(responses={200: HostSerializer, 403: FORBIDDEN, 404: NOT_FOUND}),
    create=extend_schema(
        request=HostEnrolSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: ACCEPTED, 400: VALIDATION_ERROR, 403: FORBIDDEN, 409: CONFLICT},
        description="Enrol a host: the panel makes its key pair and starts first contact "
        "(host.connect), which fetches the host key without logging in. Give "
        "host_key_fingerprint to pin it at once, or confirm it with /trust/.",
    ),
)
class HostViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Managed hosts and their operations (enrol, trust, provision, health)."""

    permission_classes = [PanelPermission, IsPlatformAdmin]
    platform_admin_refusal = "Only platform administrators manage hosts."
    lookup_value_regex = UUID_RE
    filterset_class = HostFilter
    search_fields = ["name", "address"]
    ordering_fields = ["name", "role", "status", "created_at", "last_health_at"]
    serializer_class = HostSerializer

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.host_list(access)

    def get_serializer_class(self) -> type:
        return {"create": HostEnrolSerializer, "trust": HostTrustSerializer}.get(
            self.action, HostSerializer
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        replay = operation_replay(self.access, request, kind=OperationKind.HOST_CONNECT)
        if replay is not None:
            return replay
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        operation = services.host_enrol(
            actor=self.access,
            idempotency_key=idempotency_key(request),
            **serializer.validated_data,
        )
        return operation_accepted(operation, request)

    @action_schema(
        request=HostTrustSerializer,
        description="Confirm the host key seen on first contact (pin it), then log "
        "in; with root_password the panel installs its key.",
    )
    @action(detail=True, methods=["post"])
    def trust(self, request: Request, pk: str | None = None) -> Response:
        host = self.get_object()
        replay = operation_replay(self.access, request, kind=OperationKind.HOST_CONNECT, host=host)
        if replay is not None:
            return replay
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        operation = services.host_trust_key(
            actor=self.access,
            host=host,
            idempotency_key=idempotency_key(request),
            **serializer.validated_data,
        )
        return operation_accepted(operation, request)

    @action_schema(
        description="Provision the host for its role (idempotent); 409 while "
        "another operation runs on it."
    )
    @action(detail=True, methods=["post"])
    def provision(self, request: Request, pk: str | None = None) -> Response:
        host = self.get_object()
        request_body_refuse_fields(request)
        replay = operation_replay(
            self.access, request, kind=OperationKind.HOST_PROVISION, host=host
        )
        if replay is not None:
            return replay
        operation = services.host_provision(
            actor=self.access, host=host, idempotency_key=idempotency_key(request)
        )
        return operation_accepted(operation, request)

    @action_schema(description="Check the host now: reachable, Docker answers, disk usage.")
    @action(detail=True, methods=["post"])
    def health(self, request: Request, pk: str | None = None) -> Response:
        host = self.get_object()
        request_body_refuse_fields(request)
        replay = operation_replay(self.access, request, kind=OperationKind.HOST_HEALTH, host=host)
        if replay is not None:
            return replay
        operation = services.host_health_check(
            actor=self.access, host=host, idempotency_key=idempotency_key(request)
        )
        return operation_accepted(operation, request)
