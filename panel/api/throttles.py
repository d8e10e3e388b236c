"""API rate limits: per client IP (before authentication, so guessing tokens is limited too)
and per token or session user, both answered with 429 and Retry-After."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per API token; session callers are counted per user."""

    scope = "token"

    def get_cache_key(self, request, view):  # noqa: ANN001, ANN201 - DRF's signature
        token = getattr(request, "auth", None)
        if token is not None and hasattr(token, "pk"):
            ident = f"t:{token.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"u:{request.user.pk}"
        else:
            return None  # anonymous callers are limited by IP alone
        return self.cache_format % {"scope": self.scope, "ident": ident}


class IPRateThrottle(SimpleRateThrottle):
    """Requests per client address, whoever the caller is."""

    scope = "ip"

    def get_cache_key(self, request, view):  # noqa: ANN001, ANN201
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ApiRateLimitMiddleware:
    """Applies :class:`IPRateThrottle` to every /api/ request before DRF authenticates it
    (DRF itself checks throttles only after authentication and permissions succeed)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            throttle = IPRateThrottle()
            if not throttle.allow_request(request, None):
                wait = throttle.wait() or 1
                response = JsonResponse(
                    {
                        "detail": f"Request was throttled. Expected available in {int(wait)} "
                        "seconds."
                    },
                    status=429,
                )
                response["Retry-After"] = str(max(1, int(wait)))
                return response
        return self.get_response(request)
