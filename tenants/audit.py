"""The audit log: the writer behind ``panel.audit.audit_record``, and the log as people read
it (filters, a page, a CSV export and an API).

Tenant admins see their tenants' events, staff see all, viewers none (``audit_list``).
"""

from __future__ import annotations

import csv
from typing import Any

import django_filters
from django.core.paginator import Paginator
from django.db import models
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request

from panel.access import Access, access_for
from panel.api.mixins import ScopedQuerysetMixin
from panel.htmx import login_required
from tenants.models import AuditEvent, Tenant
from tenants.selectors import audit_list


def audit_event_record(
    *,
    actor: Access | None,
    action: str,
    target: models.Model | None,
    tenant: Tenant | None,
    changes: dict[str, Any],
    context: dict[str, Any],
) -> AuditEvent:
    """Store one audit event; called through ``panel.audit.audit_record`` (``changes`` arrive
    sanitized, ``context`` is the request's source and client IP, or ``{}`` in a task)."""
    user = actor.user if actor is not None and actor.is_authenticated else None
    token = actor.token if actor is not None else None
    if tenant is None and target is not None:
        tenant = target if isinstance(target, Tenant) else getattr(target, "tenant", None)
    label = user.get_username() if user is not None else "system"
    if token is not None:
        label = f"{label} (token {token.name})"
    return AuditEvent.objects.create(
        actor=user,
        actor_label=label,
        token=token,
        tenant=tenant,
        source=context.get("source", "task"),
        source_ip=context.get("ip"),
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:200] if target is not None else "",
        changes=changes,
    )


CSV_COLUMNS = [
    "time",
    "actor",
    "source",
    "source_ip",
    "tenant",
    "action",
    "target_type",
    "target_id",
    "target",
    "changes",
]


class AuditFilter(django_filters.FilterSet):
    """Filters shared by the page, the CSV export and the API."""

    action = django_filters.CharFilter(lookup_expr="startswith")
    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains")
    tenant = django_filters.UUIDFilter(field_name="tenant_id")
    target = django_filters.CharFilter(field_name="target_label", lookup_expr="icontains")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    source = django_filters.ChoiceFilter(
        choices=[(s, s) for s in ("ui", "api", "admin", "task", "system")]
    )

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "tenant", "target", "since", "until", "source"]


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP "CSV injection"): a token named "=HYPERLINK(...)" would run in an admin's spreadsheet.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _rows(queryset: Any) -> Any:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    yield writer.writerow(CSV_COLUMNS)
    for e in queryset.iterator(chunk_size=2000):
        row = [
            e.created_at.isoformat(),
            e.actor_label,
            e.source,
            e.source_ip or "",
            e.tenant.slug if e.tenant else "",
            e.action,
            e.target_type,
            e.target_id,
            e.target_label,
            e.changes,
        ]
        yield writer.writerow([csv_cell(cell) for cell in row])


def audit_csv_response(queryset: Any) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_rows(queryset), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
    return response


def _filtered(request: HttpRequest) -> AuditFilter:
    return AuditFilter(request.GET or None, queryset=audit_list(access_for(request)))


@login_required
def audit_page(request: HttpRequest) -> HttpResponse:
    """The audit log page (tenant admins: their tenants; staff: everything)."""
    access = access_for(request)
    if not (access.is_staff_role or access.admin_tenant_ids):
        from django.http import Http404

        raise Http404
    flt = _filtered(request)
    page = Paginator(flt.qs, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "tenants/audit_list.html",
        {"filter": flt, "page_obj": page, "events": page.object_list},
    )


@login_required
def audit_export(request: HttpRequest) -> HttpResponse:
    """The filtered audit log as CSV."""
    access = access_for(request)
    if not (access.is_staff_role or access.admin_tenant_ids):
        from django.http import Http404

        raise Http404
    return audit_csv_response(_filtered(request).qs)


class AuditEventSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "public_id",
            "created_at",
            "actor_label",
            "source",
            "source_ip",
            "tenant",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "changes",
        ]


class AuditEventViewSet(ScopedQuerysetMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The audit log: read-only and append-only. ``export/`` returns the filtered list as CSV."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditFilter
    ordering_fields = ["created_at"]
    search_fields = ["action", "actor_label", "target_label"]

    def scoped_queryset(self, access):  # noqa: ANN001, ANN201
        return audit_list(access)

    def get_queryset(self):  # noqa: ANN201
        return audit_list(access_for(self.request))

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, methods=["get"])
    def export(
        self, request: Request, *args: object, **kwargs: object
    ) -> HttpResponse | StreamingHttpResponse:
        """The filtered audit log as CSV."""
        return audit_csv_response(self.filter_queryset(self.get_queryset()))
