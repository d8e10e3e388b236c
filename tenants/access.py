"""How a caller's :class:`panel.access.Access` is computed from the tenants app's models.

``panel.access.access_for_user`` calls :func:`access_for_user` through the
``PANEL_ACCESS_RESOLVER`` setting: the panel defines what an ``Access`` is, this app knows
who belongs to which tenant (memberships) and what an API token allows.
"""

from __future__ import annotations

from typing import Any

from panel.access import ANONYMOUS, PLATFORM_ADMIN_GROUP, SUPPORT_GROUP, Access
from tenants.models import ApiToken, Membership


def access_for_user(user: Any, token: Any = None) -> Access:
    """Compute the :class:`Access` of ``user``, narrowed to ``token``'s tenant and scope.

    ``token`` is whatever authenticated the request (``request.auth``); only an
    :class:`~tenants.models.ApiToken` narrows anything, other credentials count as none.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return ANONYMOUS
    if not isinstance(token, ApiToken):
        token = None
    groups = set(user.groups.values_list("name", flat=True))
    is_admin = user.is_superuser or PLATFORM_ADMIN_GROUP in groups
    is_support = is_admin or SUPPORT_GROUP in groups
    # Ordered by tenant name (the model's ordering joins the tenant anyway): the names cost
    # no query of their own, so the header's tenant indicator adds none to a page.
    memberships = list(
        Membership.objects.filter(user=user).values_list("tenant_id", "role", "tenant__name")
    )
    member_ids = frozenset(t for t, _, _ in memberships)
    admin_ids = frozenset(t for t, r, _ in memberships if r == Membership.Role.ADMIN)
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
        member_tenants=tuple((t, name) for t, _, name in memberships),
    )
