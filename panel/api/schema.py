"""Response shapes shared by the API's OpenAPI annotations (errors, conflicts)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
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
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Repeat a request safely: the same key returns the operation the first "
    "request started instead of starting another (at most 100 characters).",
)

VALIDATION_ERROR = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Invalid input: each field name maps to a list of messages."
)
FORBIDDEN = OpenApiResponse(ErrorSerializer, description="Read-only token, or role too low.")
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such object visible to the caller.")
CONFLICT = OpenApiResponse(ConflictSerializer, description="Target busy or state forbids it.")


def accepted_response(serializer: type) -> OpenApiResponse:
    """The 202 of an action that starts an operation, in ``serializer``'s shape."""
    return OpenApiResponse(serializer, description="Operation started; poll Location.")


def action_schema(*, accepted: OpenApiResponse, request: Any = None, **extra: Any) -> Any:
    """``extend_schema`` of an API action that starts an operation: the Idempotency-Key
    header, 202 with the operation, and its refusals (400, 403, 404, 409)."""
    return extend_schema(
        request=request,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: accepted,
            400: VALIDATION_ERROR,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        **extra,
    )


# --- refusals every operation can answer ------------------------------------------------------

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_FIELD_ERRORS = {"type": "object", "additionalProperties": {}}


def _refusal(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def common_refusals(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document the refusals any operation can answer
    besides its own, so clients (and Schemathesis) find every status the API really sends.

    401, 403 and 429 (throttled) everywhere; on lists 400 (a bad filter value) and 404 (a page
    past the end); on paths with an id 404; on changes 400 and 409 (from the shared exception
    handler); on bodies 413 (too large) and 415 (not JSON). An operation's own documented
    responses are kept as they are.
    """
    for path, methods in result.get("paths", {}).items():
        for method, operation in methods.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            refusals = {
                "401": _refusal(
                    "No credentials, or an invalid, expired or revoked token.", _DETAIL
                ),
                "403": _refusal("Read-only token, or role too low.", _DETAIL),
                "429": _refusal("Too many requests; retry after the time given.", _DETAIL),
            }
            is_list = (
                method == "get"
                and "{" not in path
                and any(p.get("name") == "page" for p in operation.get("parameters", []))
            )
            if is_list:
                refusals["400"] = _refusal(
                    "Invalid filter: each parameter maps to messages.", _FIELD_ERRORS
                )
                refusals["404"] = _refusal("No such page of results.", _DETAIL)
            if "{" in path:
                refusals["404"] = _refusal("No such object visible to the caller.", _DETAIL)
            if method != "get":
                # The shared exception handler answers a service's ValidationError with 400 and
                # a state conflict (a busy target, a forbidden transition, a lost race) with 409.
                refusals["400"] = _refusal(
                    "Invalid input: each field maps to messages.", _FIELD_ERRORS
                )
                refusals["409"] = _refusal("The target is busy or its state forbids this.", _DETAIL)
            if "requestBody" in operation:
                refusals["413"] = _refusal("The request body is too large.", _DETAIL)
                refusals["415"] = _refusal("The body is not JSON (or form data).", _DETAIL)
            for code, response in refusals.items():
                responses.setdefault(code, response)
            operation["responses"] = dict(sorted(responses.items()))
    return result


# DRF writes a time of day as ``HH:MM[:SS[.ffffff]]``, without an offset; JSON Schema's
# ``format: time`` is RFC 3339's full-time, which requires one. Describe what is really sent.
TIME_OF_DAY = {"type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$"}


def _times_without_offset(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("format") == "time" and node.get("type") == "string":
            del node["format"]
            node["pattern"] = TIME_OF_DAY["pattern"]
            node.setdefault("example", "01:00:00")
        for value in node.values():
            _times_without_offset(value)
    elif isinstance(node, list):
        for value in node:
            _times_without_offset(value)


def times_of_day(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular postprocessing hook: times of day as DRF renders them (no offset)."""
    _times_without_offset(result)
    return result


# --- request bodies carry only the fields they take -----------------------------------------


def _strict(node: dict[str, Any], components: dict[str, Any], seen: set[str]) -> None:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in components:
            return
        seen.add(name)
        node = components[name]
    for key in ("allOf", "oneOf", "anyOf"):
        for part in node.get(key, []):
            _strict(part, components, seen)
    if "properties" in node and "additionalProperties" not in node:
        # A serializer's shape. A free-form object (a JSON field such as ``extra_env``) says
        # ``additionalProperties`` itself and keeps it.
        node["additionalProperties"] = False
    for prop in node.get("properties", {}).values():
        _strict(prop, components, seen)
    if isinstance(node.get("items"), dict):
        _strict(node["items"], components, seen)


def strict_request_bodies(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every request body is an object without
    additional properties, as the API answers them (``panel.api.serializers``: an unknown or
    read-only key is a 400). With ``COMPONENT_SPLIT_REQUEST`` request bodies have their own
    components, so response shapes stay open."""
    components = result.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if isinstance(media.get("schema"), dict):
                    _strict(media["schema"], components, seen)
    return result
