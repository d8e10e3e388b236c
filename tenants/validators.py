"""Input checks shared by the tenants app's forms, serializers and services."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

CONTROL_CHARACTERS_REFUSED = "Control characters (newlines, tabs, ...) are refused."
# Bidirectional embeddings, overrides and isolates make a name read differently than it is.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def validate_single_line(value: str) -> None:
    """Refuse control characters in free text that ends up in CSV exports, logs and headers,
    at input rather than where it is used: C0/C1 controls (newline, CR, tab, NUL, DEL), the
    Unicode line and paragraph separators, and bidirectional overrides."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            raise ValidationError(CONTROL_CHARACTERS_REFUSED, code="control_characters")
