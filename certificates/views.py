"""Pages of the certificates app: the proxy config preview, the Apache export download, the
actions on an instance's address (renew now, deploy proxy config, publish DNS, check), and the
DNS provider accounts and zones of platform admins (add, change, delete, test the connection).

Thin: the instance comes from the scoped selector (another tenant's answers 404); actions call
the same services as the API and land on the operation's live page. DNS accounts and zones are
platform admins' only (everyone else, support too, gets 403, as on the hosts pages).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certificates import proxy, selectors, services
from certificates.forms import DnsAccountForm, DnsZoneForm
from certificates.models import Certificate, ProxySite
from panel.access import Access, access_for
from panel.forms import errors_onto_form, validation_error_text
from panel.htmx import htmx_targets, login_required
from provisioning.operation_pages import operation_post
from provisioning.selectors import instance_get


@login_required
@require_GET
def instance_proxy_config(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The nginx site as deployed (or as it would be rendered) and the Apache export."""
    access = access_for(request)
    instance = instance_get(access, pk)
    site = ProxySite.objects.for_user(access).filter(instance=instance).first()
    if site is not None and site.config:
        nginx = site.config
    else:
        cert = Certificate.objects.for_user(access).filter(
            instance=instance
        ).first() or Certificate(instance=instance, names=[instance.hostname])
        nginx = proxy.site_render(instance, cert)
    return render(
        request,
        "certificates/proxy_config.html",
        {
            "instance": instance,
            "site": site,
            "nginx": nginx,
            "apache": proxy.apache_vhost_render(instance),
        },
    )


@login_required
@require_GET
def instance_apache_export(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Download the Apache httpd virtual host for the instance (seed 002)."""
    instance = instance_get(access_for(request), pk)
    response = HttpResponse(
        proxy.apache_vhost_render(instance), content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{instance.hostname}-apache.conf"'
    return response


def _action(
    request: HttpRequest,
    pk: uuid.UUID,
    *,
    allowed: Callable[[Access, Any], bool],
    start: Callable[..., Any],
) -> HttpResponse:
    """Every button on an instance's address: check the role, then the shared operation POST
    (a double submit lands on the first operation; a busy instance or a refusal is a message
    on the instance page)."""
    access = access_for(request)
    instance = instance_get(access, pk)
    if not allowed(access, instance):
        raise PermissionDenied("You may not do this on this instance.")

    def begin(key: str) -> Any:
        # The services write more than the operation row (a certificate, a site): all or none.
        with transaction.atomic():
            return start(actor=access, instance=instance, idempotency_key=key)

    back = reverse("provisioning:instance_detail", args=[instance.pk])
    return operation_post(request, access=access, start=begin, back=back) or redirect(back)


def _staff(access: Access, instance: Any) -> bool:
    return access.is_staff_role and access.can_write


def _admin(access: Access, instance: Any) -> bool:
    return access.administers_tenant(instance.tenant_id)


@login_required
@require_POST
def instance_certificate_renew(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Renew the instance's certificate now (support staff and platform admins)."""
    return _action(
        request,
        pk,
        allowed=_staff,
        start=services.instance_certificate_renew,
    )


@login_required
@require_POST
def instance_proxy_deploy(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Render and deploy the instance's proxy site again."""
    return _action(
        request,
        pk,
        allowed=_admin,
        start=services.proxy_deploy,
    )


@login_required
@require_POST
def instance_dns_update(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Publish the instance's DNS records again."""
    return _action(
        request,
        pk,
        allowed=_admin,
        start=services.dns_update,
    )


@login_required
@require_POST
def instance_endpoint_check(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Ask for the consistency check now (it runs in the background; read-only)."""
    access = access_for(request)
    instance = instance_get(access, pk)
    if not _admin(access, instance):
        raise PermissionDenied("You may not do this on this instance.")
    services.endpoint_check_request(instance)
    messages.success(request, "The check runs now; reload this page in a few seconds.")
    return redirect("provisioning:instance_detail", pk=instance.pk)


# --- DNS provider accounts and zones (platform admins) ---------------------------------------


def _dns_admin(request: HttpRequest) -> Access:
    """The caller, who must be a platform admin (everyone else, support too: 403)."""
    access = access_for(request)
    if not access.is_platform_admin:
        raise PermissionDenied("Only platform administrators manage DNS provider accounts.")
    return access


@login_required
@require_GET
def dns_overview(request: HttpRequest) -> HttpResponse:
    """Every DNS provider account and managed zone."""
    access = _dns_admin(request)
    return render(
        request,
        "certificates/dns/overview.html",
        {
            "accounts": list(selectors.dns_account_list(access)),
            "zones": list(selectors.dns_zone_list(access)),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def dns_account_create(request: HttpRequest) -> HttpResponse:
    """Add a provider account; its secrets are stored encrypted and never shown again."""
    access = _dns_admin(request)
    form = DnsAccountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            account = services.dns_account_create(
                actor=access,
                name=form.cleaned_data["name"],
                kind=form.cleaned_data["kind"],
                config=form.config(),
                credentials=form.credentials() or {},
            )
        except ValidationError as exc:
            errors_onto_form(form, exc)
        else:
            messages.success(request, f"{account.name} added. Test its connection below.")
            return redirect("certificates:dns_account_detail", pk=account.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "certificates/dns/account_form.html", {"form": form}, status=status)


def _account_page(
    request: HttpRequest,
    access: Access,
    account: Any,
    *,
    form: DnsAccountForm | None = None,
    check: Any = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "account": account,
        "form": form or DnsAccountForm(account=account),
        "zones": list(selectors.dns_zone_list(access).filter(account=account)),
        "check": check,
    }
    return render(request, "certificates/dns/account_detail.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def dns_account_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """One account: change its name, settings or secrets; its zones; test the connection."""
    access = _dns_admin(request)
    account = selectors.dns_account_get(access, pk)
    if request.method == "GET":
        return _account_page(request, access, account)
    form = DnsAccountForm(request.POST, account=account)
    if form.is_valid():
        try:
            services.dns_account_update(
                actor=access,
                account=account,
                name=form.cleaned_data["name"],
                config=form.config(),
                credentials=form.credentials(),
            )
        except ValidationError as exc:
            errors_onto_form(form, exc)
        else:
            messages.success(request, "Account saved.")
            return redirect("certificates:dns_account_detail", pk=account.pk)
    return _account_page(request, access, account, form=form, status=400)


@login_required
@require_POST
def dns_account_check(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Test the account's connection now (read-only lookups at the provider, audited); an
    htmx request gets the result panel, a plain form post the whole page with it."""
    access = _dns_admin(request)
    account = selectors.dns_account_get(access, pk)
    check = services.dns_account_check(actor=access, account=account)
    if htmx_targets(request, "dns-check-result"):
        return render(
            request, "certificates/dns/_check_result.html", {"account": account, "check": check}
        )
    return _account_page(request, access, account, check=check)


@login_required
@require_http_methods(["GET", "POST"])
def dns_account_delete(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Ask, then forget an account that no zone uses."""
    access = _dns_admin(request)
    account = selectors.dns_account_get(access, pk)
    if request.method == "POST":
        try:
            services.dns_account_delete(actor=access, account=account)
        except ValidationError as exc:
            messages.error(request, validation_error_text(exc))
            return redirect("certificates:dns_account_detail", pk=account.pk)
        messages.success(request, f"{account.name} deleted.")
        return redirect("certificates:dns_overview")
    return render(
        request,
        "certificates/dns/confirm_delete.html",
        {
            "what": f"the DNS provider account {account.name}",
            "blocked": account.zones.exists(),
            "blocked_reason": "It still serves zones: delete them first.",
            "back": reverse("certificates:dns_account_detail", args=[account.pk]),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def dns_zone_create(request: HttpRequest) -> HttpResponse:
    """Add a zone the panel manages records in."""
    access = _dns_admin(request)
    accounts = selectors.dns_account_list(access)
    initial = {}
    chosen = request.GET.get("account", "")
    if chosen:
        try:
            initial["account"] = selectors.dns_account_get(access, uuid.UUID(chosen))
        except ValueError:
            raise Http404 from None
    form = DnsZoneForm(
        request.POST if request.method == "POST" else None, accounts=accounts, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            zone = services.dns_zone_create(
                actor=access,
                name=data["name"],
                account=data["account"],
                provider_zone_id=data["provider_zone_id"],
                default_ttl=data["default_ttl"],
                wildcard=data["wildcard"],
            )
        except ValidationError as exc:
            errors_onto_form(form, exc)
        else:
            messages.success(request, f"Zone {zone.name} added.")
            return redirect("certificates:dns_account_detail", pk=zone.account_id)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "certificates/dns/zone_form.html",
        {"form": form, "has_accounts": accounts.exists()},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def dns_zone_delete(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Ask, then forget a zone no instance has records in (nothing changes at the provider)."""
    access = _dns_admin(request)
    zone = selectors.dns_zone_get(access, pk)
    back = reverse("certificates:dns_account_detail", args=[zone.account_id])
    if request.method == "POST":
        try:
            services.dns_zone_delete(actor=access, zone=zone)
        except ValidationError as exc:
            messages.error(request, validation_error_text(exc))
        else:
            messages.success(request, f"Zone {zone.name} deleted.")
        return redirect(back)
    return render(
        request,
        "certificates/dns/confirm_delete.html",
        {
            "what": f"the zone {zone.name}",
            "detail": "The panel stops managing records in it; nothing changes at the provider.",
            "blocked": zone.records.exists(),
            "blocked_reason": "Instances have DNS records in it.",
            "back": back,
        },
    )
