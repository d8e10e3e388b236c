"""Pages of the tenants app: the caller's API tokens, and the staff list of all tenants."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from panel.access import access_for
from panel.forms import errors_onto_form
from panel.htmx import login_required
from tenants.forms import TokenCreateForm
from tenants.selectors import tenant_list, tenant_list_with_counts, token_list
from tenants.services import token_create, token_revoke


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
@require_GET
def staff_tenant_list(request: HttpRequest) -> HttpResponse:
    """Staff: every tenant with its number of instances and members."""
    access = access_for(request)
    if not access.is_staff_role:
        raise Http404
    return render(
        request, "tenants/staff_tenants.html", {"tenants": tenant_list_with_counts(access)}
    )
