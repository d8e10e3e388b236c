"""Template tags that put backup facts on other apps' pages (the instance page and the
dashboard) without their views knowing about backups: each reads through the selectors with
the request's access."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from backups import selectors
from panel.access import access_for

register = template.Library()


@register.inclusion_tag("backups/_instance_card.html", takes_context=True)
def instance_backups_card(context: dict[str, Any], instance: Any) -> dict[str, Any]:
    """RPO/RTO, the newest good backup against the RPO, next run, last drill, recent points."""
    request = context["request"]
    access = access_for(request)
    return {
        "instance": instance,
        "summary": selectors.instance_backup_summary(access, instance),
        "can_manage": access.administers_tenant(instance.tenant_id),
        "is_staff": access.is_staff_role,
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("backups/_dashboard_card.html", takes_context=True)
def backups_dashboard_card(context: dict[str, Any]) -> dict[str, Any]:
    """How many instances are within their RPO, and which are not (constant queries)."""
    access = access_for(context["request"])
    return {"overview": selectors.rpo_overview(access), "is_staff": access.is_staff_role}


@register.filter
def hours_words(value: timedelta | None) -> str:
    """A duration in the largest sensible unit: "45 min", "7.5 h", "3 days"."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 3600:
        return f"{max(0, round(seconds / 60))} min"
    if seconds < 72 * 3600:
        hours = seconds / 3600
        return f"{hours:.0f} h" if hours >= 10 or hours == int(hours) else f"{hours:.1f} h"
    return f"{seconds / 86400:.0f} days"


@register.filter
def seconds_words(value: float | None) -> str:
    if value is None:
        return "—"
    return hours_words(timedelta(seconds=value)) if value >= 60 else f"{value:.0f} s"
