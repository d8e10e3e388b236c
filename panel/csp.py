"""The Content-Security-Policy header on every answer (``PANEL_CONTENT_SECURITY_POLICY``).

The panel serves every script from its own static files (HTMX; the API docs' Swagger UI
through drf-spectacular's split view, whose start-up script is a URL, not inline), so scripts
are limited to ``'self'`` with no inline code: an injected ``<script>`` or ``onclick`` does not
run even if escaping were ever missed. Styles allow inline attributes, which HTMX's indicator
style and a few templates use. Django 6 has this built in; until the panel moves to it, one
header from one setting is all it takes.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Add the configured policy unless a view set its own."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        response = self.get_response(request)
        policy = settings.PANEL_CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
