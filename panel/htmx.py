"""HTMX helpers shared by the UI views: full page or partial, and "stop polling" responses."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.http import HTMX_STOP_POLLING

__all__ = ["HTMX_STOP_POLLING", "htmx_targets", "render_page_or_partial"]


def htmx_targets(request: HttpRequest, target_id: str) -> bool:
    """True when this is an HTMX request that swaps the element with id ``target_id``.

    A boosted or history-restore request wants the whole page even though it comes from htmx.
    """
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return False
    return htmx.target == target_id


def render_page_or_partial(
    request: HttpRequest,
    *,
    page: str,
    partial: str,
    target_id: str,
    context: dict[str, Any],
    status: int = 200,
) -> HttpResponse:
    """Render ``partial`` for an HTMX swap of ``target_id``, else the full ``page``.

    The page template includes the partial, so both always show the same rows.
    """
    template = partial if htmx_targets(request, target_id) else page
    response = render(request, template, context, status=status)
    # The same URL answers with a page or a fragment: caches must keep them apart.
    response["Vary"] = "HX-Request, HX-Target"
    return response
