"""API token authentication: ``Authorization: Bearer pnl_…`` (or ``Token pnl_…``)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from tenants.models import TOKEN_PREFIX, ApiToken

# last_used_at is written at most this often per token, to keep reads cheap.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """Looks a token up by the SHA-256 of its secret; expired or revoked tokens fail."""

    keywords = ("bearer", "token")

    def authenticate(self, request):  # noqa: ANN001, ANN201 - DRF's signature
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2 or not header[1].startswith(TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed("Malformed token header.")
        token = (
            ApiToken.objects.select_related("user", "tenant")
            .filter(key_hash=ApiToken.hash_of(header[1]))
            .first()
        )
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token was revoked.")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("This token has expired.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:  # noqa: ANN001
        return 'Bearer realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the schema describes :class:`ApiTokenAuthentication` (a bearer token)."""

    target_class = "tenants.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201
        return {"type": "http", "scheme": "bearer", "bearerFormat": "pnl_…"}
