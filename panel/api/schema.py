"""Response shapes shared by the API's OpenAPI annotations (errors, conflicts)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """A refusal with one readable reason (401, 403, 404, 405)."""

    detail = serializers.CharField()


class ConflictSerializer(serializers.Serializer):
    """409: another operation holds the target, or its state forbids the request."""

    detail = serializers.CharField()
    operation = serializers.UUIDField(required=False, help_text="The running operation, if any.")
    operation_url = serializers.CharField(required=False)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Repeat a request safely: the same key returns the operation the first "
                "request started instead of starting another (at most 100 characters).",
)

VALIDATION_ERROR = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Invalid input: each field name maps to a list of messages."
)
FORBIDDEN = OpenApiResponse(ErrorSerializer, description="Read-only token, or role too low.")
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such object visible to the caller.")
CONFLICT = OpenApiResponse(ConflictSerializer, description="Target busy or state forbids it.")
