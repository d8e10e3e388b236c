"""The pages' operation-start helper, bound to the operation's page.

``panel.htmx.operation_post`` holds the mechanism (replay, conflict message, errors, redirect)
and reverses no domain URL; the operation page is provisioning's, so every app's action views
call :func:`operation_post` from here.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from panel import htmx


def operation_url(operation: Any) -> str:
    """The page that follows ``operation`` live."""
    return reverse("provisioning:operation_detail", args=[operation.id])


def operation_conflict_message(running: Any) -> str:
    """A message naming the operation that holds the target, with a link to its page."""
    return htmx.operation_conflict_message(running, url=operation_url(running))


def operation_post(request: HttpRequest, **kwargs: Any) -> HttpResponse | None:
    """:func:`panel.htmx.operation_post` landing on the operation's page."""
    return htmx.operation_post(request, operation_url=operation_url, **kwargs)
