"""Serializer pieces every API write shape shares: a body may only carry the fields it takes.

DRF drops keys a serializer does not declare (and read-only ones) without a word, so a client
that misspells a field, or sends one an action does not take (``host`` on a restore, before
it was one), believes it was applied. Every write serializer of the panel mixes in
:class:`StrictFieldsMixin` instead: such a key answers 400 naming it. Actions that take no body
call :func:`request_body_refuse_fields`. The OpenAPI schema says the same
(``panel.api.schema.strict_request_bodies`` sets ``additionalProperties: false``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

UNKNOWN_FIELD = "Unknown field; this request takes: {fields}."
UNKNOWN_FIELD_NO_FIELDS = "Unknown field; this request takes no fields."
READ_ONLY_FIELD = "Read-only field; it cannot be set here."
FORM_CSRF_FIELD = "csrfmiddlewaretoken"


def _unknown_field_errors(data: Any, fields: Mapping[str, serializers.Field]) -> dict[str, list]:
    """``{key: [message]}`` for each key of ``data`` that ``fields`` does not take."""
    if not isinstance(data, Mapping):
        return {}  # not an object: the serializer itself answers "expected a dictionary"
    writable = sorted(
        name
        for name, field in fields.items()
        if not field.read_only and not isinstance(field, serializers.HiddenField)
    )
    errors: dict[str, list] = {}
    for key in data:
        # Django's CSRF token rides along in every form post of the browsable API; it is the
        # request's, not the resource's.
        if key in writable or key == FORM_CSRF_FIELD:
            continue
        if key in fields:
            errors[key] = [READ_ONLY_FIELD]
        elif writable:
            errors[key] = [UNKNOWN_FIELD.format(fields=", ".join(writable))]
        else:
            errors[key] = [UNKNOWN_FIELD_NO_FIELDS]
    return errors


class StrictFieldsMixin:
    """A serializer that refuses keys it does not take (unknown or read-only) with a 400 that
    names each of them, together with the other fields' messages. Mix in before the DRF base:
    ``class XSerializer(StrictFieldsMixin, serializers.ModelSerializer)``."""

    def to_internal_value(self, data: Any) -> Any:
        fields = self.fields  # type: ignore[attr-defined]
        unknown = _unknown_field_errors(data, fields)
        try:
            value = super().to_internal_value(data)  # type: ignore[misc]
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from exc
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def request_body_refuse_fields(request: Any) -> None:
    """For an action that takes no body: any field sent answers 400 naming it."""
    unknown = _unknown_field_errors(request.data, {})
    if unknown:
        raise serializers.ValidationError(unknown)
