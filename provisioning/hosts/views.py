"""Pages of managed hosts, for platform admins: list, enrol, detail, trust a key, provision.

Thin like the other views: the selectors read (``Host.objects.for_user`` sees nothing for anyone
but platform admins), forms check input, and the same services as the API do the work.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from panel.access import Access, access_for
from panel.htmx import (
    HTMX_STOP_POLLING,
    htmx_targets,
    login_required,
    new_idempotency_key,
    posted_idempotency_key,
    render_paginated,
)
from provisioning.hosts import services
from provisioning.hosts.forms import HostEnrolForm, HostTrustForm
from provisioning.models import Host, Operation, OperationKind
from provisioning.operation_pages import operation_post
from provisioning.selectors import host_get, host_list, hosts_disk_warning_count

RECENT_OPERATIONS = 10
HOSTS_PER_PAGE = 25  # as the instance and operation lists
HOST_LIST_FIELDS = (
    "id",
    "name",
    "role",
    "address",
    "ssh_port",
    "ssh_user",
    "status",
    "disk_total_bytes",
    "disk_free_bytes",
    "last_health_at",
)


def _admin_access(request: HttpRequest) -> Access:
    access = access_for(request)
    if not access.is_platform_admin:
        raise PermissionDenied("Only platform administrators manage hosts.")
    return access


def _host_context(access: Access, host: Host, **extra: Any) -> dict[str, Any]:
    operations = list(host.operations.select_related("requested_by")[:RECENT_OPERATIONS])
    active = next((op for op in operations if not op.is_terminal), None)
    awaiting_trust = bool(host.seen_host_key_fingerprint) and (
        host.seen_host_key_fingerprint != host.host_key_fingerprint
    )
    facts = dict(host.facts or {})
    context = {
        "host": host,
        "operations": operations,
        "active_operation": active,
        "connecting": active is not None and active.kind == OperationKind.HOST_CONNECT,
        "awaiting_trust": awaiting_trust,
        "trust_form": extra.pop("trust_form", None) or HostTrustForm(),
        "can_provision": bool(host.host_key_fingerprint) and host.status != Host.Status.RETIRED,
        "health": facts.pop("health", None),
        "facts": {k: v for k, v in sorted(facts.items()) if not isinstance(v, dict | list)},
        "app_hosts": list(host.app_hosts.all()) if host.role == Host.Role.BACKUP else [],
        "idempotency_key": new_idempotency_key(),
        "warning_percent": settings.PANEL_HOST_DISK_WARNING_PERCENT,
    }
    context.update(extra)
    return context


@login_required
@require_GET
def host_list_view(request: HttpRequest) -> HttpResponse:
    """The managed hosts, a page at a time, with role, address, status and disk warning; the
    warning above the table counts every host's disk, not only this page's."""
    access = _admin_access(request)
    hosts = host_list(access)
    # Only the columns the table shows: no keys, facts or backup host read for a list.
    rows = hosts.select_related(None).only(*HOST_LIST_FIELDS)
    return render_paginated(
        request,
        rows,
        per_page=HOSTS_PER_PAGE,
        name="hosts",
        page="provisioning/host_list.html",
        partial="provisioning/_host_table.html",
        target_id="host-table",
        context={
            "warnings": hosts_disk_warning_count(hosts),
            "warning_percent": settings.PANEL_HOST_DISK_WARNING_PERCENT,
        },
    )


@login_required
def host_enrol_view(request: HttpRequest) -> HttpResponse:
    """Enrol a host; first contact runs at once and the detail page shows the key to confirm."""
    access = _admin_access(request)
    backup_hosts = host_list(access).filter(role=Host.Role.BACKUP)
    status = 200
    if request.method == "POST":
        form = HostEnrolForm(request.POST, backup_hosts=backup_hosts)

        def start(key: str) -> Operation:
            data = form.cleaned_data
            return services.host_enrol(
                actor=access,
                name=data["name"],
                role=data["role"],
                address=data["address"],
                ssh_port=data["ssh_port"],
                ssh_user=data["ssh_user"],
                data_root=data["data_root"],
                private_address=data["private_address"],
                peer_ssh_port=data["peer_ssh_port"],
                backup_host=data["backup_host"],
                host_key_fingerprint=data["host_key_fingerprint"],
                root_password=data["root_password"],
                idempotency_key=key,
            )

        response = operation_post(
            request,
            access=access,
            start=start,
            form=form,
            done=lambda _: (
                f"{form.cleaned_data['name']} is enrolled; the panel is fetching its host key."
            ),
            # The host page shows first contact and the key to confirm.
            next_url=lambda op: reverse("hosts:detail", args=[op.host_id]),
        )
        if response is not None:
            return response
        status = 400
    else:
        form = HostEnrolForm(backup_hosts=backup_hosts)
    return render(
        request,
        "provisioning/host_form.html",
        {
            "form": form,
            "idempotency_key": posted_idempotency_key(request) or new_idempotency_key(),
        },
        status=status,
    )


@login_required
@require_GET
def host_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """One host: status, key to confirm, facts, health, the panel's public key, operations.

    While first contact runs, the key panel polls this page (htmx) and stops once it ended.
    """
    access = _admin_access(request)
    host = host_get(access, pk)
    context = _host_context(access, host)
    if htmx_targets(request, "host-key-panel"):
        status = 200 if context["connecting"] else HTMX_STOP_POLLING
        response = render(request, "provisioning/_host_key_panel.html", context, status=status)
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "provisioning/host_detail.html", context)


@login_required
@require_POST
def host_trust_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Confirm the fingerprint seen on first contact; the panel then pins it and logs in."""
    access = _admin_access(request)
    host = host_get(access, pk)
    form = HostTrustForm(request.POST)
    response = operation_post(
        request,
        access=access,
        form=form,
        back=reverse("hosts:detail", args=[host.pk]),
        start=lambda key: services.host_trust_key(
            actor=access,
            host=host,
            fingerprint=form.cleaned_data["fingerprint"],
            root_password=form.cleaned_data["root_password"],
            idempotency_key=key,
        ),
        done=f"Host key of {host.name} trusted; the panel logs in now.",
    )
    if response is not None:
        return response
    host.refresh_from_db()
    return render(
        request,
        "provisioning/host_detail.html",
        _host_context(access, host, trust_form=form),
        status=400,
    )


def _start(request: HttpRequest, pk: uuid.UUID, start: Any, done: str) -> HttpResponse:
    access = _admin_access(request)
    host = host_get(access, pk)
    back = reverse("hosts:detail", args=[host.pk])
    return operation_post(
        request,
        access=access,
        back=back,
        done=done.format(host=host.name),
        start=lambda key: start(actor=access, host=host, idempotency_key=key),
    ) or redirect(back)


@login_required
@require_POST
def host_provision_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Provision (or re-check) a host; follow the operation live."""
    return _start(request, pk, services.host_provision, "Provisioning of {host} requested.")


@login_required
@require_POST
def host_health_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Check a host's health now."""
    return _start(request, pk, services.host_health_check, "Health check of {host} requested.")
