"""Who may see and do what: the one place where tenant scoping is decided.

Every API viewset, UI view and selector narrows its querysets with ``Model.objects.for_user``
(see :class:`panel.scoping.ScopedQuerySet`), which asks :func:`access_for` for the caller's
:class:`Access`. Staff roles are Django groups: ``support`` (read everything, act on any
instance) and ``platform-admin`` (everything, including hosts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    """Compute the :class:`Access` of ``user``, narrowed to ``token``'s tenant and scope."""
    from tenants.models import Membership

    if user is None or not user.is_authenticated or not user.is_active:
        return ANONYMOUS
    groups = set(user.groups.values_list("name", flat=True))
    is_admin = user.is_superuser or PLATFORM_ADMIN_GROUP in groups
    is_support = is_admin or SUPPORT_GROUP in groups
    memberships = list(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
    member_ids = frozenset(t for t, _ in memberships)
    admin_ids = frozenset(t for t, r in memberships if r == Membership.Role.ADMIN)
    tenant_ids: frozenset | None = None if is_support else member_ids
    can_write = True
    if token is not None:
        can_write = token.scope == token.Scope.WRITE
        if token.tenant_id is not None:
            # A tenant-bound token never reaches beyond its tenant, even for a staff user, and
            # loses that tenant too once the user's membership goes (unless the user is staff).
            allowed = token.tenant_id in member_ids or is_support
            tenant_ids = frozenset({token.tenant_id}) if allowed else frozenset()
            admin_ids = tenant_ids if (is_support or token.tenant_id in admin_ids) else frozenset()
            is_admin = is_support = False
    return Access(
        user=user,
        token=token,
        tenant_ids=tenant_ids,
        admin_tenant_ids=admin_ids,
        is_support=is_support,
        is_platform_admin=is_admin,
        can_write=can_write,
    )


def access_for(request: HttpRequest) -> Access:
    """The caller's :class:`Access`, computed once per request."""
    cached = getattr(request, "_panel_access", None)
    if cached is not None:
        return cached
    token = getattr(request, "auth", None)
    from tenants.models import ApiToken

    if not isinstance(token, ApiToken):
        token = None
    access = access_for_user(getattr(request, "user", None), token)
    request._panel_access = access  # type: ignore[attr-defined]
    return access
