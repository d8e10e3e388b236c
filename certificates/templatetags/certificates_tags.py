"""Template tags that let provisioning's pages show certificates without knowing this app."""

from __future__ import annotations

from typing import Any

from django import template

from panel.access import access_for

register = template.Library()


@register.simple_tag(takes_context=True)
def instance_endpoint(context: Any, instance: Any) -> dict[str, Any]:
    """What the instance page shows about DNS, the certificate and the proxy (scoped)."""
    from certificates.selectors import instance_endpoint as select

    access = access_for(context["request"])
    data = select(access, instance)
    data["can_renew"] = access.is_staff_role and access.can_write
    data["can_manage"] = access.administers_tenant(instance.tenant_id)
    return data


@register.simple_tag(takes_context=True)
def certificates_expiring(context: Any) -> list:
    """Certificates the caller sees that expire within 14 days (dashboard alert)."""
    from certificates.selectors import certificates_expiring as select

    return list(select(access_for(context["request"]))[:20])
