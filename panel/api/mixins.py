"""Shared pieces of the API viewsets."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response

from panel.access import Access, access_for
from panel.idempotency import idempotency_key_from, operation_replayed


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


def operation_accepted(operation: Any, request: Any, *, serializer: type) -> Response:
    """202 Accepted with the operation (in ``serializer``'s shape) and a Location to poll.

    The app that owns the Operation's API shape binds ``serializer`` (panel knows no domain
    serializer); the views call that binding.
    """
    data = serializer(operation, context={"request": request}).data
    return Response(
        data,
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/operations/{operation.id}/"},
    )


def operation_replay(
    access: Access,
    request: Any,
    *,
    kind: str,
    serializer: type,
    instance: Any = None,
    host: Any = None,
) -> Response | None:
    """The one idempotent replay of every API action: the 202 of an earlier identical request
    with this ``Idempotency-Key``, or None for a new key.

    A key reused for another request (another kind, target or body) raises
    :class:`~panel.idempotency.IdempotencyConflict`, which the exception handler answers 409.
    Called before the body is validated and before the service's state checks, which may no
    longer hold once the first request's operation has changed the target.
    """
    existing = operation_replayed(
        actor=access, key=idempotency_key(request), kind=kind, instance=instance, host=host
    )
    if existing is None:
        return None
    return operation_accepted(existing, request, serializer=serializer)
