"""Pages of the notifications app: who is told about what (per tenant, or platform staff), a
test notification, and the delivery log."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from notifications.forms import NotificationPreferenceForm
from notifications.selectors import delivery_list, notification_tenants_readable
from notifications.services import (
    NotificationThrottled,
    notification_preference_update,
    notification_send_test,
    preference_for,
)
from panel.access import access_for
from panel.htmx import login_required, render_page_or_partial
from tenants.selectors import manages_tenant, tenant_list

PLATFORM = "platform"


def _notification_audience(
    request: HttpRequest, raw: str, *, change: bool = False
) -> tuple[Any, list[tuple[str, str]]]:
    """The tenant (None: platform staff) whose notifications the caller opens, and the
    choices of the switcher. Another tenant's id is a 404; a tenant the caller only reads, 403.

    Tenant admins read and change their tenants'; platform admins every tenant's and the
    platform's; support staff read every tenant's but change none (``change``: a write).
    """
    access = access_for(request)
    tenants = list(notification_tenants_readable(access))
    choices = [(str(t.pk), t.name) for t in tenants]
    if access.is_platform_admin and access.can_write:
        choices.insert(0, (PLATFORM, "Platform staff (host events)"))
    if raw == PLATFORM and access.is_platform_admin and access.can_write:
        return None, choices
    if raw:
        try:
            tenant_id = uuid.UUID(raw)
        except ValueError:
            raise Http404 from None
        tenant = get_object_or_404(tenant_list(access), pk=tenant_id)
        if not any(t.pk == tenant.pk for t in tenants):
            raise PermissionDenied("Only the tenant's administrators choose its notifications.")
    elif not choices:
        raise PermissionDenied("Only tenant administrators choose notifications.")
    else:
        first = choices[0][0]
        if first == PLATFORM:
            return None, choices
        tenant = next(t for t in tenants if str(t.pk) == first)
    if change and not manages_tenant(access, tenant.pk):
        raise PermissionDenied(
            "Only the tenant's administrators change its notifications; support reads them."
        )
    return tenant, choices


def _audience_value(tenant: Any) -> str:
    return PLATFORM if tenant is None else str(tenant.pk)


@login_required
@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    """Tenant admins choose who is told about which events, by email and signed webhook."""
    access = access_for(request)
    raw = (request.POST.get("tenant") if request.method == "POST" else None) or request.GET.get(
        "tenant", ""
    )
    tenant, choices = _notification_audience(request, raw, change=request.method == "POST")
    preference = preference_for(tenant)
    is_platform = tenant is None
    status = 200
    if request.method == "POST":
        form = NotificationPreferenceForm(request.POST, preference=preference, platform=is_platform)
        if form.is_valid():
            data = form.cleaned_data
            try:
                notification_preference_update(
                    actor=access,
                    tenant=tenant,
                    email_enabled=data["email_enabled"],
                    recipients=data["recipients"],
                    events=data["events"],
                    webhook_enabled=data["webhook_enabled"],
                    webhook_url=data["webhook_url"],
                    webhook_secret=data["webhook_secret"],
                )
            except ValidationError as exc:
                if hasattr(exc, "error_dict"):
                    for field, errors in exc.error_dict.items():
                        form.add_error(field if field in form.fields else None, errors)
                else:
                    form.add_error(None, exc)
            else:
                messages.success(request, "Notification settings saved.")
                response = redirect("notifications:notification_settings")
                response["Location"] += f"?tenant={_audience_value(tenant)}"
                return response
        status = 400
    else:
        form = NotificationPreferenceForm(preference=preference, platform=is_platform)
    return _settings_page(request, tenant, choices, form=form, status=status)


def _settings_page(
    request: HttpRequest,
    tenant: Any,
    choices: list[tuple[str, str]],
    *,
    form: Any = None,
    status: int = 200,
) -> HttpResponse:
    access = access_for(request)
    preference = preference_for(tenant)
    if form is None:
        form = NotificationPreferenceForm(preference=preference, platform=tenant is None)
    context = {
        "form": form,
        "can_change": tenant is None or manages_tenant(access, tenant.pk),
        "tenant": tenant,
        "audience": _audience_value(tenant),
        "audience_name": tenant.name if tenant is not None else "platform staff",
        "choices": choices,
        "preference": preference,
        "deliveries": delivery_list(access, tenant)[:10],
    }
    return render(request, "notifications/notification_settings.html", context, status=status)


@login_required
@require_POST
def notification_test(request: HttpRequest) -> HttpResponse:
    """Send a test notification through every channel the tenant set up (a few per hour)."""
    access = access_for(request)
    tenant, choices = _notification_audience(request, request.POST.get("tenant", ""), change=True)
    response = redirect("notifications:notification_settings")
    response["Location"] += f"?tenant={_audience_value(tenant)}"
    try:
        notification = notification_send_test(actor=access, tenant=tenant)
    except NotificationThrottled as exc:
        # The settings page again, with the reason, as a 429 that says when to try again.
        messages.error(request, str(exc))
        refused = _settings_page(request, tenant, choices, status=429)
        refused["Retry-After"] = str(exc.wait)
        return refused
    sent = notification.deliveries.count()
    if sent:
        messages.success(
            request,
            f"Test notification queued on {sent} channel{'s' if sent != 1 else ''}; "
            "its delivery shows below.",
        )
    else:
        messages.warning(request, "Nothing was sent: turn on email or a webhook first.")
    return response


@login_required
@require_GET
def notification_delivery_list(request: HttpRequest) -> HttpResponse:
    """Every delivery attempt series of a tenant's notifications: when, where, outcome."""
    access = access_for(request)
    tenant, choices = _notification_audience(request, request.GET.get("tenant", ""))
    page_obj = Paginator(delivery_list(access, tenant), 25).get_page(request.GET.get("page"))
    return render_page_or_partial(
        request,
        page="notifications/notification_deliveries.html",
        partial="notifications/_notification_delivery_table.html",
        target_id="delivery-table",
        context={
            "tenant": tenant,
            "audience": _audience_value(tenant),
            "audience_name": tenant.name if tenant is not None else "platform staff",
            "choices": choices,
            "page_obj": page_obj,
            "deliveries": page_obj.object_list,
        },
    )
