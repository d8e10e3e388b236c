"""Shared pieces of the API viewsets."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response

from panel.access import Access, access_for
from panel.idempotency import idempotency_key_from


class ScopedQuerysetMixin:
    """``get_queryset`` returns only the caller's rows: the only way viewsets read rows.

    A viewset either defines ``scoped_queryset(access)`` (usually a selector call, so the API
    and the UI read through the same function) or relies on ``queryset.for_user(access)``.
    """

    def get_queryset(self):  # noqa: ANN201
        scoped = getattr(self, "scoped_queryset", None)
        if scoped is not None:
            return scoped(self.access)
        return super().get_queryset().for_user(self.access)  # type: ignore[misc]

    @property
    def access(self) -> Access:
        return access_for(self.request)  # type: ignore[attr-defined]


def idempotency_key(request: Any) -> str:
    """The client's ``Idempotency-Key`` header (trimmed to 100 characters), carrying the
    request's fingerprint (see :mod:`panel.idempotency`)."""
    return idempotency_key_from(request, request.headers.get("Idempotency-Key"))


def operation_accepted(operation: Any, request: Any) -> Response:
    """202 Accepted with the operation and a Location to poll."""
    from provisioning.api.serializers import OperationSerializer

    data = OperationSerializer(operation, context={"request": request}).data
    return Response(
        data, status=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/operations/{operation.id}/"},
    )
