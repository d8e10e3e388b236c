"""Pages of managed hosts, for platform admins: list, enrol, detail, trust a key, provision.

Thin like the other views: the selectors read (``Host.objects.for_user`` sees nothing for anyone
but platform admins), forms check input, and the same services as the API do the work.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from panel.access import Access, access_for
from panel.htmx import HTMX_STOP_POLLING, htmx_targets
from panel.operations import OperationConflict
from provisioning import hosts
from provisioning.forms import errors_onto_form
from provisioning.host_forms import HostEnrolForm, HostTrustForm
from provisioning.models import Host, Operation, OperationKind
from provisioning.selectors import host_get, host_list, operation_by_idempotency_key

RECENT_OPERATIONS = 10


def _admin_access(request: HttpRequest) -> Access:
    access = access_for(request)
    if not access.is_platform_admin:
        raise PermissionDenied("Only platform administrators manage hosts.")
    return access


def _new_idempotency_key() -> str:
    return f"ui-{uuid.uuid4().hex}"


def _posted_idempotency_key(request: HttpRequest) -> str:
    return (request.POST.get("idempotency_key") or "").strip()[:100]


def _conflict_message(running: Operation) -> str:
    return format_html(
        'Another operation is already running on this host: <a href="{}">{} ({})</a>. '
        "Wait for it to finish or cancel it, then try again.",
        reverse("provisioning:operation_detail", args=[running.id]),
        OperationKind(running.kind).label if running.kind in OperationKind.values else running.kind,
        running.get_status_display(),
    )


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
        "idempotency_key": _new_idempotency_key(),
        "warning_percent": settings.PANEL_HOST_DISK_WARNING_PERCENT,
    }
    context.update(extra)
    return context


@login_required
@require_GET
def host_list_view(request: HttpRequest) -> HttpResponse:
    """Every managed host with its role, address, status and disk warning."""
    access = _admin_access(request)
    rows = list(host_list(access))
    return render(request, "provisioning/host_list.html", {
        "hosts": rows,
        "warnings": sum(1 for h in rows if h.disk_warning),
        "warning_percent": settings.PANEL_HOST_DISK_WARNING_PERCENT,
    })


@login_required
def host_enrol_view(request: HttpRequest) -> HttpResponse:
    """Enrol a host; first contact runs at once and the detail page shows the key to confirm."""
    access = _admin_access(request)
    backup_hosts = host_list(access).filter(role=Host.Role.BACKUP)
    status = 200
    if request.method == "POST":
        key = _posted_idempotency_key(request)
        already = operation_by_idempotency_key(access, key)
        if already is not None and already.host_id:
            return redirect("hosts:detail", pk=already.host_id)
        form = HostEnrolForm(request.POST, backup_hosts=backup_hosts)
        if form.is_valid():
            data = form.cleaned_data
            try:
                operation = hosts.host_enrol(
                    actor=access, name=data["name"], role=data["role"],
                    address=data["address"], ssh_port=data["ssh_port"],
                    ssh_user=data["ssh_user"], data_root=data["data_root"],
                    private_address=data["private_address"],
                    peer_ssh_port=data["peer_ssh_port"], backup_host=data["backup_host"],
                    host_key_fingerprint=data["host_key_fingerprint"],
                    root_password=data["root_password"], idempotency_key=key,
                )
            except ValidationError as exc:
                errors_onto_form(form, exc)
            else:
                messages.success(request, f"{data['name']} is enrolled; the panel is fetching "
                                          "its host key.")
                return redirect("hosts:detail", pk=operation.host_id)
        status = 400
    else:
        form = HostEnrolForm(backup_hosts=backup_hosts)
    return render(request, "provisioning/host_form.html", {
        "form": form,
        "idempotency_key": _posted_idempotency_key(request) or _new_idempotency_key(),
    }, status=status)


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
    key = _posted_idempotency_key(request)
    already = operation_by_idempotency_key(access, key)
    if already is not None:
        return redirect("provisioning:operation_detail", pk=already.id)
    form = HostTrustForm(request.POST)
    if form.is_valid():
        try:
            operation = hosts.host_trust_key(
                actor=access, host=host, fingerprint=form.cleaned_data["fingerprint"],
                root_password=form.cleaned_data["root_password"], idempotency_key=key,
            )
        except OperationConflict as exc:
            messages.error(request, _conflict_message(exc.running))
            return redirect("hosts:detail", pk=host.pk)
        except ValidationError as exc:
            errors_onto_form(form, exc)
        else:
            messages.success(request, f"Host key of {host.name} trusted; the panel logs in now.")
            return redirect("provisioning:operation_detail", pk=operation.id)
    host.refresh_from_db()
    return render(request, "provisioning/host_detail.html",
                  _host_context(access, host, trust_form=form), status=400)


def _start(request: HttpRequest, pk: uuid.UUID, start: Any, done: str) -> HttpResponse:
    access = _admin_access(request)
    host = host_get(access, pk)
    key = _posted_idempotency_key(request)
    already = operation_by_idempotency_key(access, key)
    if already is not None:
        return redirect("provisioning:operation_detail", pk=already.id)
    try:
        operation = start(actor=access, host=host, idempotency_key=key)
    except OperationConflict as exc:
        messages.error(request, _conflict_message(exc.running))
        return redirect("hosts:detail", pk=host.pk)
    except ValidationError as exc:
        messages.error(request, " ".join(str(m) for m in exc.messages))
        return redirect("hosts:detail", pk=host.pk)
    messages.success(request, done.format(host=host.name))
    return redirect("provisioning:operation_detail", pk=operation.id)


@login_required
@require_POST
def host_provision_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Provision (or re-check) a host; follow the operation live."""
    return _start(request, pk, hosts.host_provision, "Provisioning of {host} requested.")


@login_required
@require_POST
def host_health_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Check a host's health now."""
    return _start(request, pk, hosts.host_health_check, "Health check of {host} requested.")
