"""Badges and small formatting helpers used by every page of the web UI."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html

from panel.operations import operation_kind_label, registered_kinds
from panel.registry import registry

register = template.Library()

# Colour family of each status (CSS classes badge-ok, badge-warn, ...).
_STATUS_TONE = {
    # instances
    "running": "ok",
    "degraded": "warn",
    "stopped": "muted",
    "failed": "bad",
    "pending": "info",
    "provisioning": "info",
    "restoring": "info",
    "deleting": "info",
    "deleted": "muted",
    # operations
    "succeeded": "ok",
    "cancelled": "muted",
    # hosts
    "ready": "ok",
    "enrolled": "info",
    "trusted": "info",
    "unreachable": "bad",
    "error": "bad",
    "retired": "muted",
    # health
    "healthy": "ok",
    "unknown": "muted",
}


def _label(value: str) -> str:
    return value.replace("_", " ").replace("-", " ").capitalize()


@register.simple_tag
def status_badge(status: str, label: str = "") -> str:
    """A coloured status pill: running green, degraded amber, failed red, busy blue, else grey."""
    status = str(status or "unknown")
    tone = _STATUS_TONE.get(status, "muted")
    return format_html(
        '<span class="badge badge-{} status-{}" data-testid="status-badge" data-status="{}">'
        "{}</span>",
        tone,
        status,
        status,
        label or _label(status),
    )


# Operations in progress are blue (busy), unlike a running instance (green, up).
_OPERATION_TONE = {
    "pending": "info",
    "running": "info",
    "succeeded": "ok",
    "failed": "bad",
    "cancelled": "muted",
}


@register.simple_tag
def operation_badge(status: str) -> str:
    """An operation's status pill: pending and running blue, succeeded green, failed red."""
    status = str(status or "pending")
    return format_html(
        '<span class="badge badge-{} status-{}" data-testid="status-badge" data-status="{}">'
        "{}</span>",
        _OPERATION_TONE.get(status, "muted"),
        status,
        status,
        _label(status),
    )


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    if isinstance(value, date):
        return value
    return None


@register.filter
def days_until(value: Any) -> int | None:
    """Whole days from today until ``value`` (a date or datetime); negative once past."""
    day = _as_date(value)
    if day is None:
        return None
    return (day - timezone.localdate()).days


@register.simple_tag
def expiry_badge(value: Any) -> str:
    """How soon something expires: red within 7 days (or past), amber within 30, blue within 60."""
    days = days_until(value)
    if days is None:
        return format_html(
            '<span class="badge badge-muted" data-testid="expiry-badge" data-days="">{}</span>',
            "No expiry",
        )
    if days < 0:
        tone, text = "bad", f"Expired {-days} day{'s' if days != -1 else ''} ago"
    elif days == 0:
        tone, text = "bad", "Expires today"
    else:
        tone = "bad" if days <= 7 else "warn" if days <= 30 else "info" if days <= 60 else "ok"
        text = f"{days} day{'s' if days != 1 else ''} left"
    return format_html(
        '<span class="badge badge-{}" data-testid="expiry-badge" data-days="{}">{}</span>',
        tone,
        days,
        text,
    )


@register.simple_tag
def progress_bar(percent: int, label: str = "Progress") -> str:
    """An accessible progress bar (a <progress> element with its percentage in words)."""
    percent = max(0, min(100, int(percent or 0)))
    return format_html(
        '<div class="progress" data-testid="progress"><progress max="100" value="{}" '
        'aria-label="{}">{}%</progress><span class="progress-text">{}%</span></div>',
        percent,
        label,
        percent,
        percent,
    )


# Which nav entry a page belongs to, by the URL name that served it.
_SECTIONS = {
    "dashboard": "dashboard",
    "provisioning:instance_list": "instances",
    "provisioning:instance_create": "instances",
    "provisioning:instance_detail": "instances",
    "provisioning:operation_list": "operations",
    "provisioning:operation_detail": "operations",
    "tenants:token_list": "tokens",
    "tenants:staff_tenants": "staff_tenants",
    "provisioning:staff_instances": "staff_instances",
}


@register.simple_tag
def nav_section(request: Any) -> str:
    """The nav entry of the current page (used to mark it ``aria-current``)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    if match.namespace == "hosts":
        return "hosts"
    if match.namespace == "certificates" and match.url_name.startswith("dns_"):
        return "dns"
    return _SECTIONS.get(match.view_name, "")


@register.filter
def kind_label(kind: str) -> str:
    """An operation kind as a person reads it ("instance.create" -> "Instance create"): the
    label it was registered with (see :mod:`panel.registry`), else its words."""
    if kind in registered_kinds():
        return operation_kind_label(kind)
    return _label(str(kind).replace(".", " "))


@register.filter
def duration_words(value: Any) -> str:
    """A timedelta as "2 min 5 s" (or "" when there is none)."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@register.simple_tag
def page_panels(store: str) -> list[str]:
    """The template names other apps registered for a page (``"dashboard_panels"``,
    ``"instance_panels"``), in order: ``{% page_panels "instance_panels" as panels %}``."""
    return list(registry[store])
