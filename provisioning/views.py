"""Pages of the provisioning app: dashboard, instances, their lifecycle, licenses, operations.

Views are thin: selectors read (always scoped to the caller, so another tenant's object is a
404), forms check input, services do the work. Mutations are POST-only and CSRF-protected.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from panel.access import Access, access_for
from panel.forms import errors_onto_form
from panel.htmx import (
    HTMX_STOP_POLLING,
    htmx_targets,
    login_required,
    new_idempotency_key,
    posted_idempotency_key,
    render_page_or_partial,
)
from panel.operations import (
    operation_cancel,
    operation_cancel_allowed,
    registered_kinds,
)
from provisioning.forms import (
    ACTION_FORMS,
    InstanceCreateForm,
    InstanceFilterForm,
    LicenseAddForm,
    OperationFilterForm,
)
from provisioning.logs import LOG_SERVICES, LogsUnavailable, instance_logs, logs_params
from provisioning.models import AtlassianInstance, Operation, OperationKind, OperationStatus
from provisioning.operation_pages import operation_post
from provisioning.selectors import (
    dashboard_instances,
    dashboard_summary,
    instance_database_setup,
    instance_get,
    instance_search,
    license_list,
    operation_get,
    operation_list,
    operation_steps,
    operations_active,
)
from provisioning.services import (
    ACTION_ALLOWED_FROM,
    INSTANCE_ACTIONS,
    instance_create,
    instance_db_password_reveal,
    instance_outbound_enable,
    license_add,
)
from tenants.selectors import tenants_administered
from tenants.tiers import objectives_for

PAGE_SIZE = 25

ACTION_LABELS = {
    "start": "Start",
    "stop": "Stop",
    "restart": "Restart",
    "upgrade": "Upgrade",
    "resize": "Heap change",
    "delete": "Delete",
    "retry": "Retry of the rollout",
}


def _action_available(action: str) -> bool:
    """Whether this panel has a handler for the operation ``action`` starts."""
    kind = OperationKind.INSTANCE_CREATE if action == "retry" else f"instance.{action}"
    return kind in registered_kinds()


def _can_change_operation(access: Access, operation: Operation) -> bool:
    """Tenant admins and staff may cancel a tenant's operations, but restores and drills only
    staff; host ones are platform admins' only (one rule: ``operation_cancel_allowed``)."""
    return operation_cancel_allowed(access, operation)


def _shows_tenant(access: Access) -> bool:
    """Lists name each row's tenant when the caller sees more than one."""
    return access.tenant_ids is None or len(access.tenant_ids) > 1


# --- dashboard ------------------------------------------------------------------------------


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """What a tenant has and what needs attention: instances, expiring licenses, busy work."""
    access = access_for(request)
    summary = dashboard_summary(access)
    context = {
        "summary": summary,
        "instances": dashboard_instances(access),
        "instance_total": summary["instance_count"],
        "licenses_expiring": summary["licenses_expiring_within"],
        "active_operations": operations_active(access)[:10],
        "can_create": tenants_administered(access).exists(),
        "show_tenant": _shows_tenant(access),
    }
    return render(request, "provisioning/dashboard.html", context)


# --- instances ------------------------------------------------------------------------------


def _instance_page(
    request: HttpRequest, *, across_tenants: bool, page: str, target_id: str
) -> HttpResponse:
    access = access_for(request)
    form = InstanceFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {"q": "", "status": ""}
    instances = instance_search(
        access, q=filters["q"], status=filters["status"], across_tenants=across_tenants
    )
    page_obj = Paginator(instances, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filter_form": form,
        "page_obj": page_obj,
        "instances": page_obj.object_list,
        "filtered": bool(filters["q"] or filters["status"]),
        "show_tenant": across_tenants or _shows_tenant(access),
        "can_create": tenants_administered(access).exists(),
        "table_id": target_id,
    }
    return render_page_or_partial(
        request,
        page=page,
        partial="provisioning/_instance_table.html",
        target_id=target_id,
        context=context,
    )


@login_required
@require_GET
def instance_list_view(request: HttpRequest) -> HttpResponse:
    """Instances of the caller's tenants, searchable by name or hostname and by status."""
    return _instance_page(
        request,
        across_tenants=False,
        page="provisioning/instance_list.html",
        target_id="instance-table",
    )


@login_required
@require_GET
def staff_instance_search(request: HttpRequest) -> HttpResponse:
    """Staff: find any instance by name, hostname or tenant."""
    if not access_for(request).is_staff_role:
        raise Http404
    return _instance_page(
        request,
        across_tenants=True,
        page="provisioning/staff_instances.html",
        target_id="instance-table",
    )


ACTIVE_STATUSES = (OperationStatus.PENDING, OperationStatus.RUNNING)


def _recent_and_active_operations(
    operations: QuerySet, limit: int = 10
) -> tuple[list[Operation], Operation | None]:
    """The ``limit`` newest of ``operations`` and the newest of them still pending or running,
    in one query: each row carries the active operation's id (an uncorrelated subquery the
    database evaluates once). The active one is nearly always among the newest; only when it
    is older than all of them is it read apart, by its id."""
    newest_active = operations.filter(status__in=ACTIVE_STATUSES).order_by("-created_at")
    recent = list(
        operations.annotate(active_id=Subquery(newest_active.values("pk")[:1])).order_by(
            "-created_at"
        )[:limit]
    )
    active_id = recent[0].active_id if recent else None
    if active_id is None:
        return recent, None
    active = next((op for op in recent if op.pk == active_id), None)
    if active is None:
        active = operations.filter(pk=active_id).first()
    return recent, active


def _instance_context(access: Access, instance: AtlassianInstance, **forms: Any) -> dict[str, Any]:
    can_manage = access.administers_tenant(instance.tenant_id)
    allowed = {
        action
        for action, statuses in ACTION_ALLOWED_FROM.items()
        if instance.status in statuses and _action_available(action)
    }
    # The page shows each operation's kind, status, requester and time: no joined instance
    # (this one), tenant, host or token rows to build, nor their secrets to decrypt, per
    # operation (the table names no tenant here).
    operations = (
        operation_list(access)
        .filter(instance=instance)
        .select_related(None)
        .select_related("requested_by")
    )
    recent, active = _recent_and_active_operations(operations)
    context: dict[str, Any] = {
        "instance": instance,
        # Each license's own columns only: the page is the instance's, not the license's.
        "licenses": license_list(access).select_related(None).filter(instance=instance),
        "operations": recent,
        "active_operation": active,
        "objectives": objectives_for(instance.tier),
        "can_manage": can_manage,
        "allowed_actions": allowed if can_manage else set(),
        "idempotency_key": new_idempotency_key(),
        "database_setup": instance_database_setup(instance),
    }
    if can_manage:
        for action in ("upgrade", "resize", "delete"):
            context[f"{action}_form"] = forms.get(f"{action}_form") or ACTION_FORMS[action](
                instance=instance
            )
        context["license_form"] = forms.get("license_form") or LicenseAddForm()
    return context


@login_required
@require_GET
def instance_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """One instance: its facts, licenses, recent operations and (for admins) its actions."""
    access = access_for(request)
    instance = instance_get(access, pk)
    return render(request, "provisioning/instance_detail.html", _instance_context(access, instance))


@login_required
@require_GET
def instance_logs_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The newest lines of the instance's app or database container (an htmx panel of its
    page; with ``follow=1`` it polls itself every few seconds until told to stop)."""
    access = access_for(request)
    instance = instance_get(access, pk)
    params = logs_params(request.GET)
    context: dict[str, Any] = {"instance": instance, "services": LOG_SERVICES}
    if isinstance(params, str):
        return render(
            request, "provisioning/_instance_logs.html", {**context, "error": params}, status=400
        )
    context.update(service=params[0], lines=params[1], follow=request.GET.get("follow") == "1")
    try:
        context["logs"] = instance_logs(instance, service=params[0], lines=params[1])
    except LogsUnavailable as exc:
        context["error"] = str(exc)
    response = render(request, "provisioning/_instance_logs.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
def instance_create_view(request: HttpRequest) -> HttpResponse:
    """Tenant admins and staff create an instance; its rollout is an operation to watch."""
    access = access_for(request)
    tenants = tenants_administered(access)
    if not tenants.exists():
        raise PermissionDenied("Only tenant administrators can create instances.")
    if request.method == "GET" and htmx_targets(request, "id_version"):
        # The product select asks for the versions of the product just chosen.
        form = InstanceCreateForm(
            initial={"product": request.GET.get("product")}, tenants=tenants, access=access
        )
        return render(request, "provisioning/_version_select.html", {"form": form})
    if request.method == "POST":
        form = InstanceCreateForm(request.POST, tenants=tenants, access=access)

        def start(key: str) -> Operation:
            data = form.cleaned_data
            return instance_create(
                actor=access,
                tenant=data["tenant"],
                name=data["name"],
                product=data["product"],
                version=data["version"],
                hostname=data["hostname"],
                context_path=data["context_path"],
                heap_min_mb=data["heap_min_mb"],
                heap_max_mb=data["heap_max_mb"],
                tier=data["tier"] or None,
                idempotency_key=key,
            )

        response = operation_post(
            request,
            access=access,
            start=start,
            form=form,
            done=lambda _: (
                f"{form.cleaned_data['name']} is being created; follow its rollout below."
            ),
        )
        if response is not None:
            return response
    else:
        initial: dict[str, Any] = {}
        if request.GET.get("product"):
            initial["product"] = request.GET["product"]
        if tenants.count() == 1:
            initial["tenant"] = tenants.first()
        form = InstanceCreateForm(initial=initial, tenants=tenants, access=access)
    return render(
        request,
        "provisioning/instance_form.html",
        {
            "form": form,
            "idempotency_key": posted_idempotency_key(request) or new_idempotency_key(),
        },
    )


@login_required
@require_POST
def instance_action_view(request: HttpRequest, pk: uuid.UUID, action: str) -> HttpResponse:
    """Start, stop, restart, upgrade, resize, delete or retry: each becomes an operation."""
    access = access_for(request)
    instance = instance_get(access, pk)
    if action not in ACTION_FORMS:
        raise Http404
    if not access.administers_tenant(instance.tenant_id):
        raise PermissionDenied("Only the tenant's administrators can change this instance.")
    back = redirect("provisioning:instance_detail", pk=instance.pk)
    if not _action_available(action):
        messages.error(request, f"This panel cannot {action} instances yet.")
        return back
    form = ACTION_FORMS[action](request.POST, instance=instance)

    def start(key: str) -> Operation:
        if not form.is_valid():
            raise ValidationError([error for errors in form.errors.values() for error in errors])
        service = INSTANCE_ACTIONS[action]
        return service(actor=access, instance=instance, idempotency_key=key, **form.params())

    response = operation_post(
        request,
        access=access,
        start=start,
        back=back.url,
        done=f"{ACTION_LABELS[action]} of {instance.name} requested.",
    )
    return response or back  # with a ``back`` there is always a response


@login_required
@require_POST
def instance_outbound_enable_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Staff turn a copy's mail back on (a rollout without the mail-off flags; audited)."""
    access = access_for(request)
    instance = instance_get(access, pk)
    if not access.is_staff_role:
        raise Http404  # a staff page: customers do not learn it exists
    back = redirect("provisioning:instance_detail", pk=instance.pk)
    response = operation_post(
        request,
        access=access,
        start=lambda key: instance_outbound_enable(
            actor=access, instance=instance, idempotency_key=key
        ),
        back=back.url,
        done=f"Mail of {instance.name} is being turned back on.",
    )
    return response or back


@login_required
@require_POST
def instance_db_password_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Show the database password to type into Crowd's setup wizard (audited; a POST, so a
    link or a prefetch never reveals it)."""
    access = access_for(request)
    instance = instance_get(access, pk)
    try:
        password = instance_db_password_reveal(actor=access, instance=instance)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("provisioning:instance_detail", pk=instance.pk)
    if htmx_targets(request, "crowd-db-password"):
        context: dict[str, Any] = {"instance": instance, "db_password": password}
        response = render(request, "provisioning/_db_password.html", context)
    else:
        context = _instance_context(access, instance)
        context["db_password"] = password
        response = render(request, "provisioning/instance_detail.html", context)
    response["Cache-Control"] = "no-store"  # a secret: never kept by a browser or a proxy
    return response


@login_required
@require_POST
def license_add_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Attach a pasted license key to an instance (its facts decoded or typed by hand)."""
    access = access_for(request)
    instance = instance_get(access, pk)
    if not access.administers_tenant(instance.tenant_id):
        raise PermissionDenied("Only the tenant's administrators can add licenses.")
    form = LicenseAddForm(request.POST)
    if form.is_valid():
        try:
            lic = license_add(
                actor=access,
                instance=instance,
                key=form.cleaned_data["key"],
                facts=form.facts(),
            )
        except ValidationError as exc:
            errors_onto_form(form, exc)
        else:
            how = (
                "decoded from the key"
                if lic.decode_status == lic.DecodeStatus.DECODED
                else ("entered by hand (the key could not be decoded)")
            )
            messages.success(request, f"License added to {instance.name}; its facts were {how}.")
            return redirect("provisioning:instance_detail", pk=instance.pk)
    context = _instance_context(access, instance, license_form=form)
    context["license_form_open"] = True
    return render(request, "provisioning/instance_detail.html", context)


# --- operations -----------------------------------------------------------------------------


@login_required
@require_GET
def operation_list_view(request: HttpRequest) -> HttpResponse:
    """Operations the caller sees, newest first, filterable by status."""
    access = access_for(request)
    form = OperationFilterForm(request.GET)
    status = form.cleaned_data["status"] if form.is_valid() else ""
    operations = operation_list(access)
    if status == "active":
        operations = operations.filter(status__in=["pending", "running"])
    elif status:
        operations = operations.filter(status=status)
    page_obj = Paginator(operations, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filter_form": form,
        "page_obj": page_obj,
        "operations": page_obj.object_list,
        "filtered": bool(status),
        "show_tenant": _shows_tenant(access),
    }
    return render_page_or_partial(
        request,
        page="provisioning/operation_list.html",
        partial="provisioning/_operation_table.html",
        target_id="operation-table",
        context=context,
    )


def _operation_context(access: Access, operation: Operation, steps: Any) -> dict[str, Any]:
    steps = list(steps)
    return {
        "operation": operation,
        "steps": steps,
        "last_step_id": steps[-1].id if steps else None,
        "can_cancel": not operation.is_terminal and _can_change_operation(access, operation),
    }


@login_required
@require_GET
def operation_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """An operation's status, progress, error and its live step log."""
    access = access_for(request)
    operation = operation_get(access, pk)
    context = _operation_context(access, operation, operation_steps(operation))
    if context["last_step_id"] is None:
        context["last_step_id"] = 0
    return render(request, "provisioning/operation_detail.html", context)


@login_required
@require_GET
def operation_log(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The steps logged after ``?after=<step id>``, polled by the operation page.

    Also refreshes the status header. Once the operation has ended the answer is HTTP 286,
    which tells htmx to stop polling.
    """
    access = access_for(request)
    operation = operation_get(access, pk)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        after = 0
    # The status is read before the steps: a runner logs its last step before it ends the
    # operation, so a terminal status here means every step is already visible below.
    context = _operation_context(access, operation, operation_steps(operation, after_id=after))
    if context["last_step_id"] is None:
        context["last_step_id"] = after
    status = HTMX_STOP_POLLING if operation.is_terminal else 200
    response = render(request, "provisioning/_operation_log_update.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def operation_cancel_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Cancel a pending operation, or ask a running one to stop at its next step."""
    access = access_for(request)
    operation = operation_get(access, pk)
    if not _can_change_operation(access, operation):
        raise PermissionDenied(
            "Only support staff can cancel restores and drills."
            if operation.tenant_id is not None and access.administers_tenant(operation.tenant_id)
            else "Only the tenant's administrators can cancel this operation."
        )
    if operation.is_terminal:
        messages.info(request, f"This operation already ended ({operation.get_status_display()}).")
    else:
        operation = operation_cancel(operation, actor=access)
        if operation.status == OperationStatus.CANCELLED:
            messages.success(request, "Cancelled before it started.")
        else:
            messages.success(request, "Cancel requested; the operation stops at its next step.")
    return redirect("provisioning:operation_detail", pk=operation.pk)
