"""A read serializer's answer for a page of rows read with ``QuerySet.values()``.

DRF serialises a list row by row from model instances: each row is built as a model (and its
related rows as models too), then every field walks its source through ``get_attribute``.
For the API's long lists that is most of the request. :class:`ValuesShape` reads the same
serializer's fields once and answers from plain ``values()`` dicts instead: each field that
maps to a column (``source="instance.name"`` is ``instance__name``) is turned into JSON by the
field's own ``to_representation``, so the output is exactly the serializer's; the fields that
are not columns (model properties, nested lists) are given by the caller, already in their
JSON form. A serializer field that is neither fails at once (``ImproperlyConfigured``), so a
new field cannot silently go missing from the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from rest_framework import serializers

Computed = Callable[[dict[str, Any]], Any]


def _column(model: type[models.Model], attrs: list[str]) -> str | None:
    """The ``values()`` key of a source path when every step is a field (FKs by attname too)."""
    opts = model._meta
    names = []
    for i, attr in enumerate(attrs):
        try:
            field = opts.get_field(attr)
        except FieldDoesNotExist:
            return None
        names.append(attr)
        if i < len(attrs) - 1:
            related = field.related_model if field.is_relation else None
            if related is None or isinstance(related, str):
                return None
            opts = related._meta
        elif field.is_relation and attr != getattr(field, "attname", None):
            return None  # DRF would answer the related object, values() only its key
    return "__".join(names)


class ValuesShape:
    """The answer of ``serializer`` built from ``values(*shape.columns)`` rows.

    ``computed`` maps the names of the fields that are not columns to a function of the row
    that returns the field's JSON value; ``needs`` names columns those functions read.
    """

    def __init__(
        self,
        serializer: serializers.Serializer,
        *,
        computed: dict[str, Computed] | None = None,
        needs: Iterable[str] = (),
    ) -> None:
        computed = computed or {}
        model = serializer.Meta.model  # type: ignore[attr-defined]
        self.plan: list[tuple[str, str | None, Any]] = []
        columns = set(needs)
        for field in serializer.fields.values():
            if field.write_only:
                continue
            name: str = field.field_name  # type: ignore[assignment]  # set once bound
            if name in computed:
                self.plan.append((name, None, computed[name]))
                continue
            column = (
                None
                if isinstance(field, serializers.BaseSerializer | serializers.SerializerMethodField)
                else _column(model, field.source_attrs)
            )
            if column is None:
                raise ImproperlyConfigured(
                    f"{type(serializer).__name__}.{name} is not a column: give it in computed"
                )
            columns.add(column)
            self.plan.append((name, column, field.to_representation))
        self.columns = sorted(columns)

    def represent(self, row: dict[str, Any]) -> dict[str, Any]:
        """One row's answer, its keys in the serializer's order (``None`` stays ``None``)."""
        out: dict[str, Any] = {}
        for name, column, convert in self.plan:
            if column is None:
                out[name] = convert(row)
            else:
                value = row[column]
                out[name] = None if value is None else convert(value)
        return out
