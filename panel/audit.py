"""The audit trail: every service that changes something calls :func:`audit_record`.

This module is the panel's facade: the events are stored by the tenants app
(``tenants.audit.audit_event_record``, named by ``settings.PANEL_AUDIT_RECORDER``).

The request's source (ui/api/admin) and client IP are carried in a context variable set by
:class:`AuditContextMiddleware`, so services need not pass requests around.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.module_loading import import_string

from panel.access import Access
from panel.sanitize import sanitize_data

_request_context: ContextVar[dict[str, Any]] = ContextVar("panel_audit_context", default=None)


class AuditContextMiddleware:
    """Remember where the current request comes from, for the audit records it causes."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        path = request.path
        source = (
            "api" if path.startswith("/api/") else "admin" if path.startswith("/admin/") else "ui"
        )
        token = _request_context.set({"source": source, "ip": request.META.get("REMOTE_ADDR")})
        try:
            return self.get_response(request)
        finally:
            _request_context.reset(token)


def audit_source(source: str) -> object:
    """Mark work outside a request (a task, a command) as the audit source."""
    return _request_context.set({"source": source, "ip": None})


def audit_context() -> dict[str, Any]:
    """Where the work being audited comes from: ``{"source": ..., "ip": ...}``, or ``{}``."""
    return _request_context.get() or {}


def audit_record(
    *,
    actor: Access | None,
    action: str,
    target: models.Model | None = None,
    tenant: Any = None,
    changes: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (who did ``action`` to ``target``, from where, what changed).

    The event is a row of the tenants app (``AuditEvent``); the panel does not import it but
    calls the writer named by ``settings.PANEL_AUDIT_RECORDER``. A setting rather than a
    registration from ``ready()``: there is exactly one writer and auditing must never be
    silently off because an app did not register (a bad path raises on the first change).
    """
    recorder: Callable[..., None] = import_string(settings.PANEL_AUDIT_RECORDER)
    recorder(
        actor=actor,
        action=action,
        target=target,
        tenant=tenant,
        changes=sanitize_data(changes or {}),
        context=audit_context(),
    )
