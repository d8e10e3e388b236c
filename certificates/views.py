"""Pages of the certificates app: the proxy config preview, the Apache export download, and
the actions on an instance's address (renew now, deploy proxy config, publish DNS, check).

Thin: the instance comes from the scoped selector (another tenant's answers 404); actions call
the same services as the API and land on the operation's live page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from certificates import proxy, services
from certificates.models import Certificate, ProxySite
from panel.access import Access, access_for
from panel.htmx import login_required
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
