"""Who may see and do what: the one place where tenant scoping is decided.

Every API viewset, UI view and selector narrows its querysets with ``Model.objects.for_user``
(see :class:`panel.scoping.ScopedQuerySet`), which asks :func:`access_for` for the caller's
:class:`Access`. Staff roles are Django groups: ``support`` (read everything, act on any
instance) and ``platform-admin`` (everything, including hosts).

The panel defines ``Access``; computing it from memberships and API tokens belongs to the
tenants app (``tenants.access``, named by ``settings.PANEL_ACCESS_RESOLVER``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from django.http import HttpRequest

SUPPORT_GROUP = "support"
PLATFORM_ADMIN_GROUP = "platform-admin"


@dataclass(frozen=True)
class Access:
    """What one caller (a user, possibly through an API token) may reach."""

    user: Any = None
    token: Any = None
    # None means every tenant (staff); otherwise the tenants this caller can see.
    tenant_ids: frozenset | None = frozenset()
    admin_tenant_ids: frozenset = field(default_factory=frozenset)
    is_support: bool = False
    is_platform_admin: bool = False
    can_write: bool = False

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None and self.user.is_authenticated

    @property
    def is_staff_role(self) -> bool:
        return self.is_support or self.is_platform_admin

    def sees_tenant(self, tenant_id: Any) -> bool:
        return self.tenant_ids is None or tenant_id in self.tenant_ids

    def administers_tenant(self, tenant_id: Any) -> bool:
        """Tenant admins, support and platform admins may change a tenant's instances."""
        if not self.can_write:
            return False
        return self.is_staff_role or tenant_id in self.admin_tenant_ids


ANONYMOUS = Access()


def access_for_user(user: Any, token: Any = None) -> Access:
    """The :class:`Access` of ``user`` (narrowed to ``token``, the request's credential).

    The panel does not know who belongs to which tenant: that is the tenants app's data. The
    function that reads it is named by ``settings.PANEL_ACCESS_RESOLVER`` (a dotted path, as
    Django's ``AUTHENTICATION_BACKENDS``) rather than registered from an app's ``ready()``:
    there must be exactly one, and a missing or misspelt one fails loudly on first use
    instead of leaving every caller anonymous.
    """
    resolver: Callable[[Any, Any], Access] = import_string(settings.PANEL_ACCESS_RESOLVER)
    return resolver(user, token)


def access_for(request: HttpRequest) -> Access:
    """The caller's :class:`Access`, computed once per request."""
    cached = getattr(request, "_panel_access", None)
    if cached is not None:
        return cached
    access = access_for_user(getattr(request, "user", None), getattr(request, "auth", None))
    request._panel_access = access  # type: ignore[attr-defined]
    return access
