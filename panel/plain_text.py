"""Input checks for free text that ends up in files, environments or one-line logs."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

# Control characters (tabs and line breaks included) and the Unicode line/paragraph separators:
# any of them would break a line of an .env file, a header or a log line.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def has_control_characters(value: str) -> bool:
    """Whether ``value`` holds a control character, a line break or a line separator."""
    return any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in value)


def refuse_control_characters(value: str) -> None:
    """Validator: one line of plain text, without control characters."""
    if value and has_control_characters(value):
        raise ValidationError(
            "Use one line of plain text: line breaks, tabs and other control characters are "
            "not allowed.",
            code="control_characters",
        )
