"""Turn domain errors into clear API responses (400 with field messages, 409 on conflicts)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from panel.idempotency import IdempotencyConflict
from panel.operations import OperationConflict

log = logging.getLogger(__name__)


class Conflict(APIException):
    """The request is valid but the target's current state does not allow it (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This conflicts with the current state of the resource."
    default_code = "conflict"


def exception_handler(exc, context):  # noqa: ANN001, ANN201 - DRF's signature
    if isinstance(exc, OperationConflict):
        return Response(
            {
                "detail": str(exc),
                "operation": str(exc.running.id),
                "operation_url": f"/api/operations/{exc.running.id}/",
            },
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            data = {
                api_settings.NON_FIELD_ERRORS_KEY if k == NON_FIELD_ERRORS else k: [
                    m for e in v for m in e.messages
                ]
                for k, v in exc.error_dict.items()
            }
        else:
            data = {"detail": " ".join(exc.messages)}
        conflict = type(exc).__name__ == "InvalidTransition" or isinstance(exc, IdempotencyConflict)
        code = status.HTTP_409_CONFLICT if conflict else 400
        return Response(data, status=code)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {
                "detail": f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                "bytes."
            },
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, RecursionError) and "decoding a JSON" in str(exc):
        # json raises RecursionError (not ValueError, which DRF's parser handles) on bodies
        # nested thousands deep: bad input, not a server error.
        return Response(
            {"detail": "JSON parse error - the body is nested too deeply."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, IntegrityError):
        # Validation ran before the write, so this is a concurrent request that won a race
        # (e.g. two creates of the same name): a conflict, not a server error.
        log.warning("integrity error answered as 409: %s", exc)
        return Response(
            {"detail": "This conflicts with a concurrent change; reload and try again."},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DrfValidationError) and isinstance(exc.detail, list):
        # Raised outside a serializer (e.g. DRF's search filter on a NUL byte) the messages
        # come as a bare list; answer the documented object shape instead.
        return Response(
            {"detail": " ".join(str(message) for message in exc.detail)},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return drf_exception_handler(exc, context)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 handler: JSON under /api/ (a path no route matches, such as a malformed id,
    must still answer in the API's documented shape), the normal page everywhere else."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
