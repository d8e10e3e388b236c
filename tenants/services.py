"""Writes for tenants, memberships and API tokens (each audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP, Access
from panel.audit import audit_record
from tenants.models import ApiToken, Membership, Tenant
from tenants.selectors import manages_tenant
from tenants.validators import validate_single_line


@transaction.atomic
def tenant_create(
    *, actor: Access, name: str, slug: str, contact_email: str, default_tier: str
) -> Tenant:
    """Create a tenant (staff only; checked by the caller's view)."""
    tenant = Tenant(name=name, slug=slug, contact_email=contact_email, default_tier=default_tier)
    tenant.full_clean()
    tenant.save()
    audit_record(
        actor=actor, action="tenant.create", target=tenant, changes={"name": name, "slug": slug}
    )
    return tenant


@transaction.atomic
def tenant_update(*, actor: Access, tenant: Tenant, **fields: Any) -> Tenant:
    changes = {k: v for k, v in fields.items() if getattr(tenant, k) != v}
    for key, value in changes.items():
        setattr(tenant, key, value)
    tenant.full_clean()
    tenant.save()
    audit_record(actor=actor, action="tenant.update", target=tenant, changes=changes)
    return tenant


# One answer for a username that does not exist and for one that may not be added, so that
# adding members cannot be used to find out which usernames exist on the panel.
NOT_ADDABLE = "No user with this username can be added. Check the spelling, or ask them to sign up."


def _addable_user(actor: Access, username: str) -> Any:
    """The active user called ``username`` whom ``actor`` may add to a tenant, else None.

    Staff accounts (support, platform admins) are not tenant members a customer chooses;
    only platform admins may add them.
    """
    users = get_user_model().objects.filter(username=username, is_active=True)
    if not actor.is_platform_admin:
        users = users.filter(is_superuser=False).exclude(
            groups__name__in=[SUPPORT_GROUP, PLATFORM_ADMIN_GROUP]
        )
    return users.first()


@transaction.atomic
def membership_create(*, actor: Access, tenant: Tenant, username: str, role: str) -> Membership:
    """Add the user called ``username`` to ``tenant`` with ``role`` (tenant admins of that
    tenant and platform admins; support does not decide who belongs to a tenant)."""
    if not manages_tenant(actor, tenant.pk):
        raise PermissionDenied("Only the tenant's administrators add its members.")
    user = _addable_user(actor, username)
    if user is None:
        raise ValidationError({"user": NOT_ADDABLE})
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError({"user": f"{user} is already a member of {tenant}."})
    membership = Membership(tenant=tenant, user=user, role=role)
    membership.full_clean()
    membership.save()
    audit_record(
        actor=actor,
        action="membership.create",
        target=membership,
        tenant=tenant,
        changes={"user": user.get_username(), "role": role},
    )
    return membership


@transaction.atomic
def membership_delete(*, actor: Access, membership: Membership) -> None:
    """Remove a member (tenant admins of that tenant and platform admins)."""
    if not manages_tenant(actor, membership.tenant_id):
        raise PermissionDenied("Only the tenant's administrators remove its members.")
    audit_record(
        actor=actor,
        action="membership.delete",
        target=membership,
        tenant=membership.tenant,
        changes={"user": membership.user.get_username()},
    )
    membership.delete()


@transaction.atomic
def token_create(
    *,
    actor: Access,
    user: Any,
    name: str,
    scope: str,
    tenant: Tenant | None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token; returns it and the clear secret (shown once, stored hashed).

    Customers' tokens must name one of their tenants; staff may create cross-tenant tokens.
    """
    if not name.strip():
        raise ValidationError({"name": "Give the token a name."})
    try:
        validate_single_line(name)
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from exc
    if tenant is None and not actor.is_staff_role:
        raise ValidationError({"tenant": "Choose the tenant this token works for."})
    if tenant is not None and not actor.sees_tenant(tenant.id):
        raise ValidationError({"tenant": "You are not a member of this tenant."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    secret, prefix, key_hash = ApiToken.generate()
    token = ApiToken.objects.create(
        user=user,
        tenant=tenant,
        name=name.strip(),
        scope=scope,
        prefix=prefix,
        key_hash=key_hash,
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="token.create",
        target=token,
        tenant=tenant,
        changes={
            "name": token.name,
            "scope": scope,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, secret


@transaction.atomic
def token_revoke(*, actor: Access, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="token.revoke", target=token, tenant=token.tenant)
    return token
