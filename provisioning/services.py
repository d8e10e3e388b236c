"""Writes for hosts, instances and licenses. Every change is audited; remote work is an
Operation started here and carried out by the handlers in ``provisioning.operations``."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from panel.access import Access
from panel.audit import audit_record
from panel.operation_requests import operation_by_key, operation_conflict_check
from panel.operations import operation_start
from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceStatus,
    License,
    Operation,
    OperationKind,
)
from provisioning.products import spec_for, versions_for
from tenants.models import Tenant

# Allowed instance status changes; anything else is refused with a clear error.
INSTANCE_TRANSITIONS: dict[str, set[str]] = {
    InstanceStatus.PENDING: {
        InstanceStatus.PROVISIONING,
        InstanceStatus.FAILED,
        InstanceStatus.DELETING,
    },
    InstanceStatus.PROVISIONING: {InstanceStatus.RUNNING, InstanceStatus.FAILED},
    InstanceStatus.RUNNING: {
        InstanceStatus.STOPPED,
        InstanceStatus.RESTORING,
        InstanceStatus.DELETING,
        InstanceStatus.FAILED,
        InstanceStatus.PROVISIONING,
    },
    InstanceStatus.STOPPED: {
        InstanceStatus.RUNNING,
        InstanceStatus.RESTORING,
        InstanceStatus.DELETING,
        InstanceStatus.FAILED,
        InstanceStatus.PROVISIONING,
    },
    InstanceStatus.FAILED: {
        InstanceStatus.PROVISIONING,
        InstanceStatus.RUNNING,
        InstanceStatus.STOPPED,
        InstanceStatus.RESTORING,
        InstanceStatus.DELETING,
    },
    InstanceStatus.RESTORING: {
        InstanceStatus.RUNNING,
        InstanceStatus.FAILED,
        InstanceStatus.STOPPED,
    },
    InstanceStatus.DELETING: {InstanceStatus.DELETED, InstanceStatus.FAILED},
    InstanceStatus.DELETED: set(),
}

# Which lifecycle actions each status allows (checked before an operation is even created).
ACTION_ALLOWED_FROM: dict[str, set[str]] = {
    "start": {InstanceStatus.STOPPED, InstanceStatus.FAILED},
    "stop": {InstanceStatus.RUNNING, InstanceStatus.FAILED},
    "restart": {InstanceStatus.RUNNING, InstanceStatus.FAILED},
    "upgrade": {InstanceStatus.RUNNING, InstanceStatus.STOPPED, InstanceStatus.FAILED},
    "resize": {InstanceStatus.RUNNING, InstanceStatus.STOPPED, InstanceStatus.FAILED},
    "delete": {
        InstanceStatus.PENDING,
        InstanceStatus.RUNNING,
        InstanceStatus.STOPPED,
        InstanceStatus.FAILED,
    },
    "retry": {InstanceStatus.FAILED},
}


class InvalidTransition(ValidationError):
    """A lifecycle action that the instance's current status does not allow."""


def instance_transition(instance: AtlassianInstance, to: str, reason: str = "") -> None:
    """Move ``instance`` to status ``to`` if the state machine allows it, else raise."""
    if to != instance.status and to not in INSTANCE_TRANSITIONS[instance.status]:
        raise InvalidTransition(
            f"{instance.name} is {instance.get_status_display().lower()}; it cannot become "
            f"{InstanceStatus(to).label.lower()}."
        )
    instance.status = to
    instance.status_reason = reason
    instance.status_changed_at = timezone.now()
    AtlassianInstance.objects.filter(pk=instance.pk).update(
        status=to, status_reason=reason, status_changed_at=instance.status_changed_at
    )


def instance_check_action(instance: AtlassianInstance, action: str) -> None:
    """Refuse ``action`` early, with a clear message, if the instance's status forbids it."""
    if instance.status not in ACTION_ALLOWED_FROM[action]:
        raise InvalidTransition(
            f"Cannot {action} {instance.name} while it is {instance.get_status_display().lower()}."
        )


def instance_lock_key(instance: AtlassianInstance) -> str:
    return f"instance:{instance.pk}"


def host_lock_key(host: Host) -> str:
    return f"host:{host.pk}"


def instance_validate_product_version(product: str, version: str) -> None:
    if version not in versions_for(product):
        raise ValidationError(
            {
                "version": f"{version} is not an offered version of {spec_for(product).product}; "
                f"choose one of {', '.join(versions_for(product))}."
            }
        )


def instance_validate_heap(product: str, heap_min_mb: int, heap_max_mb: int) -> None:
    spec = spec_for(product)
    errors = {}
    if heap_max_mb < spec.min_heap_mb:
        errors["heap_max_mb"] = (
            f"{spec.product} needs a maximum heap of at least {spec.min_heap_mb} MB."
        )
    if heap_max_mb > 32768:
        errors["heap_max_mb"] = "The maximum heap is at most 32768 MB (compressed pointers)."
    if heap_min_mb < 256:
        errors["heap_min_mb"] = "The minimum heap is at least 256 MB."
    if heap_min_mb > heap_max_mb:
        errors["heap_min_mb"] = "The minimum heap cannot exceed the maximum heap."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def instance_create(
    *,
    actor: Access,
    tenant: Tenant,
    name: str,
    product: str,
    version: str,
    hostname: str,
    context_path: str = "",
    heap_min_mb: int = 1024,
    heap_max_mb: int = 2048,
    tier: str | None = None,
    host: Host | None = None,
    extra_env: dict[str, str] | None = None,
    idempotency_key: str = "",
) -> Operation:
    """Record a new instance and start the operation that rolls it out on an app host."""
    # The instance row is made before the operation: a repeated request must find its
    # operation first, or the name it already took would refuse it.
    existing = operation_by_key(actor, idempotency_key, kind=OperationKind.INSTANCE_CREATE)
    if existing is not None:
        return existing
    instance_validate_product_version(product, version)
    instance_validate_heap(product, heap_min_mb, heap_max_mb)
    # Crowd's image serves at /crowd when no context is given; the row says so, so its base
    # URL and proxy location are where Crowd answers (rows made before keep their "").
    context_path = context_path or spec_for(product).default_context
    instance = AtlassianInstance(
        tenant=tenant,
        name=name,
        product=product,
        version=version,
        hostname=hostname,
        context_path=context_path,
        heap_min_mb=heap_min_mb,
        heap_max_mb=heap_max_mb,
        tier=tier or tenant.default_tier,
        host=host,
        db_name=name.replace("-", "_"),
        db_user=name.replace("-", "_"),
        db_password=secrets.token_urlsafe(24),
        extra_env=extra_env or {},
    )
    instance.full_clean()
    instance.save()
    audit_record(
        actor=actor,
        action="instance.create",
        target=instance,
        changes={
            "product": product,
            "version": version,
            "hostname": hostname,
            "context_path": context_path,
            "heap": [heap_min_mb, heap_max_mb],
            "host": host.name if host else None,
        },
    )
    operation = operation_start(
        kind=OperationKind.INSTANCE_CREATE,
        actor=actor,
        instance=instance,
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )
    if operation.instance_id != instance.pk:
        # A concurrent request with the same idempotency key won: undo this instance and
        # answer with the operation that request created.
        transaction.set_rollback(True)
    return operation


def _instance_operation_start(
    *,
    actor: Access,
    instance: AtlassianInstance,
    action: str,
    kind: str,
    params: dict[str, Any] | None = None,
    idempotency_key: str = "",
    validate: Callable[[], None] | None = None,
) -> Operation:
    """The order every lifecycle action keeps: 409 if another operation holds the instance,
    then the status check, then the action's own checks, then the operation."""
    operation_conflict_check(instance_lock_key(instance))
    instance_check_action(instance, action)
    if validate is not None:
        validate()
    return operation_start(
        kind=kind,
        actor=actor,
        instance=instance,
        params=params or {},
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )


def instance_start(
    *, actor: Access, instance: AtlassianInstance, idempotency_key: str = ""
) -> Operation:
    """Start a stopped or failed instance."""
    return _instance_operation_start(
        actor=actor,
        instance=instance,
        action="start",
        kind=OperationKind.INSTANCE_START,
        idempotency_key=idempotency_key,
    )


def instance_stop(
    *, actor: Access, instance: AtlassianInstance, idempotency_key: str = ""
) -> Operation:
    """Stop the instance gracefully."""
    return _instance_operation_start(
        actor=actor,
        instance=instance,
        action="stop",
        kind=OperationKind.INSTANCE_STOP,
        idempotency_key=idempotency_key,
    )


def instance_restart(
    *, actor: Access, instance: AtlassianInstance, idempotency_key: str = ""
) -> Operation:
    """Restart the instance."""
    return _instance_operation_start(
        actor=actor,
        instance=instance,
        action="restart",
        kind=OperationKind.INSTANCE_RESTART,
        idempotency_key=idempotency_key,
    )


def instance_upgrade(
    *, actor: Access, instance: AtlassianInstance, version: str, idempotency_key: str = ""
) -> Operation:
    """Upgrade to another offered version of the product, after a backup point of the current
    state (a failed upgrade is rolled back by restoring it); refused when the instance's host
    has no backup host, since then no point can be taken."""

    def validate() -> None:
        instance_validate_product_version(instance.product, version)
        if version == instance.version:
            raise ValidationError({"version": f"{instance.name} already runs {instance.version}."})
        host = instance.host
        if host is None or host.backup_host_id is None:
            # Upgrades are one-way: an older version refuses a database a newer one upgraded,
            # so the only roll-back is restoring a point taken just before (backups app).
            raise ValidationError(
                {
                    "version": f"{instance.name} cannot be upgraded yet: its app host "
                    f"{host.name if host else '(none)'} has no backup host, so no point can be "
                    "taken to roll a failed upgrade back to. A platform admin must give the "
                    "host a backup host first."
                }
            )

    return _instance_operation_start(
        actor=actor,
        instance=instance,
        action="upgrade",
        kind=OperationKind.INSTANCE_UPGRADE,
        params={"version": version},
        idempotency_key=idempotency_key,
        validate=validate,
    )


def instance_resize(
    *,
    actor: Access,
    instance: AtlassianInstance,
    heap_min_mb: int,
    heap_max_mb: int,
    idempotency_key: str = "",
) -> Operation:
    """Change the JVM heap (refused if the instance's host has not the memory for it)."""

    def validate() -> None:
        instance_validate_heap(instance.product, heap_min_mb, heap_max_mb)
        instance_check_resize_capacity(instance, int(heap_max_mb))

    return _instance_operation_start(
        actor=actor,
        instance=instance,
        action="resize",
        kind=OperationKind.INSTANCE_RESIZE,
        params={"heap_min_mb": heap_min_mb, "heap_max_mb": heap_max_mb},
        idempotency_key=idempotency_key,
        validate=validate,
    )


def instance_delete(
    *, actor: Access, instance: AtlassianInstance, confirm: str, idempotency_key: str = ""
) -> Operation:
    """Delete the instance (its data is kept for the retention period); ``confirm`` must be
    the instance's name."""

    def validate() -> None:
        if (confirm or "").strip() != instance.name:
            raise ValidationError(
                {"confirm": f"Type the instance name ({instance.name}) to confirm."}
            )

    return _instance_operation_start(
        actor=actor,
        instance=instance,
        action="delete",
        kind=OperationKind.INSTANCE_DELETE,
        idempotency_key=idempotency_key,
        validate=validate,
    )


def instance_retry(
    *, actor: Access, instance: AtlassianInstance, idempotency_key: str = ""
) -> Operation:
    """Roll a failed instance out again (another ``instance.create`` operation)."""
    return _instance_operation_start(
        actor=actor,
        instance=instance,
        action="retry",
        kind=OperationKind.INSTANCE_CREATE,
        idempotency_key=idempotency_key,
    )


# A copy's mail is turned back on by a rollout, so the instance must be in a state a rollout
# starts from (the same as a heap change).
OUTBOUND_ENABLE_FROM = {InstanceStatus.RUNNING, InstanceStatus.STOPPED, InstanceStatus.FAILED}


def instance_outbound_enable(
    *, actor: Access, instance: AtlassianInstance, idempotency_key: str = ""
) -> Operation:
    """Staff turn outgoing and incoming mail back on for a copy that goes live: an operation
    rolls it out without the mail-off JVM flags and clears ``outbound_disabled`` once it runs.

    Staff only: a copy holds production's mail servers and users, so whether it may mail them
    is a platform decision; the operation (and so the audit log) names who asked."""
    if not (actor.is_staff_role and actor.can_write):
        raise PermissionDenied("Only support staff turn a copy's mail back on.")
    operation_conflict_check(instance_lock_key(instance))
    if not instance.outbound_disabled:
        raise ValidationError(f"{instance.name} already sends and fetches mail.")
    if instance.status not in OUTBOUND_ENABLE_FROM:
        raise InvalidTransition(
            f"Cannot turn mail on for {instance.name} while it is "
            f"{instance.get_status_display().lower()}."
        )
    return operation_start(
        kind=OperationKind.INSTANCE_OUTBOUND_ENABLE,
        actor=actor,
        instance=instance,
        params={"copy_of": instance.copy_of_name},
        lock_key=instance_lock_key(instance),
        idempotency_key=idempotency_key,
    )


def instance_db_password_reveal(*, actor: Access, instance: AtlassianInstance) -> str:
    """The database password of an instance whose setup wizard asks for it (Crowd takes no
    database variable, https://hub.docker.com/r/atlassian/crowd), for its tenant's
    administrators and staff; every reveal is audited (the password itself never is)."""
    if not actor.administers_tenant(instance.tenant_id):
        raise PermissionDenied("Only the tenant's administrators can see the database password.")
    if spec_for(instance.product).db_env:
        raise ValidationError(
            f"{instance.name} is given its database by the panel; its password is not shown."
        )
    audit_record(
        actor=actor,
        action="instance.db_password_reveal",
        target=instance,
        changes={"purpose": "setup wizard"},
    )
    return instance.db_password


# The lifecycle services by the action name the pages and ACTION_ALLOWED_FROM use; each form
# of ``provisioning.forms.ACTION_FORMS`` gives its service's keyword arguments.
INSTANCE_ACTIONS: dict[str, Callable[..., Operation]] = {
    "start": instance_start,
    "stop": instance_stop,
    "restart": instance_restart,
    "upgrade": instance_upgrade,
    "resize": instance_resize,
    "delete": instance_delete,
    "retry": instance_retry,
}


def host_free_memory_mb(host: Host, *, exclude: AtlassianInstance | None = None) -> int:
    """Memory of ``host`` not promised to its instances (each counts with its containers'
    memory limits), leaving out ``exclude`` (the instance being placed or resized)."""
    from provisioning.compose import instance_limits

    others = host.instances.exclude(status=InstanceStatus.DELETED)
    if exclude is not None:
        others = others.exclude(pk=exclude.pk)
    committed = sum(instance_limits(inst).memory_mb for inst in others.select_related("host"))
    return (host.memory_mb or 0) - committed


def _memory_needed_mb(instance: AtlassianInstance, host: Host, heap_max_mb: int) -> int:
    from provisioning.products import resource_limits

    return resource_limits(
        instance.product, heap_max_mb=heap_max_mb, tier=instance.tier, host_cpus=host.cpu_count
    ).memory_mb


def instance_memory_needed_mb(instance: AtlassianInstance, host: Host) -> int:
    """The memory ``instance``'s containers may use on ``host`` (their limits)."""
    return _memory_needed_mb(instance, host, instance.heap_max_mb)


INSTANCE_DISK_NEEDED = 5 * 1024**3


def host_fit_problem(instance: AtlassianInstance, host: Host) -> str | None:
    """Why ``host`` cannot take ``instance``, in a sentence, or None when it fits.

    An instance needs the memory limits of its containers (heap plus the JVM's other memory,
    and its database); free memory is what the host has minus what its instances may use. Its
    data needs ``INSTANCE_DISK_NEEDED`` of free disk.
    """
    needed_mb = _memory_needed_mb(instance, host, instance.heap_max_mb)
    free_mb = host_free_memory_mb(host, exclude=instance)
    if free_mb < needed_mb:
        return (
            f"{host.name} has {max(free_mb, 0)} MB of memory that its instances do not use; "
            f"{instance.name or 'the instance'} needs {needed_mb} MB."
        )
    free_disk = host.disk_free_bytes or 0
    if free_disk < INSTANCE_DISK_NEEDED:
        return (
            f"{host.name} has {free_disk // 1024**3} GB of free disk; an instance needs "
            f"{INSTANCE_DISK_NEEDED // 1024**3} GB."
        )
    return None


def host_fits(instance: AtlassianInstance, host: Host) -> bool:
    """Whether ``host`` has the memory and disk ``instance`` needs (see host_fit_problem)."""
    return host_fit_problem(instance, host) is None


def host_select_for_instance(instance: AtlassianInstance) -> Host | None:
    """The ready app host with the most free memory that fits the instance and its data."""
    candidates = Host.objects.filter(role=Host.Role.APP, status=Host.Status.READY)
    best, best_free = None, -1
    for host in candidates:
        if not host_fits(instance, host):
            continue
        free_mb = host_free_memory_mb(host, exclude=instance)
        if free_mb > best_free:
            best, best_free = host, free_mb
    return best


def instance_check_resize_capacity(instance: AtlassianInstance, heap_max_mb: int) -> None:
    """Refuse a resize that would promise the instance's host more memory than it has (the
    same reckoning as placement), so one tenant cannot starve the others on its host."""
    host = instance.host
    if host is None:
        return  # not placed yet: placement checks the new heap when it runs
    needed = _memory_needed_mb(instance, host, heap_max_mb)
    free = host_free_memory_mb(host, exclude=instance)
    if needed > free:
        raise ValidationError(
            {
                "heap_max_mb": f"A maximum heap of {heap_max_mb} MB needs {needed} MB of memory "
                f"for {instance.name}; its host has {max(free, 0)} MB that other instances do not "
                "use. Choose a smaller heap or ask an administrator to move the instance."
            }
        )


def license_add(
    *,
    actor: Access,
    instance: AtlassianInstance,
    key: str,
    facts: dict[str, Any] | None = None,
) -> License:
    """Attach a license key to an instance, decoding its facts when the format allows."""
    from provisioning.licenses import license_decode

    key = "".join(key.split())
    if not key:
        raise ValidationError({"key": "Paste the license key."})
    decoded = license_decode(key)
    fields = dict(facts or {})
    if decoded is not None:
        fields.update(decoded.as_fields())
        status = License.DecodeStatus.DECODED
    else:
        status = License.DecodeStatus.NOT_DECODED
    lic = License(
        instance=instance, product=instance.product, key=key, decode_status=status, **fields
    )
    lic.full_clean()
    lic.save()
    audit_record(
        actor=actor,
        action="license.add",
        target=lic,
        tenant=instance.tenant,
        changes={"instance": instance.name, "decode_status": status, "sen": lic.sen},
    )
    license_apply_if_needed(actor=actor, instance=instance)
    return lic


def license_apply_if_needed(*, actor: Access, instance: AtlassianInstance) -> Operation | None:
    """Products that keep their licence in a home file (Confluence's confluence.cfg.xml) get a
    ``license.apply`` once the transaction commits: it edits the file, restarts and verifies.
    Others take the key in their UI. An instance not deployed yet gets the key on its first
    start (ATL_LICENSE_KEY seeds the file)."""
    deployed = instance.host_id is not None and instance.status in (
        InstanceStatus.RUNNING,
        InstanceStatus.STOPPED,
        InstanceStatus.FAILED,
    )
    if not spec_for(instance.product).license_in_home_file or not deployed:
        return None
    from panel.operations import OperationConflict

    try:
        return operation_start(
            kind=OperationKind.LICENSE_APPLY,
            actor=actor,
            instance=instance,
            lock_key=instance_lock_key(instance),
        )
    except OperationConflict as exc:
        # Not applied: no other operation edits confluence.cfg.xml, and after the first start
        # Confluence ignores ATL_LICENSE_KEY, so a later rollout would not apply it either. The
        # licence stays "not applied yet" (audited) until a license.apply runs.
        audit_record(
            actor=actor,
            action="license.apply_deferred",
            target=instance,
            tenant=instance.tenant,
            changes={"instance": instance.name, "busy_with": str(exc.running.kind)},
        )
        return None


def instances_purge_due(now: Any = None) -> list[Operation]:
    """Start ``instance.purge`` for deleted instances past their retention (a scheduled task)."""
    from panel.operations import OperationConflict

    now = now or timezone.now()
    started = []
    due = AtlassianInstance.objects.filter(
        status=InstanceStatus.DELETED, purge_after__isnull=False, purge_after__lte=now
    )
    for instance in due:
        try:
            started.append(
                operation_start(
                    kind=OperationKind.INSTANCE_PURGE,
                    actor=None,
                    instance=instance,
                    lock_key=instance_lock_key(instance),
                )
            )
        except OperationConflict:
            continue  # already being purged
    return started
