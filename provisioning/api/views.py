"""API of instances, licenses and operations.

Thin: rows come from the ``for_user``-scoped selectors, so another tenant's object is simply
not found (404); changes go through the services (which audit), and anything that starts remote
work answers 202 with the Operation to poll.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from django import forms
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from panel.access import Access, access_for
from panel.api.exceptions import Conflict
from panel.api.mixins import ScopedQuerysetMixin, idempotency_key
from panel.api.permissions import PanelPermission, TenantAdminForChanges
from panel.api.schema import CONFLICT, FORBIDDEN, IDEMPOTENCY_KEY, NOT_FOUND, VALIDATION_ERROR
from panel.api.serializers import request_body_refuse_fields
from panel.operations import operation_cancel
from provisioning import selectors, services
from provisioning.api.operations import (
    ACCEPTED,
    action_schema,
    operation_accepted,
    operation_replay,
)
from provisioning.api.serializers import (
    INSTANCE_COLUMNS,
    LICENSE_SUMMARY_COLUMNS,
    InstanceCreateSerializer,
    InstanceDeleteSerializer,
    InstanceResizeSerializer,
    InstanceSerializer,
    InstanceUpgradeSerializer,
    LicenseCreateSerializer,
    LicenseSerializer,
    OperationSerializer,
    OperationStepsPageSerializer,
    OperationStepsQuerySerializer,
    instance_list_columns,
    instance_rows,
)
from provisioning.logs import (
    LOG_LINES_MAX,
    LOG_SERVICES,
    InstanceLogs,
    LogsUnavailable,
    instance_logs,
    logs_params,
)
from provisioning.models import (
    AtlassianInstance,
    InstanceStatus,
    License,
    Operation,
    OperationKind,
    OperationStatus,
)
from provisioning.products import Product

STEPS_PER_POLL = 500


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


# --- instances ------------------------------------------------------------------------------


class InstanceFilter(django_filters.FilterSet):
    tenant = django_filters.UUIDFilter(field_name="tenant_id")
    status = django_filters.ChoiceFilter(choices=InstanceStatus.choices)
    product = django_filters.ChoiceFilter(choices=Product.choices)

    class Meta:
        model = AtlassianInstance
        fields = ["tenant", "status", "product"]


class InstanceLogsSerializer(serializers.Serializer):
    """The newest lines of one container's log (``GET /api/instances/<id>/logs/``)."""

    service = serializers.CharField()
    lines = serializers.IntegerField()
    text = serializers.CharField()
    truncated = serializers.BooleanField()
    fetched_at = serializers.DateTimeField()
    # False (with ``error`` saying why, ``text`` empty) when they cannot be read now: the
    # instance is on no host yet, or its host does not answer.
    available = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)


@extend_schema_view(
    list=extend_schema(
        description="Instances the caller sees (deleted ones only with ?status=deleted)."
    ),
    retrieve=extend_schema(responses={200: InstanceSerializer, 404: NOT_FOUND}),
    create=extend_schema(
        request=InstanceCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: ACCEPTED, 400: VALIDATION_ERROR, 403: FORBIDDEN, 409: CONFLICT},
        description="Record a new instance and start its rollout: 202 with the Operation.",
    ),
)
class InstanceViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Atlassian instances of the caller's tenants, and their lifecycle actions."""

    permission_classes = [PanelPermission, TenantAdminForChanges]
    lookup_value_converter = "uuid"
    filterset_class = InstanceFilter
    search_fields = ["name", "hostname"]
    ordering_fields = ["name", "hostname", "product", "version", "status", "created_at"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        include_deleted = (
            self.action != "list" or self.request.query_params.get("status") == "deleted"
        )
        qs = selectors.instance_list(access, include_deleted=include_deleted)
        if self.action == "list":
            return qs  # read as values() rows: see list()
        if self.action == "retrieve":
            # Only what the answer shows (the actions get whole rows for their services).
            return qs.only(*INSTANCE_COLUMNS).prefetch_related(
                Prefetch("licenses", queryset=License.objects.only(*LICENSE_SUMMARY_COLUMNS))
            )
        return qs.prefetch_related("licenses")

    def get_serializer_class(self) -> type:
        return {
            "create": InstanceCreateSerializer,
            "upgrade": InstanceUpgradeSerializer,
            "resize": InstanceResizeSerializer,
            "delete_instance": InstanceDeleteSerializer,
        }.get(self.action, InstanceSerializer)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        replay = operation_replay(self.access, request, kind=OperationKind.INSTANCE_CREATE)
        if replay is not None:
            return replay
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        operation = services.instance_create(
            actor=self.access,
            idempotency_key=idempotency_key(request),
            **serializer.validated_data,
        )
        return operation_accepted(operation, request)

    def _act(
        self,
        request: Request,
        kind: str,
        service: Callable[..., Operation],
        *,
        with_body: bool = False,
    ) -> Response:
        """Replay a repeated request, validate the body (its fields are the service's keyword
        arguments), call the action's service."""
        instance = self.get_object()  # 404 if not visible, 403 if visible but not administered
        replay = operation_replay(self.access, request, kind=kind, instance=instance)
        if replay is not None:
            return replay
        arguments: dict[str, Any] = {}
        if not with_body:
            request_body_refuse_fields(request)  # a field sent to an action without one: 400
        else:
            serializer = self.get_serializer(
                data=request.data,
                context={**self.get_serializer_context(), "instance": instance},
            )
            serializer.is_valid(raise_exception=True)
            arguments = dict(serializer.validated_data)
        operation = service(
            actor=self.access,
            instance=instance,
            idempotency_key=idempotency_key(request),
            **arguments,
        )
        return operation_accepted(operation, request)

    @action_schema(description="Start a stopped or failed instance.")
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, OperationKind.INSTANCE_START, services.instance_start)

    @action_schema(description="Stop the instance gracefully.")
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, OperationKind.INSTANCE_STOP, services.instance_stop)

    @action_schema(description="Restart the instance.")
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, OperationKind.INSTANCE_RESTART, services.instance_restart)

    @action_schema(
        request=InstanceUpgradeSerializer,
        description="Upgrade to another offered version (rolls back on failure).",
    )
    @action(detail=True, methods=["post"])
    def upgrade(self, request: Request, pk: str | None = None) -> Response:
        return self._act(
            request, OperationKind.INSTANCE_UPGRADE, services.instance_upgrade, with_body=True
        )

    @action_schema(request=InstanceResizeSerializer, description="Change the JVM heap.")
    @action(detail=True, methods=["post"])
    def resize(self, request: Request, pk: str | None = None) -> Response:
        return self._act(
            request, OperationKind.INSTANCE_RESIZE, services.instance_resize, with_body=True
        )

    @action_schema(
        request=InstanceDeleteSerializer,
        operation_id="instances_delete",
        description="Delete the instance (data is kept for the retention period). "
        "`confirm` must be the instance's name.",
    )
    @action(detail=True, methods=["post"], url_path="delete", url_name="delete")
    def delete_instance(self, request: Request, pk: str | None = None) -> Response:
        return self._act(
            request, OperationKind.INSTANCE_DELETE, services.instance_delete, with_body=True
        )

    @action_schema(description="Roll a failed instance out again.")
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, OperationKind.INSTANCE_CREATE, services.instance_retry)

    @action_schema(
        description="Staff: turn a copy's outgoing and incoming mail back on when it goes live "
        "(a rollout without the mail-off JVM flags; `outbound_disabled` clears when it runs)."
    )
    @action(detail=True, methods=["post"], url_path="outbound-enable", url_name="outbound-enable")
    def outbound_enable(self, request: Request, pk: str | None = None) -> Response:
        if not self.access.is_staff_role:
            raise PermissionDenied("Only support staff turn a copy's mail back on.")
        return self._act(
            request, OperationKind.INSTANCE_OUTBOUND_ENABLE, services.instance_outbound_enable
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("service", str, enum=list(LOG_SERVICES), description="app or db"),
            OpenApiParameter("lines", int, description=f"1 to {LOG_LINES_MAX} (200)"),
        ],
        responses={200: InstanceLogsSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
        description="The newest lines of the instance's app or database container log "
        "(sanitized, at most 256 KiB); `available` false, with the reason in `error`, when "
        "they cannot be read now (no host yet, or the host does not answer).",
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, pk: str | None = None) -> Response:
        instance = self.get_object()
        params = logs_params(request.query_params)
        if isinstance(params, str):
            field, _, message = params.partition(": ")
            return Response({field: [message]}, status=status.HTTP_400_BAD_REQUEST)
        try:
            logs = instance_logs(instance, service=params[0], lines=params[1])
        except LogsUnavailable as exc:
            logs = InstanceLogs(
                service=params[0],
                lines=params[1],
                text="",
                truncated=False,
                fetched_at=timezone.now(),
                available=False,
                error=str(exc),
            )
        return Response(InstanceLogsSerializer(logs).data)

    # Last in the class: the name ``list`` would hide the builtin from the class body above.
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The page as InstanceSerializer answers it, read as plain rows (no model per row)."""
        rows = self.filter_queryset(self.get_queryset()).values(*instance_list_columns())
        page = self.paginate_queryset(rows)
        data = instance_rows(rows if page is None else page, self.get_serializer_context())
        return Response(data) if page is None else self.get_paginated_response(data)


# --- licenses -------------------------------------------------------------------------------


class LicenseFilter(django_filters.FilterSet):
    instance = django_filters.UUIDFilter(field_name="instance_id")
    expiring_within_days = IntegerFilter(
        method="filter_expiring",
        min_value=0,
        max_value=3650,
        label="License or maintenance expiry within this many days (past ones included).",
    )

    class Meta:
        model = License
        fields = ["instance", "expiring_within_days"]

    def filter_expiring(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        expiring = selectors.licenses_expiring(access_for(self.request), within_days=value)
        return queryset.filter(pk__in=expiring.values("pk"))


@extend_schema_view(
    retrieve=extend_schema(responses={200: LicenseSerializer, 404: NOT_FOUND}),
    create=extend_schema(
        request=LicenseCreateSerializer,
        responses={201: LicenseSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN},
        description="Attach a license key to an instance you administer. The key is stored "
        "encrypted and never returned; its facts are decoded when possible.",
    ),
)
class LicenseViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Licenses of the caller's instances, with their decoded facts and expiry."""

    permission_classes = [PanelPermission, TenantAdminForChanges]
    lookup_value_converter = "uuid"
    filterset_class = LicenseFilter
    search_fields = ["sen", "organisation", "instance__name"]
    ordering_fields = ["expiry_date", "maintenance_expiry_date", "created_at"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.license_list(access)

    def get_serializer_class(self) -> type:
        return LicenseCreateSerializer if self.action == "create" else LicenseSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        facts = dict(serializer.validated_data)
        instance, key = facts.pop("instance"), facts.pop("key")
        lic = services.license_add(actor=self.access, instance=instance, key=key, facts=facts)
        data = LicenseSerializer(lic, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED)


# --- operations -----------------------------------------------------------------------------


class OperationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OperationStatus.choices)
    kind = django_filters.CharFilter(max_length=40)
    instance = django_filters.UUIDFilter(field_name="instance_id")
    tenant = django_filters.UUIDFilter(field_name="tenant_id")

    class Meta:
        model = Operation
        fields = ["status", "kind", "instance", "tenant"]


@extend_schema_view(
    retrieve=extend_schema(
        responses={200: OperationSerializer, 404: NOT_FOUND},
        description="One operation with its full step log.",
    ),
)
class OperationViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Operations of the caller's tenants (staff: all): progress, step log, cancel."""

    serializer_class = OperationSerializer
    permission_classes = [PanelPermission, TenantAdminForChanges]
    lookup_value_converter = "uuid"
    filterset_class = OperationFilter
    ordering_fields = ["created_at", "started_at", "finished_at", "status", "kind"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.operation_list(access)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "include_steps": self.action == "retrieve"}

    @extend_schema(
        parameters=[OperationStepsQuerySerializer],
        responses={200: OperationStepsPageSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["get"])
    def steps(self, request: Request, pk: str | None = None) -> Response:
        """Steps logged after ``?after=<step id>``, for incremental polling of a live log."""
        operation = self.get_object()
        query = OperationStepsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]
        steps = list(selectors.operation_steps(operation, after_id=after)[:STEPS_PER_POLL])
        return Response(
            OperationStepsPageSerializer(
                {
                    "operation_status": operation.status,
                    "is_terminal": operation.is_terminal,
                    "progress_percent": operation.progress_percent,
                    "next_after": steps[-1].id if steps else after,
                    "steps": steps,
                }
            ).data
        )

    @extend_schema(
        request=None,
        responses={200: OperationSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a pending operation at once, or ask a running one to stop at its next step."""
        operation = self.get_object()
        request_body_refuse_fields(request)
        if operation.is_terminal:
            raise Conflict(f"This operation already ended ({operation.status}).")
        operation = operation_cancel(operation, actor=self.access)
        return Response(self.get_serializer(operation).data)
