"""Turn domain errors into clear API responses (400 with field messages, 409 on conflicts)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from panel.operations import OperationConflict


def exception_handler(exc, context):  # noqa: ANN001, ANN201 - DRF's signature
    if isinstance(exc, OperationConflict):
        return Response(
            {"detail": str(exc), "operation": str(exc.running.id),
             "operation_url": f"/api/operations/{exc.running.id}/"},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            data = {k: [m for e in v for m in e.messages] for k, v in exc.error_dict.items()}
        else:
            data = {"detail": " ".join(exc.messages)}
        code = status.HTTP_409_CONFLICT if type(exc).__name__ == "InvalidTransition" else 400
        return Response(data, status=code)
    return drf_exception_handler(exc, context)
