"""HTMX helpers shared by the UI views: full page or partial, "stop polling", login."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_required as django_login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django_htmx.http import HTMX_STOP_POLLING, HttpResponseClientRedirect

from panel.idempotency import idempotency_key_from

__all__ = ["HTMX_STOP_POLLING", "htmx_targets", "login_required", "render_page_or_partial"]


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


def login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like Django's ``login_required``, but an HTMX request whose session has ended is sent to
    the login page as a whole page (``HX-Redirect``), instead of having the login form swapped
    into the element it was updating (a poll would otherwise paste it into the live log)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated and getattr(request, "htmx", False):
            page = request.htmx.current_url_abs_path or request.get_full_path()
            return HttpResponseClientRedirect(
                f"{resolve_url(settings.LOGIN_URL)}?{urlencode({REDIRECT_FIELD_NAME: page})}"
            )
        return django_login_required(view)(request, *args, **kwargs)

    return wrapper


# --- forms that start operations (shared by the provisioning and backups views) --------------


def new_idempotency_key() -> str:
    """A key rendered into each action form, so a double submit starts one operation."""
    import uuid

    return f"ui-{uuid.uuid4().hex}"


def posted_idempotency_key(request: HttpRequest) -> str:
    """The key the form posted back (trimmed to what the Operation stores), carrying the
    fingerprint of the submitted form (see :mod:`panel.idempotency`)."""
    if request.method != "POST":
        return ""
    return idempotency_key_from(request, request.POST.get("idempotency_key"))


def operation_conflict_message(running: Any) -> str:
    """A message naming the operation that holds the target, with a link to it."""
    from django.urls import reverse
    from django.utils.html import format_html

    from panel.templatetags.panel_tags import kind_label

    return format_html(
        'An operation is already running on this instance: <a href="{}">{} ({})</a>. '
        "Wait for it to finish or cancel it, then try again.",
        reverse("provisioning:operation_detail", args=[running.id]),
        kind_label(running.kind),
        running.get_status_display(),
    )
