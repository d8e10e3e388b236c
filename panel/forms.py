"""What the pages do with a service's ValidationError: one line of text, or errors on a form.

Services raise :class:`~django.core.exceptions.ValidationError`, keyed by their own argument
names when they can tell which input is wrong. A page either shows the messages as one line
(a button with no fields) or puts them next to the form's fields.
"""

from __future__ import annotations

from collections.abc import Mapping

from django import forms
from django.core.exceptions import ValidationError


def validation_error_text(exc: ValidationError) -> str:
    """Every message of ``exc`` as one line (for a flash message)."""
    return " ".join(str(message) for message in exc.messages)


def errors_onto_form(
    form: forms.Form, exc: ValidationError, *, fields: Mapping[str, str] | None = None
) -> None:
    """Put a service's ValidationError on ``form``: each message on its field if the form has
    one (``fields`` renames a service argument to the form field that holds it), else on the
    form as a whole."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        field = (fields or {}).get(name, name)
        form.add_error(field if field in form.fields else None, errors)
