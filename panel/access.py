"""Who may see and do what: the one place where tenant scoping is decided.

Every API viewset, UI view and selector narrows its querysets with ``Model.objects.for_user``
(see :class:`panel.scoping.ScopedQuerySet`), which asks :func:`access_for` for the caller's
:class:`Access`. Staff roles are Django groups: ``support`` (read everything, act on any
instance) and ``platform-admin`` (everything, including hosts).

The panel defines ``Access``; computing it from memberships and API tokens belongs to the
tenants app (``tenants.access``, named by ``settings.PANEL_ACCESS_RESOLVER``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from django.http import HttpRequest

SUPPORT_GROUP = "support"
PLATFORM_ADMIN_GROUP = "platform-admin"
# The tenant a member of several chose in the header's switcher (a tenant id; absent: all).
ACTIVE_TENANT_SESSION_KEY = "panel_active_tenant"


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
    # (id, name) of every tenant the user is a member of, by name, whatever narrows
    # ``tenant_ids`` (a token, the switcher): what the header's tenant indicator shows.
    member_tenants: tuple[tuple[Any, str], ...] = ()
    # The tenant chosen in the header's switcher, to which this access was narrowed; None:
    # every tenant the caller may see.
    active_tenant_id: Any = None

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None and self.user.is_authenticated

    @property
    def is_staff_role(self) -> bool:
        return self.is_support or self.is_platform_admin

    @property
    def changes_anything(self) -> bool:
        """Whether this caller may change anything at all: a credential that writes (not a
        read-only token) and a role that changes something (admin of a tenant, or staff).
        A viewer's session writes nothing, though ``can_write`` is true for it."""
        return self.can_write and (self.is_staff_role or bool(self.admin_tenant_ids))

    def sees_tenant(self, tenant_id: Any) -> bool:
        return self.tenant_ids is None or tenant_id in self.tenant_ids

    def administers_tenant(self, tenant_id: Any) -> bool:
        """Tenant admins, support and platform admins may change a tenant's instances."""
        if not self.can_write:
            return False
        return self.is_staff_role or tenant_id in self.admin_tenant_ids

    @property
    def active_tenant_name(self) -> str:
        """The name of the tenant chosen in the switcher, or "" when none is."""
        return next((n for t, n in self.member_tenants if t == self.active_tenant_id), "")


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


def access_narrowed_to_tenant(access: Access, tenant_id: Any) -> Access:
    """``access`` seeing only ``tenant_id``, the tenant a customer who belongs to several chose
    in the header's switcher. Only ever narrower: staff (who see every tenant), API tokens
    (which have their own tenant) and a tenant the caller no longer belongs to leave
    ``access`` as it is."""
    if (
        access.token is not None
        or access.is_staff_role
        or access.tenant_ids is None
        or tenant_id not in access.tenant_ids
    ):
        return access
    return replace(
        access,
        tenant_ids=frozenset({tenant_id}),
        admin_tenant_ids=access.admin_tenant_ids & {tenant_id},
        active_tenant_id=tenant_id,
    )


def _active_tenant_id(request: Any) -> uuid.UUID | None:
    """The tenant id the request's session holds from the switcher, if any."""
    session = getattr(request, "session", None)
    value = session.get(ACTIVE_TENANT_SESSION_KEY) if session is not None else None
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def access_for(request: HttpRequest) -> Access:
    """The caller's :class:`Access`, computed once per request (narrowed to the tenant chosen
    in the header's switcher, see :func:`access_narrowed_to_tenant`)."""
    cached = getattr(request, "_panel_access", None)
    if cached is not None:
        return cached
    access = access_for_user(getattr(request, "user", None), getattr(request, "auth", None))
    # Only a customer with several tenants has a switcher: nobody else's session is read.
    if len(access.member_tenants) > 1 and access.token is None and not access.is_staff_role:
        tenant_id = _active_tenant_id(request)
        if tenant_id is not None:
            access = access_narrowed_to_tenant(access, tenant_id)
    request._panel_access = access  # type: ignore[attr-defined]
    return access
