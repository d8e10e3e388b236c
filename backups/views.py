"""Pages of the backups app: an instance's backups (points, size chart, RPO, point-in-time
recovery), an extra backup, restore requests (customers), restores of a point or to a time and
policies (staff), the DR dashboard and drills, and the evacuation of a failed app host (staff).

Thin: selectors read through ``for_user`` (another tenant's instance is a 404), services do the
work and audit it, remote work is an Operation whose live log is the operation page.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from backups import selectors, services
from backups.evacuate import host_evacuate_start
from backups.forms import (
    BackupStartForm,
    HostEvacuateForm,
    PolicyForm,
    RequestHandleForm,
    RestoreForm,
    RestoreRequestForm,
    RestoreToTimeForm,
)
from backups.models import BackupPolicy, RestoreMode, RestoreRequest
from backups.policies import policy_defaults
from panel.access import Access, access_for
from panel.forms import errors_onto_form
from panel.htmx import login_required, new_idempotency_key, posted_idempotency_key
from provisioning.hosts.fence import fenced_copies_purge_start
from provisioning.models import AtlassianInstance, Host, Operation
from provisioning.operation_pages import operation_post
from provisioning.selectors import instance_get


def _require_staff(access: Access) -> None:
    """Staff pages answer 404 to customers, like every staff page of the panel."""
    if not access.is_staff_role:
        raise Http404


def _recovery(instance: AtlassianInstance, summary: dict) -> dict:
    """The point-in-time panel's facts: :func:`selectors.recovery_state` and whether the WAL
    lag is over the tier's RPO. With archiving off the panel says only that it is off (and
    offers to turn it on): the archive, the window and the base backups (four queries) are
    read only for an instance that archives its WAL."""
    if not instance.wal_archiving:
        return {
            "instance": instance.pk,
            "wal_archiving": False,
            "window_start": None,
            "window_end": None,
            "over_rpo": False,
        }
    state = selectors.recovery_state(instance)
    lag = state["lag_seconds"]
    state["over_rpo"] = lag is not None and lag > summary["rpo"]["rpo"].total_seconds()
    return state


def _page_context(
    access: Access,
    instance: AtlassianInstance,
    *,
    restore_time_form: RestoreToTimeForm | None = None,
    **extra: object,
) -> dict:
    summary = selectors.instance_backup_summary(access, instance)
    # The page reads only the points' own columns (the restore request's choices, the table of
    # attempts): no joined instance, tenant and backup host per row.
    points = selectors.instance_points(access, instance).select_related(None)
    recovery = _recovery(instance, summary)
    try:
        services.backup_check_possible(instance)
        backup_blocked = ""
    except ValidationError as exc:
        backup_blocked = " ".join(exc.messages)
    return {
        "instance": instance,
        # Why "Start backup" cannot work now (shown beside the disabled button), or "".
        "backup_blocked": backup_blocked,
        "has_points": bool(summary["points"]),
        "summary": summary,
        "attempts": selectors.backup_list(access)
        .filter(instance=instance)
        .select_related(None)[:100],
        # The tables below show each row's own columns, the name of a restore's source and a
        # request's point: no joined instance (this one) to build and decrypt per row.
        "restores": selectors.restore_list(access)
        .select_related(None)
        .filter(instance=instance)
        .annotate(source_name=F("source__name"))[:20],
        "drills": selectors.drill_list(access).select_related(None).filter(instance=instance)[:10],
        "requests": selectors.restore_request_list(access)
        .select_related(None)
        .filter(instance=instance)
        .annotate(backup_point_name=F("backup__point_name"))[:10],
        "can_manage": access.administers_tenant(instance.tenant_id),
        "is_staff": access.is_staff_role,
        "start_form": BackupStartForm(),
        "request_form": RestoreRequestForm(points=points),
        "recovery": recovery,
        "can_recover": access.is_staff_role and access.can_write,
        "restore_time_form": RestoreToTimeForm(
            window_start=recovery["window_start"], hosts=_copy_hosts(instance)
        )
        if restore_time_form is None
        else restore_time_form,
        "idempotency_key": new_idempotency_key(),
        **extra,
    }


@login_required
@require_GET
def instance_backups(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Every backup point of an instance (dates, sizes, status, a size chart), its RPO state,
    last and next backup; an extra backup and a restore request for tenant admins."""
    access = access_for(request)
    instance = instance_get(access, pk)
    return render(request, "backups/instance_backups.html", _page_context(access, instance))


@login_required
@require_POST
def backup_start_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Tenant admins (and staff) start an extra backup now."""
    access = access_for(request)
    instance = instance_get(access, pk)
    if not access.administers_tenant(instance.tenant_id):
        raise PermissionDenied("Only the tenant's administrators can start a backup.")
    back = reverse("backups:instance_backups", args=[instance.pk])
    form = BackupStartForm(request.POST)

    def start(key: str) -> Operation:
        if not form.is_valid():
            raise ValidationError("Choose hot or cold.")
        return services.backup_start(
            actor=access,
            instance=instance,
            mode=form.cleaned_data["mode"] or None,
            idempotency_key=key,
        )

    return operation_post(
        request,
        access=access,
        start=start,
        back=back,
        done=f"Backup of {instance.name} started.",
    ) or redirect(back)


@login_required
@require_POST
def restore_request_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Tenant admins ask support to restore a point; support sees it on its request list."""
    access = access_for(request)
    instance = instance_get(access, pk)
    if not access.administers_tenant(instance.tenant_id):
        raise PermissionDenied("Only the tenant's administrators can request a restore.")
    form = RestoreRequestForm(request.POST, points=selectors.instance_points(access, instance))
    if form.is_valid():
        services.restore_request_create(
            actor=access,
            instance=instance,
            backup=form.cleaned_data["backup"],
            note=form.cleaned_data["note"],
        )
        messages.success(request, "Restore requested: support will contact you.")
    else:
        messages.error(request, "Choose one of the listed points.")
    return redirect("backups:instance_backups", pk=instance.pk)


def _copy_hosts(instance: AtlassianInstance) -> QuerySet:
    """Ready app hosts a copy of ``instance`` can go to: those of its backup host (the service
    checks the chosen one's room)."""
    backup_host_id = instance.host.backup_host_id if instance.host is not None else None
    return Host.objects.filter(
        role=Host.Role.APP, status=Host.Status.READY, backup_host_id=backup_host_id
    ).order_by("name")


def _restore_targets(access: Access, points: QuerySet) -> list[selectors.RestoreTarget]:
    """The hosts a copy of any listed point can go to (one list per backup host the points are
    on; the service checks the chosen point's own backup host and the host's room again)."""
    targets: dict[uuid.UUID, selectors.RestoreTarget] = {}
    for backup_host_id in set(points.values_list("backup_host_id", flat=True)):
        point = points.filter(backup_host_id=backup_host_id).first()
        if point is not None:
            for target in selectors.restore_target_hosts(access, point):
                targets.setdefault(target.host.pk, target)
    return sorted(targets.values(), key=lambda t: t.host.name)


@login_required
def restore_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Staff restore a retained point, in place (typing the name) or into a new instance."""
    access = access_for(request)
    instance = instance_get(access, pk)
    _require_staff(access)
    points = selectors.instance_points(access, instance)
    targets = _restore_targets(access, points)
    if request.method == "POST":
        if not access.can_write:
            raise PermissionDenied
        form = RestoreForm(request.POST, points=points, targets=targets)

        def start(key: str) -> Operation:
            data = form.cleaned_data
            return services.restore_start(
                actor=access,
                backup=data["backup"],
                mode=data["mode"],
                confirm_name=data["confirm_name"],
                name=data["name"],
                hostname=data["hostname"],
                host=data["host"],
                skip_safety=data["skip_safety"],
                idempotency_key=key,
            )

        def done(operation: Operation) -> str:
            data = form.cleaned_data
            if data["mode"] == RestoreMode.IN_PLACE:
                where = "in place"
            else:
                where = f"into {data['name']} on host {operation.params.get('host', '')}"
            return f"Restore of {data['backup'].point_name} {where} started; follow it live below."

        response = operation_post(
            request,
            access=access,
            start=start,
            form=form,
            error_fields={"confirm": "confirm_name"},
            done=done,
        )
        if response is not None:
            return response
    else:
        form = RestoreForm(
            points=points, targets=targets, initial={"backup": request.GET.get("point") or None}
        )
    return render(
        request,
        "backups/restore_form.html",
        {
            "instance": instance,
            "form": form,
            "has_points": points.exists(),
            "idempotency_key": posted_idempotency_key(request) or new_idempotency_key(),
        },
    )


# --- point-in-time recovery (staff) --------------------------------------------------------


def _recovery_instance(request: HttpRequest, pk: uuid.UUID) -> tuple[Access, AtlassianInstance]:
    """The instance of a point-in-time action: another tenant's is a 404 (like a missing one),
    and so is every such action for customers (staff only, as the restore page)."""
    access = access_for(request)
    instance = instance_get(access, pk)
    _require_staff(access)
    return access, instance


@login_required
@require_POST
def wal_enable_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Staff turn on continuous WAL archiving (the database restarts once)."""
    access, instance = _recovery_instance(request, pk)
    back = reverse("backups:instance_backups", args=[instance.pk])
    return operation_post(
        request,
        access=access,
        start=lambda key: services.wal_enable_start(
            actor=access, instance=instance, idempotency_key=key
        ),
        back=back,
        done=f"Point-in-time recovery of {instance.name} is being turned on: its database "
        "restarts once, then the first base backup is taken.",
    ) or redirect(back)


@login_required
@require_POST
def wal_base_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Staff take a base backup now."""
    access, instance = _recovery_instance(request, pk)
    back = reverse("backups:instance_backups", args=[instance.pk])
    return operation_post(
        request,
        access=access,
        start=lambda key: services.wal_base_start(
            actor=access, instance=instance, idempotency_key=key
        ),
        back=back,
        done=f"Base backup of {instance.name} started.",
    ) or redirect(back)


@login_required
def restore_time_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Staff restore an instance in place to a second of its recoverable window. Errors come
    back on the backups page, on the form's fields, with what was typed still in them."""
    access, instance = _recovery_instance(request, pk)
    if request.method != "POST":
        return redirect("backups:instance_backups", pk=instance.pk)
    form = RestoreToTimeForm(
        request.POST,
        window_start=selectors.recovery_window_start(instance),
        hosts=_copy_hosts(instance),
    )

    def start(key: str) -> Operation:
        data = form.cleaned_data
        return services.restore_to_time_start(
            actor=access,
            instance=instance,
            target_time=data["target_time"],
            confirm_name=data["confirm"],
            idempotency_key=key,
            mode=data["mode"],
            name=data["name"],
            hostname=data["hostname"],
            host=data["host"],
        )

    def done(operation: Operation) -> str:
        data = form.cleaned_data
        where = (
            f" into {data['name']} on host {operation.params.get('host', '')}"
            if data["mode"] == RestoreMode.NEW_INSTANCE
            else ""
        )
        return (
            f"Restore of {instance.name} to {data['target_time']:%Y-%m-%d %H:%M:%S} UTC"
            f"{where} started; follow it live below."
        )

    response = operation_post(request, access=access, start=start, form=form, done=done)
    if response is not None:
        return response
    # A new key for the next submit: the posted one may be the reason it was refused.
    return render(
        request,
        "backups/instance_backups.html",
        _page_context(access, instance, restore_time_form=form),
    )


@login_required
def policy_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """An instance's backup policy: everyone who sees the instance reads it, staff change it."""
    access = access_for(request)
    instance = instance_get(access, pk)
    can_edit = access.is_staff_role and access.can_write
    # Reading shows the tier's defaults until a policy exists; only a change creates one.
    policy = BackupPolicy.objects.filter(instance=instance).first() or BackupPolicy(
        instance=instance, **policy_defaults(instance.tier, instance.product)
    )
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Only support staff change backup policies.")
        policy = services.policy_for(instance)
        form = PolicyForm(request.POST, instance=policy)
        if form.is_valid():
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            try:
                policy.refresh_from_db()
                services.policy_update(actor=access, policy=policy, **changes)
            except ValidationError as exc:
                errors_onto_form(form, exc)
            else:
                messages.success(request, f"Backup policy of {instance.name} saved.")
                return redirect("backups:instance_backups", pk=instance.pk)
    else:
        form = PolicyForm(instance=policy)
    if not can_edit:
        for field in form.fields.values():
            field.disabled = True
    return render(
        request,
        "backups/policy_form.html",
        {
            "instance": instance,
            "policy": policy,
            "form": form,
            "can_edit": can_edit,
        },
    )


@login_required
@require_GET
def dr_dashboard_view(request: HttpRequest) -> HttpResponse:
    """Staff: per tier, instances within their RPO, drills run and the worst RTO measured; per
    backup host, the night's predicted makespan against the window (the capacity plan); the
    instances whose WAL is archived, with their lag against the RPO."""
    access = access_for(request)
    _require_staff(access)
    tiers = selectors.dr_dashboard(access)
    # The page lists the instances outside their RPO, not the fleet-wide counts of
    # rpo_overview (the tiers' rows say them): a scan of the fleet less, and none at all when
    # the tiers' counts say that every instance is within.
    outside = any(t["outside_rpo"] for t in tiers)
    return render(
        request,
        "backups/dr_dashboard.html",
        {
            "tiers": tiers,
            "capacity": selectors.dr_capacity_plan(access),
            "overview": {"breaches": selectors.rpo_breaches(access) if outside else []},
            "drills": selectors.drill_list(access)[:25],
            "archives": selectors.wal_archive_overview(access),
            "last_evacuation": selectors.last_evacuation(),
            "hosts_down": list(selectors.hosts_down(access)),
            "open_requests": selectors.restore_request_list(access)
            .filter(status=RestoreRequest.Status.OPEN)
            .count(),
            "idempotency_key": new_idempotency_key(),
        },
    )


@login_required
@require_POST
def drill_start_view(request: HttpRequest) -> HttpResponse:
    """Staff start a drill now (of the least recently drilled instance)."""
    access = access_for(request)
    _require_staff(access)
    back = reverse("backups:dr_dashboard")

    def start(key: str) -> Operation:
        try:
            return services.drill_start(actor=access, idempotency_key=key)
        except PermissionDenied as exc:
            raise ValidationError(str(exc)) from exc

    return operation_post(
        request, access=access, start=start, back=back, done="Restore drill started."
    ) or redirect(back)


@login_required
@require_GET
def restore_requests_view(request: HttpRequest) -> HttpResponse:
    """Staff: customers' restore requests, open first."""
    access = access_for(request)
    _require_staff(access)
    requests_ = selectors.restore_request_list(access).order_by("status", "-created_at")[:200]
    return render(
        request,
        "backups/restore_requests.html",
        {
            "requests": requests_,
            "handle_form": RequestHandleForm(auto_id=False),
        },
    )


@login_required
@require_POST
def restore_request_handle_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    access = access_for(request)
    _require_staff(access)
    item = get_object_or_404(selectors.restore_request_list(access), pk=pk)
    form = RequestHandleForm(request.POST)
    if form.is_valid():
        services.restore_request_handle(
            actor=access,
            request=item,
            status=form.cleaned_data["status"],
            response=form.cleaned_data["response"],
        )
        messages.success(request, "Request updated.")
    return redirect("backups:restore_requests")


# --- evacuation of a failed app host (staff) ------------------------------------------------


def _evacuation_host(request: HttpRequest, pk: uuid.UUID) -> tuple[Access, Host]:
    """The app host of an evacuation page: a 404 for customers (they see no host) and for a
    host that is not an app host."""
    access = access_for(request)
    return access, get_object_or_404(selectors.evacuation_hosts(access), pk=pk)


@login_required
def host_evacuate_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Staff evacuate a failed app host: the plan (target, point or problem per instance, tier
    order), then the host's name typed to confirm; a started evacuation lands on its
    operation's page, a refused one comes back as form errors."""
    access, host = _evacuation_host(request, pk)
    form = HostEvacuateForm(request.POST if request.method == "POST" else None, host=host)
    if request.method == "POST":
        if not access.can_write:
            raise PermissionDenied
        response = operation_post(
            request,
            access=access,
            form=form,
            start=lambda key: host_evacuate_start(actor=access, host=host, idempotency_key=key),
            done=f"Evacuation of {host.name} started; follow it live below.",
        )
        if response is not None:
            return response
    state = selectors.evacuation_state(host)
    return render(
        request,
        "backups/host_evacuate.html",
        {
            "host": host,
            "state": state,
            "placed": sum(1 for row in state["plan"] if row["target"]),
            "form": form,
            "can_start": state["down"] and access.can_write,
            "is_platform_admin": access.is_platform_admin,
            "idempotency_key": posted_idempotency_key(request) or new_idempotency_key(),
        },
    )


@login_required
@require_POST
def host_purge_fenced_view(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Platform admins purge the fenced copies of evacuated instances a host keeps."""
    access, host = _evacuation_host(request, pk)
    back = reverse("hosts:detail", args=[host.pk])
    return operation_post(
        request,
        access=access,
        start=lambda key: fenced_copies_purge_start(actor=access, host=host),
        back=back,
        done=f"Purge of the fenced copies on {host.name} started.",
    ) or redirect(back)
