"""Template filters for operation pages: what the viewer may see of an operation's text."""

from __future__ import annotations

from django import template

from provisioning import selectors
from provisioning.models import Operation

register = template.Library()


@register.filter
def as_seen_by_viewer(text: str | None, operation: Operation) -> str:
    """``text`` of ``operation`` (its error, say) with host internals masked unless the
    viewer is staff; the steps come masked from :func:`provisioning.selectors.operation_steps`."""
    if selectors.shows_host_internals(operation):
        return text or ""
    return selectors.host_mask().text(text)


@register.filter
def masked_for(text: str | None, request: object) -> str:
    """``text`` (an instance's status reason, a backup's error) as the signed-in viewer may
    see it: whole for staff, host internals masked for customers."""
    from panel.access import access_for

    if access_for(request).is_staff_role:
        return text or ""
    # One mask per request: the points table applies this filter once per failed point.
    mask = getattr(request, "_panel_host_mask", None)
    if mask is None:
        mask = request._panel_host_mask = selectors.host_mask()
    return mask.text(text)
