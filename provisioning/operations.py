"""Handlers of instance operations (registered with the operation runner).

Each handler checks the instance's state, does the remote work through ``rollout`` and moves
the instance through its state machine; ``instance_abort`` leaves it clearly failed if the
operation fails, is cancelled or its worker dies.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from panel.operations import (
    OperationContext,
    OperationFailed,
    OperationFenced,
    operation_handler,
)
from panel.registry import registry
from provisioning import rollout
from provisioning.compose import instance_dir, project_name
from provisioning.homefiles import (
    CONFLUENCE_CFG,
    HomeFileError,
    confluence_license_get,
    confluence_license_set,
    home_file_edit,
    home_file_read,
)
from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceHealth,
    InstanceStatus,
    OperationKind,
)
from provisioning.ports import (
    HostPortsExhausted,
    host_ports_in_use,
    instance_host_port_allocate,
)
from provisioning.products import spec_for
from provisioning.remote import RemoteError

# Statuses that mean "an operation was half-way through changing this instance".
_IN_FLIGHT = {InstanceStatus.PROVISIONING, InstanceStatus.RESTORING, InstanceStatus.DELETING}


def _transition(
    instance: AtlassianInstance, to: str, reason: str = "", *, ctx: OperationContext | None = None
) -> None:
    from provisioning.services import instance_transition

    if ctx is None:  # the abort hook: the runner or the reaper already owns the outcome
        instance_transition(instance, to, reason)
        return
    # Fenced: a handler whose operation was reaped stops here instead of overwriting the
    # state the reaper's abort hook set (the reaper waits while this holds the row).
    with ctx.owned():
        instance_transition(instance, to, reason)


def instance_abort(operation: Any, reason: str) -> None:
    """After a failed, cancelled or reaped instance operation: never leave it looking busy."""
    if operation.instance_id is None:
        return
    instance = AtlassianInstance.objects.get(pk=operation.instance_id)
    if instance.status in _IN_FLIGHT or instance.status == InstanceStatus.PENDING:
        _transition(instance, InstanceStatus.FAILED, reason)


def _instance(ctx: OperationContext) -> AtlassianInstance:
    return AtlassianInstance.objects.select_related("host", "tenant").get(
        pk=ctx.operation.instance_id
    )


def _remote(fn: Any) -> Any:
    """Turn remote-layer errors into a failed operation with the error's readable message."""

    def wrapper(ctx: OperationContext) -> Any:
        try:
            return fn(ctx)
        except RemoteError as exc:
            raise OperationFailed(str(exc)) from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def instance_published(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """Seam for DNS records, certificates and the proxy: each hook registered for "publish"
    runs after a successful rollout (the certificates app registers its own)."""
    _hooks_run("publish", ctx, instance)


def _hooks_run(moment: str, ctx: OperationContext, instance: AtlassianInstance) -> list[Any]:
    # Hooks other apps registered in registry["instance_hooks"] from their ready(): "publish"
    # (after a create), "pre_upgrade" (backups takes a point), "upgrade_failed" (backups
    # restores it), "unpublish" (on delete: DNS records, proxy config). A failing hook fails
    # the operation, as before. Returns what the hooks returned (panel/registry.py).
    return [hook(ctx, instance) for hook in list(registry["instance_hooks"][moment])]


def _host_port_allocate(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """Give a Bitbucket or Bamboo instance its own host port on its host (kept on a retry)."""
    assert instance.host is not None
    if instance.host_port is None and spec_for(instance.product).published_port is not None:
        with rollout.connect(instance, ctx) as conn:
            busy = host_ports_in_use(conn, instance.host)
    else:
        busy = set()
    try:
        port = instance_host_port_allocate(instance, instance.host, busy=busy)
    except HostPortsExhausted as exc:
        raise OperationFailed(str(exc)) from exc
    if port is not None:
        ctx.step(f"Host port {port} on {instance.host.name}: {instance.published_url}")


@operation_handler(OperationKind.INSTANCE_CREATE, on_abort=instance_abort)
@_remote
def instance_create_run(ctx: OperationContext) -> dict:
    """Choose an app host (unless one was named) and roll the new instance out on it."""
    from provisioning.services import host_select_for_instance

    instance = _instance(ctx)
    ctx.progress(0, 5)
    _transition(instance, InstanceStatus.PROVISIONING, ctx=ctx)
    if instance.host is None:
        ctx.step(f"Choosing an app host with {instance.heap_max_mb + 512} MB free memory")
        host = host_select_for_instance(instance)
        if (
            host is None
            and not Host.objects.filter(role=Host.Role.APP, status=Host.Status.READY).exists()
        ):
            raise OperationFailed(
                "There is no ready app host at all to run it on. A platform admin must enrol and "
                "provision an app host (Hosts), then retry."
            )
        if host is None:
            raise OperationFailed(
                "No ready app host has enough free memory and disk for this instance "
                f"({instance.heap_max_mb} MB heap). An administrator must provision an app host "
                "or free capacity, then retry."
            )
        AtlassianInstance.objects.filter(pk=instance.pk).update(host=host)
        instance.host = host
    elif instance.host.status != instance.host.Status.READY:
        raise OperationFailed(f"Host {instance.host.name} is {instance.host.status}, not ready.")
    ctx.step(f"Placing {instance.name} on host {instance.host.name}")
    _host_port_allocate(ctx, instance)
    result = rollout.instance_rollout(ctx, instance, first=True)
    instance_published(ctx, instance)
    _transition(instance, InstanceStatus.RUNNING, ctx=ctx)
    return result


@operation_handler(OperationKind.INSTANCE_START, on_abort=instance_abort)
@_remote
def instance_start_run(ctx: OperationContext) -> dict:
    """Start the instance's containers and wait until it answers RUNNING."""
    instance = _instance(ctx)
    with rollout.connect(instance, ctx) as conn:
        conn.compose(
            instance_dir(instance),
            "up",
            "--detach",
            project_name=project_name(instance),
            timeout=900,
            message=f"Started {instance.name}",
        )
        seconds = rollout.wait_running(ctx, conn, instance, first=False)
    _transition(instance, InstanceStatus.RUNNING, ctx=ctx)
    _healthy(instance)
    return {"seconds_to_running": round(seconds, 1)}


@operation_handler(OperationKind.INSTANCE_STOP, on_abort=instance_abort)
@_remote
def instance_stop_run(ctx: OperationContext) -> dict:
    """Stop gracefully: the app first (within the grace period), then its database."""
    instance = _instance(ctx)
    with rollout.connect(instance, ctx) as conn:
        for service in ("app", "db"):
            conn.compose(
                instance_dir(instance),
                "stop",
                "--timeout",
                "120",
                service,
                project_name=project_name(instance),
                timeout=300,
                message=f"Stopped {service} of {instance.name}",
            )
    _transition(instance, InstanceStatus.STOPPED, ctx=ctx)
    AtlassianInstance.objects.filter(pk=instance.pk).update(health=InstanceHealth.UNKNOWN)
    return {}


@operation_handler(OperationKind.INSTANCE_RESTART, on_abort=instance_abort)
@_remote
def instance_restart_run(ctx: OperationContext) -> dict:
    """Restart the app container gracefully and wait until it answers RUNNING."""
    instance = _instance(ctx)
    with rollout.connect(instance, ctx) as conn:
        conn.compose(
            instance_dir(instance),
            "restart",
            "--timeout",
            "120",
            "app",
            project_name=project_name(instance),
            timeout=300,
            message=f"Restarted {instance.name}",
        )
        seconds = rollout.wait_running(ctx, conn, instance, first=False)
    _transition(instance, InstanceStatus.RUNNING, ctx=ctx)
    _healthy(instance)
    return {"seconds_to_running": round(seconds, 1)}


@operation_handler(OperationKind.INSTANCE_UPGRADE, on_abort=instance_abort)
@_remote
def instance_upgrade_run(ctx: OperationContext) -> dict:
    """Roll out another version after a backup point of the current state; if the new
    version fails after it started (an error, ERROR, a timeout, a cancel) the previous one
    comes back by restoring that point, never by starting it on the upgraded database.

    Upgrades are one-way: the new version upgrades the database on its first start and an
    older version refuses it afterwards ("database was upgraded by a newer version").
    Atlassian's roll-back procedure restores the database and the home taken before the
    upgrade: http://confluence.atlassian.com/display/JIRA/Rolling+Back+a+JIRA+Upgrade
    """
    instance = _instance(ctx)
    was_running = instance.status == InstanceStatus.RUNNING
    version = ctx.operation.params["version"]
    ctx.step(f"Upgrading {instance.name} from {instance.version} to {version}")
    # The backups app takes a point first (a cold one leaves the app stopped until the new
    # version starts) and names it in ctx.operation.params["pre_upgrade_point"].
    _hooks_run("pre_upgrade", ctx, instance)
    started: list[bool] = []

    def failed(failure: BaseException) -> str:
        started.append(True)
        return _upgrade_failed(ctx, instance, version)

    try:
        # The rollout writes the new version together with the deployed compose hash.
        result = rollout.instance_rollout(
            ctx, instance, first=False, version=version, on_failure=failed
        )
    except OperationFenced:
        raise
    except BaseException:
        if not started and was_running:
            # Failed before the new version started (its files refused, a cancel before the
            # swap): the database is untouched, so the previous version may simply start.
            with ctx.uncancellable():
                _start_again(ctx, instance)
        raise
    _transition(instance, InstanceStatus.RUNNING, ctx=ctx)
    return {
        **result,
        "previous_version": instance.version,
        "pre_upgrade_point": (ctx.operation.params or {}).get("pre_upgrade_point"),
    }


def _upgrade_failed(ctx: OperationContext, instance: AtlassianInstance, version: str) -> str:
    """Run the "upgrade_failed" hooks (the new app is stopped, the previous compose files are
    back, unstarted); without one that answers, leave the instance stopped and failed."""
    words = [w for w in _hooks_run("upgrade_failed", ctx, instance) if w]
    if words:
        return " ".join(words)
    reason = (
        f"Nothing restored the state before the upgrade, so {instance.name} was left stopped: "
        f"{instance.product} {instance.version} refuses a database {version} upgraded."
    )
    _transition(instance, InstanceStatus.FAILED, reason, ctx=ctx)
    raise OperationFailed(reason)


def _start_again(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """Start the deployed (previous) files again after an upgrade that never started."""
    try:
        with rollout.connect(instance, ctx) as conn:
            conn.compose(
                instance_dir(instance),
                "up",
                "--detach",
                project_name=project_name(instance),
                timeout=900,
                message=f"Started {instance.name} {instance.version} again",
            )
            rollout.wait_running(ctx, conn, instance, first=False)
    except OperationFenced:
        raise
    except Exception as exc:  # noqa: BLE001 - the upgrade's own error is the one raised
        ctx.step(f"Could not start {instance.name} again: {exc}", level="warning")


@operation_handler(OperationKind.INSTANCE_RESIZE, on_abort=instance_abort)
@_remote
def instance_resize_run(ctx: OperationContext) -> dict:
    """Change the JVM heap: a rollout with the new settings (rolled back if it fails)."""
    instance = _instance(ctx)
    heap = (int(ctx.operation.params["heap_min_mb"]), int(ctx.operation.params["heap_max_mb"]))
    result = rollout.instance_rollout(ctx, instance, first=False, heap=heap)  # writes the heap
    _transition(instance, InstanceStatus.RUNNING, ctx=ctx)
    return {**result, "heap_mb": list(heap)}


@operation_handler(OperationKind.INSTANCE_OUTBOUND_ENABLE, on_abort=instance_abort)
@_remote
def instance_outbound_enable_run(ctx: OperationContext) -> dict:
    """Roll a copy out again without the mail-off JVM flags (see ``compose.mail_off_args``);
    ``outbound_disabled`` is cleared only once it runs, so a failed rollout (rolled back to
    the mute project) leaves the copy marked mute, as it is."""
    instance = _instance(ctx)
    instance.outbound_disabled = False  # what compose renders from
    ctx.step(f"Turning outgoing and incoming mail back on for {instance.name}")
    result = rollout.instance_rollout(ctx, instance, first=False)
    AtlassianInstance.objects.filter(pk=instance.pk).update(outbound_disabled=False)
    _transition(instance, InstanceStatus.RUNNING, ctx=ctx)
    return {**result, "outbound_disabled": False}


@operation_handler(OperationKind.INSTANCE_DELETE, on_abort=instance_abort)
@_remote
def instance_delete_run(ctx: OperationContext) -> dict:
    """Stop and remove containers and networks; keep data and backups for the retention time."""
    instance = _instance(ctx)
    _transition(instance, InstanceStatus.DELETING, ctx=ctx)
    _hooks_run("unpublish", ctx, instance)
    if instance.host is not None:
        with rollout.connect(instance, ctx) as conn:
            if conn.exists(f"{instance_dir(instance)}/compose.yml"):
                conn.compose(
                    instance_dir(instance),
                    "down",
                    "--timeout",
                    "120",
                    "--remove-orphans",
                    project_name=project_name(instance),
                    timeout=600,
                    message=f"Removed the containers and networks of {instance.name}",
                )
    deleted_at = timezone.now()
    purge_after = deleted_at + timedelta(days=settings.PANEL_DELETED_RETENTION_DAYS)
    AtlassianInstance.objects.filter(pk=instance.pk).update(
        deleted_at=deleted_at, purge_after=purge_after, health=InstanceHealth.UNKNOWN
    )
    _transition(instance, InstanceStatus.DELETED, ctx=ctx)
    ctx.step(
        f"Data kept on {instance.host.name if instance.host else 'no host'} until "
        f"{purge_after:%Y-%m-%d}; then it is purged."
    )
    return {"purge_after": purge_after.isoformat()}


@operation_handler(OperationKind.INSTANCE_PURGE)
@_remote
def instance_purge_run(ctx: OperationContext) -> dict:
    """Remove a deleted instance's data directory once its retention period is over."""
    instance = _instance(ctx)
    if instance.status != InstanceStatus.DELETED:
        raise OperationFailed(f"{instance.name} is {instance.status}; only deleted ones purge.")
    if instance.purge_after and instance.purge_after > timezone.now():
        raise OperationFailed(f"{instance.name} is kept until {instance.purge_after:%Y-%m-%d}.")
    if instance.host is not None:
        with rollout.connect(instance, ctx) as conn:
            conn.run(
                ["rm", "-rf", "--one-file-system", instance_dir(instance)],
                message=f"Removed {instance_dir(instance)}",
            )
    AtlassianInstance.objects.filter(pk=instance.pk).update(purge_after=None)
    return {}


@operation_handler(OperationKind.LICENSE_APPLY, on_abort=instance_abort)
@_remote
def license_apply_run(ctx: OperationContext) -> dict:
    """Put the newest licence where the product reads it, restart and verify.

    Confluence reads its licence from ``atlassian.license.message`` in confluence.cfg.xml;
    ATL_LICENSE_KEY only seeds that file on the first start ("from Confluence 7.9 onwards",
    https://atlassian.github.io/data-center-helm-charts/containers/CONFLUENCE/), so a rollout
    with a new key alone changes nothing. The app is stopped, the file edited (mode and owner
    kept), the instance rolled out (its .env carries the key for a fresh home) and, once
    RUNNING, the file is read back: Confluence has no unauthenticated licence endpoint."""
    instance = _instance(ctx)
    lic = instance.licenses.order_by("-created_at").first()
    if lic is None:
        raise OperationFailed(f"{instance.name} has no licence to apply.")
    ctx.add_secrets([lic.key])
    ctx.step(f"Applying the newest licence ({lic.sen or 'no SEN'}) to {instance.name}")
    spec = spec_for(instance.product)
    in_file = _license_file_write(ctx, instance, lic.key) if spec.license_in_home_file else None
    try:
        result = rollout.instance_rollout(ctx, instance, first=False)
    except OperationFailed as exc:
        if in_file:
            raise OperationFailed(f"{exc} {CONFLUENCE_CFG} already holds the new licence.") from exc
        raise
    if spec.license_in_home_file:
        with rollout.connect(instance, ctx) as conn:
            data = home_file_read(conn, instance, CONFLUENCE_CFG)
        if data is None or confluence_license_get(data) != lic.key:
            raise OperationFailed(
                f"{instance.name} runs, but its {CONFLUENCE_CFG} does not hold the new licence "
                "after the restart; it still uses the previous one."
            )
        ctx.step(f"{CONFLUENCE_CFG} holds the new licence after the restart")
    if instance.status != InstanceStatus.RUNNING:
        _transition(instance, InstanceStatus.RUNNING, ctx=ctx)
    return {**result, "license_sha256": hashlib.sha256(lic.key.encode()).hexdigest()}


def _license_file_write(ctx: OperationContext, instance: AtlassianInstance, key: str) -> bool:
    """Stop the app and write ``key`` into its confluence.cfg.xml. False when the file does
    not exist yet (never started: the first start writes it from ATL_LICENSE_KEY)."""
    with rollout.connect(instance, ctx) as conn:
        directory = instance_dir(instance)
        # Check the file takes the key while the app still runs: a file that is not
        # Confluence's shape must not cost the customer a stopped wiki.
        current = home_file_read(conn, instance, CONFLUENCE_CFG)
        if current is not None:
            try:
                confluence_license_set(current, key)
            except HomeFileError as exc:
                raise OperationFailed(
                    f"{CONFLUENCE_CFG} of {instance.name} is not what Confluence writes: {exc}. "
                    f"The licence was not applied; {instance.name} keeps running."
                ) from None
        if conn.exists(f"{directory}/compose.yml"):
            conn.compose(
                directory,
                "stop",
                "--timeout",
                "120",
                "app",
                project_name=project_name(instance),
                timeout=300,
                message=f"Stopped the app of {instance.name} (it writes its config on shutdown)",
            )
        try:
            written = home_file_edit(
                conn,
                instance,
                CONFLUENCE_CFG,
                lambda data: confluence_license_set(data, key),
                message=f"Wrote the new licence into {CONFLUENCE_CFG}",
            )
        except HomeFileError as exc:
            raise OperationFailed(
                f"{CONFLUENCE_CFG} of {instance.name} is not what Confluence writes: {exc}. "
                "The licence was not applied; the app is stopped."
            ) from None
    if written is None:
        ctx.step(
            f"{CONFLUENCE_CFG} does not exist yet: the first start writes it from "
            "ATL_LICENSE_KEY, which carries the new licence"
        )
        return False
    if not written:
        ctx.step(f"{CONFLUENCE_CFG} already holds this licence")
    return True


def _healthy(instance: AtlassianInstance) -> None:
    AtlassianInstance.objects.filter(pk=instance.pk).update(
        health=InstanceHealth.HEALTHY, health_changed_at=timezone.now()
    )
