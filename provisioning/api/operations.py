"""The API's operation-start helpers, bound to the Operation's API shape.

``panel.api`` holds the mechanism (the replay rule, the 202 answer, the action schema) and
knows no domain serializer; the Operation's serializer lives here, so every app's API actions
(instances, hosts, backups, certificates) import these bindings.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response

from panel.access import Access
from panel.api import mixins, schema
from provisioning.api.serializers import OperationSerializer

ACCEPTED = schema.accepted_response(OperationSerializer)


def action_schema(request: Any = None, **extra: Any) -> Any:
    """The OpenAPI decoration of an action that answers 202 with an operation."""
    return schema.action_schema(accepted=ACCEPTED, request=request, **extra)


def operation_accepted(operation: Any, request: Any) -> Response:
    """202 Accepted with the operation and a Location to poll."""
    return mixins.operation_accepted(operation, request, serializer=OperationSerializer)


def operation_replay(
    access: Access, request: Any, *, kind: str, instance: Any = None, host: Any = None
) -> Response | None:
    """The 202 of an earlier identical request with the same Idempotency-Key, or None; a key
    reused for another request answers 409 (see :func:`panel.api.mixins.operation_replay`)."""
    return mixins.operation_replay(
        access,
        request,
        kind=kind,
        serializer=OperationSerializer,
        instance=instance,
        host=host,
    )
