"""One place that removes secrets from anything we log or show in an operation's output."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar

REDACTED = "[redacted]"

# Secrets known to the code running now (e.g. the DB password of the instance being rolled out).
_active_secrets: ContextVar[tuple[str, ...]] = ContextVar("panel_active_secrets", default=())

_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"fernet:[A-Za-z0-9_\-=]+"),
    re.compile(r"\bpnl_[A-Za-z0-9_\-]{20,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(
        r"(?i)\b((?:[a-z0-9_]*_)?(?:password|passwd|secret|token|license_key)\s*[=:]\s*)"
        r"([^\s'\"&,;]+)"
    ),
    re.compile(r"(?i)(postgres(?:ql)?://[^:/\s]+:)([^@\s]+)(@)"),
]


def secrets_push(values: Iterable[str]) -> object:
    """Add secrets to redact in this context; returns a token for :func:`secrets_pop`."""
    current = _active_secrets.get()
    extra = tuple(v for v in values if v and len(v) >= 4)
    return _active_secrets.set(current + extra)


def secrets_pop(token: object) -> None:
    _active_secrets.reset(token)  # type: ignore[arg-type]


def sanitize(text: str | None, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with known secrets and secret-looking values replaced by a marker."""
    if not text:
        return text or ""
    for value in sorted({*secrets, *_active_secrets.get()}, key=len, reverse=True):
        if value and len(value) >= 4:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(
                lambda m: m.group(1) + REDACTED + (m.group(3) if m.re.groups >= 3 else ""), text
            )
        else:
            text = pattern.sub(REDACTED, text)
    return text


def sanitize_data(data: object) -> object:
    """Sanitize every string inside a JSON-like structure; secret-named keys lose their value."""
    if isinstance(data, dict):
        return {
            k: (
                REDACTED
                if re.search(r"(?i)password|secret|token|private_key|license_key", str(k))
                else sanitize_data(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [sanitize_data(v) for v in data]
    if isinstance(data, str):
        return sanitize(data)
    return data


class SanitizeFilter(logging.Filter):
    """Logging filter: every record's message, traceback and stack passes through
    :func:`sanitize` (an exception's text often carries the command or URL that failed)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break the caller
            return True
        record.msg = sanitize(message)
        record.args = ()
        if record.exc_info:
            # Formatters print exc_text when it is set; handlers that read exc_info itself
            # would see the raw exception, so it goes once its sanitized text is kept.
            record.exc_text = sanitize(
                record.exc_text or self._formatter.formatException(record.exc_info)
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = sanitize(record.exc_text)
        if record.stack_info:
            record.stack_info = sanitize(record.stack_info)
        return True
