"""Writes for tenants, memberships, invitations, API tokens and passwords (each audited)."""

from __future__ import annotations

import smtplib
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from panel.access import (
    ACTIVE_TENANT_SESSION_KEY,
    PLATFORM_ADMIN_GROUP,
    SUPPORT_GROUP,
    Access,
    access_for_user,
)
from panel.audit import audit_record
from tenants.models import ApiToken, Invitation, Membership, Tenant
from tenants.selectors import manages_tenant, tenants_switchable
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


BY_USERNAME_REFUSED = (
    "Invite people by email instead (the Members page, or POST /api/invitations/); "
    "only platform admins add an existing account by its username."
)


@transaction.atomic
def membership_create(*, actor: Access, tenant: Tenant, username: str, role: str) -> Membership:
    """Add the user called ``username`` to ``tenant`` with ``role`` (platform admins only:
    tenant admins invite by email, :func:`invitation_create`; support does not decide who
    belongs to a tenant)."""
    if not manages_tenant(actor, tenant.pk):
        raise PermissionDenied("Only the tenant's administrators add its members.")
    if not actor.is_platform_admin:
        # Adding by username would tell a tenant admin which usernames exist (issue 17).
        raise PermissionDenied(BY_USERNAME_REFUSED)
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


def tenant_switch(*, actor: Access, session: Any, tenant_id: Any) -> None:
    """Narrow the pages of ``actor``'s session to ``tenant_id``, one of their tenants (the
    header's switcher), or show all of them again (None); the view checks the choice.

    Not audited: it changes no data, only what this session shows (as logging in and out).
    """
    if tenant_id is not None and tenant_id not in dict(tenants_switchable(actor)):
        raise PermissionDenied("You can only switch to a tenant you are a member of.")
    if tenant_id is None:
        session.pop(ACTIVE_TENANT_SESSION_KEY, None)
    else:
        session[ACTIVE_TENANT_SESSION_KEY] = str(tenant_id)


# --- invitations by email -------------------------------------------------------------------

INVITATION_VALID_FOR = timedelta(days=7)

INVITATION_REFUSALS = {
    Invitation.Status.ACCEPTED: "This invitation has already been used. Each link works once.",
    Invitation.Status.REVOKED: "This invitation was withdrawn by the tenant's administrators.",
    Invitation.Status.EXPIRED: "This invitation has expired. Ask the tenant's administrators "
    "to send you a new one.",
}
INVITATION_UNKNOWN = "This invitation link is not valid. Check that you copied all of it."


def invitation_accept_url(secret: str) -> str:
    """The absolute link of the accept page for an invitation's clear secret."""
    path = reverse("tenants:invitation_accept", kwargs={"token": secret})
    return f"{str(settings.PANEL_BASE_URL).rstrip('/')}{path}"


@transaction.atomic
def invitation_create(*, actor: Access, tenant: Tenant, email: str, role: str) -> Invitation:
    """Invite ``email`` to ``tenant`` with ``role`` and send the accept link by mail (tenant
    admins of that tenant and platform admins).

    The answer is the same whether or not an account has this address, so inviting cannot be
    used to find out who has an account. An earlier pending invitation of the same address to
    the same tenant is replaced (its link stops working).
    """
    if not manages_tenant(actor, tenant.pk):
        raise PermissionDenied("Only the tenant's administrators invite people to it.")
    email = get_user_model().objects.normalize_email(email.strip())
    secret, key_hash = Invitation.generate()
    invitation = Invitation(
        tenant=tenant,
        email=email,
        role=role,
        key_hash=key_hash,
        invited_by=actor.user,
        expires_at=timezone.now() + INVITATION_VALID_FOR,
    )
    invitation.full_clean()
    replaced = Invitation.objects.pending().filter(tenant=tenant, email__iexact=email)
    replaced.update(revoked_at=timezone.now())
    invitation.save()
    audit_record(
        actor=actor,
        action="invitation.create",
        target=invitation,
        tenant=tenant,
        changes={"email": email, "role": role},
    )
    context = {
        "tenant": tenant,
        "role": invitation.get_role_display(),
        "inviter": actor.user.get_full_name() or actor.user.get_username(),
        "url": invitation_accept_url(secret),
        "expires_at": invitation.expires_at,
    }
    try:
        send_mail(
            f"You are invited to {tenant.name} on the hosting panel",
            render_to_string("tenants/invitation_email.txt", context),
            None,
            [email],
        )
    except (smtplib.SMTPException, OSError) as exc:
        # Rolls the invitation back: an invitation nobody received must not stay pending.
        raise ValidationError(
            {"email": f"The invitation mail could not be sent ({exc.__class__.__name__})."}
        ) from exc
    return invitation


@transaction.atomic
def invitation_revoke(*, actor: Access, invitation: Invitation) -> Invitation:
    """Withdraw a pending invitation: its link stops working (tenant admins of that tenant
    and platform admins). Revoking one that is no longer pending changes nothing."""
    if not manages_tenant(actor, invitation.tenant_id):
        raise PermissionDenied("Only the tenant's administrators withdraw its invitations.")
    if invitation.status == Invitation.Status.PENDING:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="invitation.revoke",
            target=invitation,
            tenant=invitation.tenant,
            changes={"email": invitation.email},
        )
    return invitation


def invitation_by_secret(secret: str) -> Invitation:
    """The invitation whose accept link carries ``secret``, whatever its state; raises
    ``ValidationError`` with :data:`INVITATION_UNKNOWN` for none."""
    invitation = (
        Invitation.objects.select_related("tenant", "invited_by")
        .filter(key_hash=Invitation.hash_of(secret))
        .first()
    )
    if invitation is None:
        raise ValidationError(INVITATION_UNKNOWN)
    return invitation


def _claim(invitation: Invitation) -> Invitation:
    """Lock the invitation's row and check it may still be accepted (single use)."""
    locked = Invitation.objects.select_for_update(of=("self",)).select_related(
        "tenant", "invited_by"
    )
    invitation = locked.get(pk=invitation.pk)
    if invitation.status != Invitation.Status.PENDING:
        raise ValidationError(INVITATION_REFUSALS[Invitation.Status(invitation.status)])
    return invitation


def _join(invitation: Invitation, user: Any, new_account: bool) -> Membership:
    membership = Membership.objects.create(
        tenant=invitation.tenant, user=user, role=invitation.role
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        actor=access_for_user(user),
        action="invitation.accept",
        target=invitation,
        tenant=invitation.tenant,
        changes={
            "user": user.get_username(),
            "role": invitation.role,
            "new_account": new_account,
        },
    )
    return membership


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: Any) -> Membership:
    """Make the signed-in ``user`` a member of the invitation's tenant with its role.

    Staff accounts join a tenant only when a platform admin invited them (as adding staff by
    username is for platform admins only)."""
    invitation = _claim(invitation)
    inviter = invitation.invited_by
    if access_for_user(user).is_staff_role and not (
        inviter is not None and access_for_user(inviter).is_platform_admin
    ):
        raise ValidationError(
            "Staff accounts cannot join a tenant by a customer's invitation. "
            "Log in with your customer account, or ask a platform admin."
        )
    if Membership.objects.filter(tenant=invitation.tenant, user=user).exists():
        raise ValidationError(f"You are already a member of {invitation.tenant}.")
    return _join(invitation, user, new_account=False)


@transaction.atomic
def invitation_accept_signup(*, invitation: Invitation, username: str, password: str) -> Any:
    """Create an account (``username``, ``password``, the invited address) for someone new
    and make it a member of the invitation's tenant; returns the new user."""
    invitation = _claim(invitation)
    users = get_user_model()
    username = username.strip()
    if users.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": "That username is taken. Choose another."})
    user = users(username=username, email=invitation.email)
    try:
        user.full_clean(exclude=["password"])
        validate_password(password, user)
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise
        raise ValidationError({"password1": exc.messages}) from exc
    user.set_password(password)
    user.save()
    _join(invitation, user, new_account=True)
    return user


# --- passwords ------------------------------------------------------------------------------

# Reset mails asked for per address and per client address in an hour; beyond them the answer
# stays the same but no mail is sent (login failures are limited by django-axes instead).
PASSWORD_RESET_PER_EMAIL = 3
PASSWORD_RESET_PER_IP = 20
PASSWORD_RESET_WINDOW = 3600


def _count(key: str) -> int:
    cache.add(key, 0, PASSWORD_RESET_WINDOW)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, PASSWORD_RESET_WINDOW)
        return 1


def password_reset_allowed(*, email: str, ip: str | None) -> bool:
    """Count one reset request for ``email`` from ``ip``; whether a mail may be sent."""
    per_email = _count(f"password-reset:email:{email.strip().lower()}")
    per_ip = _count(f"password-reset:ip:{ip or 'unknown'}")
    return per_email <= PASSWORD_RESET_PER_EMAIL and per_ip <= PASSWORD_RESET_PER_IP


@transaction.atomic
def user_password_reset(*, user: Any, password: str) -> Any:
    """Set ``user``'s new password from a reset link (audited, the user as the actor).

    It does not log the user in: they log in again, second factor included. Their other
    sessions end, as Django ends them on any password change (the session's auth hash)."""
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(actor=access_for_user(user), action="user.password_reset", target=user)
    return user
