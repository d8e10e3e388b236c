"""Template tags that put backup facts on other apps' pages (the instance page, the dashboard
and a host's page) without their views knowing about backups: each reads through the
selectors with the request's access."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from backups import selectors
from panel.access import access_for
from panel.htmx import new_idempotency_key

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


@register.inclusion_tag("backups/_host_evacuation_card.html", takes_context=True)
def host_evacuation_card(context: dict[str, Any], host: Any) -> dict[str, Any]:
    """An app host's evacuation: *Evacuate* while it is down, its last evacuation's figures and
    the copies of evacuated instances it keeps (a purge for platform admins). Nothing for other
    hosts, nor for anyone who may not evacuate (constant queries: no plan here)."""
    access = access_for(context["request"])
    if not selectors.evacuation_hosts(access).filter(pk=host.pk).exists():
        return {"shown": False}
    state = selectors.evacuation_state(host, plan=False)
    return {
        "shown": True,
        "host": host,
        "state": state,
        "can_evacuate": state["down"] and access.can_write,
        "can_purge": access.is_platform_admin and access.can_write and state["copies_fenced"] > 0,
        "csrf_token": context.get("csrf_token"),
        "idempotency_key": new_idempotency_key(),
    }


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
