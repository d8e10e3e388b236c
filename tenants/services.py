"""Writes for tenants, memberships and API tokens (each audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from panel.access import Access
from panel.audit import audit_record
from tenants.models import ApiToken, Membership, Tenant


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


@transaction.atomic
def membership_create(*, actor: Access, tenant: Tenant, user: Any, role: str) -> Membership:
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
