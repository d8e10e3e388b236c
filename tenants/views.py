"""Pages of the tenants app: the caller's API tokens, the header's tenant switcher, the staff
list of all tenants, members and invitations by email, and the password reset by email."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm, SetPasswordForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from panel.access import access_for
from panel.forms import errors_onto_form
from panel.htmx import login_required, render_paginated
from tenants.forms import InvitationCreateForm, InvitationSignupForm, TokenCreateForm
from tenants.models import Invitation
from tenants.selectors import (
    invitation_in_scope,
    invitation_list,
    membership_list,
    tenant_list,
    tenant_list_with_counts,
    tenants_managed,
    tenants_switchable,
    token_list,
)
from tenants.services import (
    INVITATION_REFUSALS,
    invitation_accept,
    invitation_accept_signup,
    invitation_by_secret,
    invitation_create,
    invitation_revoke,
    password_reset_allowed,
    tenant_switch,
    token_create,
    token_revoke,
    user_password_reset,
)


def _token_page(request: HttpRequest, form: TokenCreateForm) -> HttpResponse:
    return render(
        request,
        "tenants/token_list.html",
        {"tokens": token_list(request.user), "form": form},
    )


@login_required
@require_http_methods(["GET", "POST"])
def token_list_view(request: HttpRequest) -> HttpResponse:
    """The caller's API tokens, and a form to create one (its secret is shown once)."""
    access = access_for(request)
    tenants = tenant_list(access)
    if request.method == "GET":
        return _token_page(request, TokenCreateForm(access=access, tenants=tenants))
    form = TokenCreateForm(request.POST, access=access, tenants=tenants)
    if form.is_valid():
        try:
            token, secret = token_create(
                actor=access,
                user=request.user,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                tenant=form.cleaned_data["tenant"],
                expires_at=form.expires_at(),
            )
        except ValidationError as exc:
            errors_onto_form(form, exc, fields=form.SERVICE_FIELDS)
        else:
            # The secret exists only in this response: never in a redirect, session or log.
            response = render(
                request, "tenants/token_created.html", {"token": token, "secret": secret}
            )
            response["Cache-Control"] = "no-store"
            return response
    return _token_page(request, form)


@login_required
@require_POST
def token_revoke_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Revoke one of the caller's own tokens (anyone else's is not found)."""
    token = get_object_or_404(token_list(request.user), pk=pk)
    if token.revoked_at is None:
        token_revoke(actor=access_for(request), token=token)
        messages.success(request, f"Token {token.name} ({token.prefix}…) revoked.")
    else:
        messages.info(request, f"Token {token.name} was already revoked.")
    return redirect("tenants:token_list")


@login_required
@require_POST
def tenant_switch_view(request: HttpRequest) -> HttpResponse:
    """Show only one of the caller's tenants (``tenant``: its id), or all of them again
    (``tenant`` empty). Another tenant, and anyone without a switcher, is not found."""
    access = access_for(request)
    choices = dict(tenants_switchable(access))
    if not choices:
        raise Http404
    value = request.POST.get("tenant", "").strip()
    try:
        tenant_id = uuid.UUID(value) if value else None
    except ValueError:
        raise Http404 from None
    if tenant_id is not None and tenant_id not in choices:
        raise Http404
    tenant_switch(actor=access, session=request.session, tenant_id=tenant_id)
    if tenant_id is None:
        messages.success(request, "Showing all your tenants.")
    else:
        messages.success(request, f"Showing {choices[tenant_id]} only.")
    # The dashboard, not the page the switch came from: that may be another tenant's object.
    return redirect("dashboard")


TENANTS_PER_PAGE = 25  # as the instance, operation and host lists


@login_required
@require_GET
def staff_tenant_list(request: HttpRequest) -> HttpResponse:
    """Staff: every tenant with its number of instances and members, a page at a time."""
    access = access_for(request)
    if not access.is_staff_role:
        raise Http404
    return render_paginated(
        request,
        tenant_list_with_counts(access).order_by("name", "pk"),
        per_page=TENANTS_PER_PAGE,
        name="tenants",
        page="tenants/staff_tenants.html",
        partial="tenants/_tenant_table.html",
        target_id="tenant-table",
    )


# --- members and invitations ----------------------------------------------------------------

MEMBERS_PER_PAGE = 50


def _member_page(request: HttpRequest, form: InvitationCreateForm | None) -> HttpResponse:
    access = access_for(request)
    invitations = invitation_list(access)
    memberships = (
        membership_list(access)
        if access.is_staff_role
        else membership_list(access).filter(tenant__in=tenants_managed(access))
    )
    return render_paginated(
        request,
        memberships,
        per_page=MEMBERS_PER_PAGE,
        name="memberships",
        page="tenants/member_list.html",
        partial="tenants/_member_table.html",
        target_id="member-table",
        context={
            "invitations": [i for i in invitations if i.status == Invitation.Status.PENDING],
            "form": form,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def member_list_view(request: HttpRequest) -> HttpResponse:
    """Members of the tenants the caller administers, the pending invitations, and a form to
    invite someone by email (tenant admins and platform admins; support reads; viewers 403)."""
    access = access_for(request)
    if not (access.is_staff_role or access.admin_tenant_ids):
        raise PermissionDenied("Only a tenant's administrators see its members.")
    managed = tenants_managed(access)
    if not managed.exists():
        if request.method == "POST":
            raise PermissionDenied("Only a tenant's administrators invite people to it.")
        return _member_page(request, None)
    if request.method == "GET":
        return _member_page(request, InvitationCreateForm(tenants=managed))
    form = InvitationCreateForm(request.POST, tenants=managed)
    if form.is_valid():
        email = form.cleaned_data["email"]
        try:
            invitation_create(
                actor=access,
                tenant=form.cleaned_data["tenant"],
                email=email,
                role=form.cleaned_data["role"],
            )
        except ValidationError as exc:
            errors_onto_form(form, exc)
        else:
            # The same words whether or not someone has an account with this address.
            messages.success(request, f"Invitation sent to {email}. The link works for 7 days.")
            return redirect("tenants:member_list")
    return _member_page(request, form)


@login_required
@require_POST
def invitation_revoke_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Withdraw a pending invitation (another tenant's is not found; a viewer's try is 403)."""
    access = access_for(request)
    invitation = invitation_in_scope(access, pk)
    invitation_revoke(actor=access, invitation=invitation)
    messages.success(request, f"Invitation of {invitation.email} withdrawn.")
    return redirect("tenants:member_list")


def _no_store(response: HttpResponse) -> HttpResponse:
    # The page's address carries the invitation's secret: keep it out of caches and referrers.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_http_methods(["GET", "POST"])
def invitation_accept_view(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an invitation: a signed-in person joins the tenant; someone new chooses a
    username and password. Used, withdrawn, expired and unknown links are refused with why."""
    try:
        invitation = invitation_by_secret(token)
    except ValidationError as exc:
        return _no_store(
            render(
                request, "tenants/invitation_accept.html", {"refusal": exc.messages[0]}, status=404
            )
        )
    refusal = INVITATION_REFUSALS.get(Invitation.Status(invitation.status))
    if refusal is not None:
        return _no_store(
            render(
                request,
                "tenants/invitation_accept.html",
                {"refusal": refusal, "invitation": invitation},
                status=410,
            )
        )
    signed_in = request.user.is_authenticated
    form = InvitationSignupForm(request.POST or None) if not signed_in else None
    error = ""
    if request.method == "POST":
        try:
            if signed_in:
                invitation_accept(invitation=invitation, user=request.user)
                messages.success(request, f"You are now a member of {invitation.tenant}.")
                return redirect("dashboard")
            assert form is not None
            if form.is_valid():
                invitation_accept_signup(
                    invitation=invitation,
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["new_password1"],
                )
                messages.success(
                    request,
                    f"Your account is ready and belongs to {invitation.tenant}. Log in to start.",
                )
                return redirect("login")
        except ValidationError as exc:
            if form is not None and hasattr(exc, "error_dict"):
                errors_onto_form(form, exc, fields={"password1": "new_password1"})
            else:
                error = exc.messages[0]
    return _no_store(
        render(
            request,
            "tenants/invitation_accept.html",
            {
                "invitation": invitation,
                "form": form,
                "error": error,
                "login_url": f"{reverse('login')}?next={request.path}",
            },
        )
    )


# --- password reset by email ----------------------------------------------------------------


class PanelPasswordResetForm(PasswordResetForm):
    """Django's reset form, with the panel's own link (``PANEL_BASE_URL``, never the request's
    Host header, which a caller writes)."""

    def send_mail(  # type: ignore[override]
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        context["base_url"] = str(settings.PANEL_BASE_URL).rstrip("/")
        super().send_mail(subject_template_name, email_template_name, context, *args, **kwargs)


class PasswordResetView(auth_views.PasswordResetView):
    """Ask for a reset link by email. The answer is the same for a known and an unknown
    address, and requests are counted per address and per client (no mail past the limit)."""

    form_class = PanelPasswordResetForm
    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        if password_reset_allowed(
            email=form.cleaned_data["email"], ip=self.request.META.get("REMOTE_ADDR")
        ):
            return super().form_valid(form)
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Choose a new password from the mailed link. Never logs the user in: they log in again,
    with their second factor when they have one."""

    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")
    post_reset_login = False

    def form_valid(self, form: SetPasswordForm) -> HttpResponse:
        user_password_reset(user=form.user, password=form.cleaned_data["new_password1"])
        del self.request.session[auth_views.INTERNAL_RESET_SESSION_TOKEN]
        return HttpResponseRedirect(self.get_success_url())
