"""API of backups: points (list, start one, restore one), policies, restores, drills, restore
requests, the DR figures and host evacuations.

Thin: rows come from the ``for_user``-scoped selectors (another tenant's object is a 404);
changes go through :mod:`backups.services`; remote work answers 202 with the Operation.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backups import selectors, services
from backups.api.serializers import (
    BACKUP_COLUMNS,
    BackupPolicySerializer,
    BackupSerializer,
    BackupStartSerializer,
    DrillStartSerializer,
    EvacuationStateSerializer,
    RecoveryStateSerializer,
    RestoreDrillSerializer,
    RestoreRequestHandleSerializer,
    RestoreRequestSerializer,
    RestoreSerializer,
    RestoreStartSerializer,
    RestoreToTimeSerializer,
    TierFiguresSerializer,
    backup_shape,
)
from backups.evacuate import host_evacuate_start
from backups.models import (
    Backup,
    BackupOperationKind,
    BackupPolicy,
    RestoreMode,
    RestoreRequest,
)
from panel.access import Access
from panel.api.mixins import ScopedQuerysetMixin, idempotency_key
from panel.api.pagination import KnownCountPagination
from panel.api.permissions import IsStaffRole, PanelPermission
from panel.api.schema import CONFLICT, FORBIDDEN, IDEMPOTENCY_KEY, NOT_FOUND, VALIDATION_ERROR
from panel.api.serializers import request_body_refuse_fields
from provisioning.api.operations import ACCEPTED, operation_accepted, operation_replay
from provisioning.hosts.fence import fenced_copies_purge_start
from provisioning.selectors import instance_list

STARTED = {202: ACCEPTED, 400: VALIDATION_ERROR, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT}


def _forbid(exc: DjangoPermissionDenied) -> exceptions.PermissionDenied:
    return exceptions.PermissionDenied(str(exc) or None)


class BackupFilter(django_filters.FilterSet):
    instance = django_filters.UUIDFilter(field_name="instance_id")
    status = django_filters.CharFilter(help_text="succeeded = the retained points")

    class Meta:
        model = Backup
        fields = ["instance", "status"]


@extend_schema_view(
    list=extend_schema(
        description="Backup points and attempts the caller sees, newest first; "
        "?status=succeeded lists the retained points."
    ),
    retrieve=extend_schema(responses={200: BackupSerializer, 404: NOT_FOUND}),
)
class BackupViewSet(
    ScopedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The backup catalogue; start an extra backup; restore a point (staff)."""

    serializer_class = BackupSerializer
    permission_classes = [PanelPermission]
    pagination_class = KnownCountPagination
    lookup_value_converter = "uuid"
    filterset_class = BackupFilter
    ordering_fields = ["taken_at", "logical_bytes"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        qs = selectors.backup_list(access)
        if self.action == "retrieve":
            # Only what the answer shows: no instance credentials decrypted, no tenant read.
            return (
                qs.select_related(None)
                .select_related("instance", "backup_host")
                .only(*BACKUP_COLUMNS)
            )
        return qs  # the list reads values() rows: see list()

    def rows_known(self) -> int | None:
        """The unfiltered list's length from the materialised per-instance counts (a COUNT
        over 200,000 points is most of the staff list's time); None when filtered."""
        if set(self.request.query_params) & set(BackupFilter.base_filters):
            return None
        return selectors.backup_count(self.access)

    def get_serializer_class(self) -> type:
        return {"create": BackupStartSerializer, "restore": RestoreStartSerializer}.get(
            self.action, BackupSerializer
        )

    @extend_schema(
        request=BackupStartSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses=STARTED,
        description="Start an extra backup of an instance now (tenant admins).",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        replay = operation_replay(self.access, request, kind=BackupOperationKind.BACKUP_CREATE)
        if replay is not None:
            return replay
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            operation = services.backup_start(
                actor=self.access,
                instance=serializer.validated_data["instance"],
                mode=serializer.validated_data.get("mode") or None,
                idempotency_key=idempotency_key(request),
            )
        except DjangoPermissionDenied as exc:
            raise _forbid(exc) from exc
        return operation_accepted(operation, request)

    @extend_schema(
        request=RestoreStartSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses=STARTED,
        description="Restore this point (support staff and platform admins): "
        "`in_place` with `confirm` = the instance's name, or "
        "`new_instance` with the copy's `name`, `hostname` and optionally the app `host` "
        "(by name) it goes to.",
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        backup = self.get_object()  # 404 for what the caller does not see
        if not self.access.is_staff_role:
            raise exceptions.PermissionDenied("Only support staff restore backups.")
        replay = operation_replay(self.access, request, kind=BackupOperationKind.BACKUP_RESTORE)
        if replay is not None:
            return replay
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            operation = services.restore_start(
                actor=self.access,
                backup=backup,
                mode=data["mode"],
                confirm_name=data["confirm"],
                name=data["name"],
                hostname=data["hostname"],
                host=data["host"],
                skip_safety=data["skip_safety"],
                idempotency_key=idempotency_key(request),
            )
        except DjangoPermissionDenied as exc:
            raise _forbid(exc) from exc
        return operation_accepted(operation, request)

    # Last in the class: the name ``list`` would hide the builtin from the class body above.
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The page as BackupSerializer answers it, read as plain rows: 200,000 points are
        listed without a model per row, nor their instances' credentials or tenants."""
        shape = backup_shape()
        rows = self.filter_queryset(self.get_queryset()).values(*shape.columns)
        page = self.paginate_queryset(rows)
        data = [shape.represent(row) for row in (rows if page is None else page)]
        return Response(data) if page is None else self.get_paginated_response(data)


@extend_schema_view(
    retrieve=extend_schema(responses={200: BackupPolicySerializer, 404: NOT_FOUND}),
    partial_update=extend_schema(
        responses={
            200: BackupPolicySerializer,
            400: VALIDATION_ERROR,
            403: FORBIDDEN,
            404: NOT_FOUND,
        }
    ),
)
class BackupPolicyViewSet(
    ScopedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Backup policies: everyone who sees an instance reads its policy; staff change it."""

    serializer_class = BackupPolicySerializer
    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"
    filterset_fields = ["instance"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.policy_list(access)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        policy: BackupPolicy = self.get_object()  # 404 for what the caller does not see
        if not self.access.is_staff_role:
            raise exceptions.PermissionDenied("Only support staff change backup policies.")
        serializer = self.get_serializer(policy, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            services.policy_update(actor=self.access, policy=policy, **serializer.validated_data)
        except DjangoPermissionDenied as exc:
            raise _forbid(exc) from exc
        return Response(self.get_serializer(policy).data)


class RestoreViewSet(
    ScopedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Restores and their outcome (point, achieved RTO, health)."""

    serializer_class = RestoreSerializer
    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"
    filterset_fields = ["instance"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.restore_list(access)


@extend_schema_view(
    create=extend_schema(
        request=DrillStartSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses=STARTED,
        description="Start a restore drill (staff): the latest point of the "
        "instance (or of the least recently drilled one) is "
        "restored into a scratch instance, timed and removed.",
    ),
)
class RestoreDrillViewSet(
    ScopedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Restore drills (staff only; others see none)."""

    serializer_class = RestoreDrillSerializer
    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"
    filterset_fields = ["instance", "tier"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        qs = selectors.drill_list(access)
        return qs if access.is_staff_role else qs.none()

    def get_serializer_class(self) -> type:
        return DrillStartSerializer if self.action == "create" else RestoreDrillSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not self.access.is_staff_role:
            raise exceptions.PermissionDenied("Only support staff start drills.")
        replay = operation_replay(self.access, request, kind=BackupOperationKind.BACKUP_DRILL)
        if replay is not None:
            return replay
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        operation = services.drill_start(
            actor=self.access,
            instance=serializer.validated_data.get("instance"),
            idempotency_key=idempotency_key(request),
        )
        return operation_accepted(operation, request)


class RestoreRequestViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Customers ask support to restore a point; support marks requests done or declined."""

    serializer_class = RestoreRequestSerializer
    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"
    filterset_fields = ["instance", "status"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.restore_request_list(access)

    def get_serializer_class(self) -> type:
        return (
            RestoreRequestHandleSerializer
            if self.action == "handle"
            else (RestoreRequestSerializer)
        )

    def perform_create(self, serializer: RestoreRequestSerializer) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = services.restore_request_create(
                actor=self.access,
                instance=data["instance"],
                backup=data.get("backup"),
                note=data.get("note", ""),
            )
        except DjangoPermissionDenied as exc:
            raise _forbid(exc) from exc

    @extend_schema(
        request=RestoreRequestHandleSerializer,
        responses={200: RestoreRequestSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    @action(detail=True, methods=["post"])
    def handle(self, request: Request, pk: str | None = None) -> Response:
        item: RestoreRequest = self.get_object()
        if not self.access.is_staff_role:
            raise exceptions.PermissionDenied("Only support staff handle restore requests.")
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = services.restore_request_handle(
            actor=self.access, request=item, **serializer.validated_data
        )
        return Response(RestoreRequestSerializer(item, context=self.get_serializer_context()).data)


class DrDashboardView(APIView):
    """DR figures per service tier (staff): instances within RPO, drills run, worst RTO."""

    permission_classes = [PanelPermission, IsStaffRole]

    @extend_schema(responses={200: TierFiguresSerializer(many=True), 403: FORBIDDEN})
    def get(self, request: Request) -> Response:
        from panel.access import access_for

        rows = selectors.dr_dashboard(access_for(request))
        return Response(TierFiguresSerializer(rows, many=True).data, status=status.HTTP_200_OK)


class RecoveryViewSet(ScopedQuerysetMixin, viewsets.GenericViewSet):
    """Point-in-time recovery per instance (``/api/point-in-time/<instance id>/``): everyone
    who sees the instance reads its window; staff turn archiving on, take base backups and
    restore to a second."""

    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"
    serializer_class = RecoveryStateSerializer

    def scoped_queryset(self, access: Access) -> QuerySet:
        return instance_list(access)

    def get_serializer_class(self) -> type:
        return RestoreToTimeSerializer if self.action == "restore" else RecoveryStateSerializer

    @extend_schema(responses={200: RecoveryStateSerializer, 404: NOT_FOUND})
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        instance = self.get_object()
        return Response(RecoveryStateSerializer(selectors.recovery_state(instance)).data)

    def _staff(self) -> None:
        if not self.access.is_staff_role:
            raise exceptions.PermissionDenied("Only support staff manage point-in-time recovery.")

    @extend_schema(request=None, responses=STARTED)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str | None = None) -> Response:
        """Turn on continuous WAL archiving (the database restarts once) and take the first
        base backup."""
        instance = self.get_object()
        self._staff()
        request_body_refuse_fields(request)  # a field sent to an action without one: 400
        return operation_accepted(
            services.wal_enable_start(actor=self.access, instance=instance), request
        )

    @extend_schema(request=None, responses=STARTED)
    @action(detail=True, methods=["post"], url_path="base-backup")
    def base_backup(self, request: Request, pk: str | None = None) -> Response:
        """Take a base backup now."""
        instance = self.get_object()
        self._staff()
        request_body_refuse_fields(request)
        return operation_accepted(
            services.wal_base_start(actor=self.access, instance=instance), request
        )

    @extend_schema(request=RestoreToTimeSerializer, parameters=[IDEMPOTENCY_KEY], responses=STARTED)
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        """Restore the instance to ``target_time``: in place, or into a new instance."""
        instance = self.get_object()
        self._staff()
        serializer = RestoreToTimeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # A copy is a point restore into a new instance (with the database replayed).
        kind = (
            BackupOperationKind.BACKUP_RESTORE
            if data["mode"] == RestoreMode.NEW_INSTANCE
            else BackupOperationKind.RESTORE_TIME
        )
        replay = operation_replay(self.access, request, kind=kind)
        if replay is not None:
            return replay
        operation = services.restore_to_time_start(
            actor=self.access,
            instance=instance,
            target_time=data["target_time"],
            confirm_name=data["confirm"],
            idempotency_key=idempotency_key(request),
            mode=data["mode"],
            name=data["name"],
            hostname=data["hostname"],
            host=data["host"],
        )
        return operation_accepted(operation, request)


class EvacuationViewSet(ScopedQuerysetMixin, viewsets.GenericViewSet):
    """Evacuation of a failed app host (``/api/evacuations/<host id>/``), staff only: the plan,
    the last evacuation and the copies the host keeps; start an evacuation (support and
    platform admins), purge the fenced copies (platform admins). Customers see no host: 404."""

    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"
    serializer_class = EvacuationStateSerializer

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.evacuation_hosts(access)

    @extend_schema(responses={200: EvacuationStateSerializer, 404: NOT_FOUND})
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        host = self.get_object()
        return Response(EvacuationStateSerializer(selectors.evacuation_state(host)).data)

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses=STARTED,
        description="Evacuate this host (down: unreachable or in error): every instance the "
        "plan places is restored from its newest point onto its target, one child operation "
        "per instance. A host that answers, or with nothing placeable, is a 400 on `host`.",
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        host = self.get_object()  # 404 for customers and for hosts that are not app hosts
        replay = operation_replay(
            self.access, request, kind=BackupOperationKind.HOST_EVACUATE, host=host
        )
        if replay is not None:
            return replay
        request_body_refuse_fields(request)
        try:
            operation = host_evacuate_start(
                actor=self.access, host=host, idempotency_key=idempotency_key(request)
            )
        except DjangoPermissionDenied as exc:
            raise _forbid(exc) from exc
        return operation_accepted(operation, request)

    @extend_schema(
        request=None,
        responses=STARTED,
        description="Remove the fenced (stopped, kept aside) old deployments of evacuated "
        "instances on this host (platform admins).",
    )
    @action(detail=True, methods=["post"], url_path="purge-fenced")
    def purge_fenced(self, request: Request, pk: str | None = None) -> Response:
        host = self.get_object()
        request_body_refuse_fields(request)
        try:
            operation = fenced_copies_purge_start(actor=self.access, host=host)
        except DjangoPermissionDenied as exc:
            raise _forbid(exc) from exc
        return operation_accepted(operation, request)
