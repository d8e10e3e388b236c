"""HTMX helpers shared by the UI views: full page or partial, "stop polling", login, and the
one way a form starts an operation (:func:`operation_post`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_required as django_login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.html import format_html
from django_htmx.http import HTMX_STOP_POLLING, HttpResponseClientRedirect

from panel.access import Access
from panel.forms import errors_onto_form, validation_error_text
from panel.idempotency import IdempotencyConflict, idempotency_key_from, operation_replayed
from panel.operations import OperationConflict

__all__ = [
    "HTMX_STOP_POLLING",
    "htmx_targets",
    "login_required",
    "new_idempotency_key",
    "operation_conflict_message",
    "operation_post",
    "posted_idempotency_key",
    "render_page_or_partial",
]


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


def render_paginated(
    request: HttpRequest,
    rows: Any,
    *,
    per_page: int,
    name: str,
    page: str,
    partial: str,
    target_id: str,
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """One page of ``rows`` (the ``page`` query parameter; a bad or out-of-range one gives a
    real page) as ``page`` or, for the pagination links' htmx swap, as ``partial`` alone. The
    template gets the rows as ``name``, ``page_obj`` and ``table_id`` (= ``target_id``)."""
    page_obj = Paginator(rows, per_page).get_page(request.GET.get("page"))
    return render_page_or_partial(
        request,
        page=page,
        partial=partial,
        target_id=target_id,
        context={
            **(context or {}),
            "page_obj": page_obj,
            name: page_obj.object_list,
            "table_id": target_id,
        },
    )


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


# --- forms that start operations (every app's action views) ----------------------------------


def new_idempotency_key() -> str:
    """A key rendered into each action form, so a double submit starts one operation."""
    return f"ui-{uuid.uuid4().hex}"


def posted_idempotency_key(request: HttpRequest) -> str:
    """The key the form posted back (trimmed to what the Operation stores), carrying the
    fingerprint of the submitted form (see :mod:`panel.idempotency`)."""
    if request.method != "POST":
        return ""
    return idempotency_key_from(request, request.POST.get("idempotency_key"))


def operation_conflict_message(running: Any, *, url: str) -> str:
    """A message naming the operation that holds the target, with a link to it (``url``)."""
    from panel.templatetags.panel_tags import kind_label

    target = "this host" if running.instance_id is None and running.host_id else "this instance"
    return format_html(
        'An operation is already running on {}: <a href="{}">{} ({})</a>. '
        "Wait for it to finish or cancel it, then try again.",
        target,
        url,
        kind_label(running.kind),
        running.get_status_display(),
    )


def operation_post(
    request: HttpRequest,
    *,
    access: Access,
    start: Callable[[str], Any],
    operation_url: Callable[[Any], str],
    back: str | None = None,
    form: forms.Form | None = None,
    error_fields: Mapping[str, str] | None = None,
    done: str | Callable[[Any], str] = "",
    next_url: Callable[[Any], str] | None = None,
) -> HttpResponse | None:
    """The one tail of every view that starts an operation from a POST.

    In order: a repeated submit of the same form (its idempotency key and fields) goes to the
    operation the first one started; a key reused for another form is refused; ``form`` (if
    any) is validated; ``start(key)`` calls the service. An operation already running on the
    target becomes a message linking to it (then back to ``back``, or the page is rendered
    again when there is no ``back``); a ValidationError goes onto ``form`` (``error_fields``
    renames service arguments to form fields), or without a form becomes a message and a
    redirect to ``back``. On success: ``done`` (or ``done(operation)``) as a message, then the
    operation's page (or ``next_url(operation)``).

    Returns None when the caller should render its page again with ``form`` (and messages).
    """
    destination = next_url or operation_url
    key = posted_idempotency_key(request)
    try:
        already = operation_replayed(actor=access, key=key)
    except IdempotencyConflict as exc:
        return _refused(request, exc, form=form, back=back)
    if already is not None:
        return redirect(destination(already))
    if form is not None and not form.is_valid():
        return None
    try:
        operation = start(key)
    except OperationConflict as exc:
        messages.error(
            request, operation_conflict_message(exc.running, url=operation_url(exc.running))
        )
        return redirect(back) if back else None
    except ValidationError as exc:
        if form is not None:
            errors_onto_form(form, exc, fields=error_fields)
            return None
        return _refused(request, exc, form=None, back=back)
    if done:
        messages.success(request, done(operation) if callable(done) else done)
    return redirect(destination(operation))


def _refused(
    request: HttpRequest, exc: ValidationError, *, form: forms.Form | None, back: str | None
) -> HttpResponse | None:
    if form is not None:
        form.add_error(None, exc)
        return None
    messages.error(request, validation_error_text(exc))
    return redirect(back) if back else None
