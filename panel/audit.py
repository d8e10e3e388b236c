"""The audit trail: every service that changes something calls :func:`audit_record`.

The request's source (ui/api/admin) and client IP are carried in a context variable set by
:class:`AuditContextMiddleware`, so services need not pass requests around.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.db import models

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


def audit_record(
    *,
    actor: Access | None,
    action: str,
    target: models.Model | None = None,
    tenant: Any = None,
    changes: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (who did ``action`` to ``target``, from where, what changed)."""
    from tenants.models import AuditEvent, Tenant

    ctx = _request_context.get() or {}
    user = actor.user if actor is not None and actor.is_authenticated else None
    token = actor.token if actor is not None else None
    if tenant is None and target is not None:
        if isinstance(target, Tenant):
            tenant = target
        else:
            tenant = getattr(target, "tenant", None)
    label = user.get_username() if user is not None else "system"
    if token is not None:
        label = f"{label} (token {token.name})"
    AuditEvent.objects.create(
        actor=user,
        actor_label=label,
        token=token,
        tenant=tenant,
        source=ctx.get("source", "task"),
        source_ip=ctx.get("ip"),
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:200] if target is not None else "",
        changes=sanitize_data(changes or {}),
    )
