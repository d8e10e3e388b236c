"""Periodic checks of running instances: health (each product's status answer) with history,
resource use (provisioning.usage) and drift between what the panel deployed and what runs on
the host. Read-only, so they are not Operations; one SSH connection per host serves all of its
instances."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from provisioning.compose import instance_dir, project_name
from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceHealth,
    InstanceHealthCheck,
    InstanceStatus,
)
from provisioning.products import spec_for
from provisioning.remote import HostConnection, RemoteError, SSHTarget
from provisioning.usage import host_usage_sample, usage_prune

log = logging.getLogger(__name__)

# Consecutive failed checks before a running instance is shown as degraded.
DEGRADED_AFTER = 2
# Answers that are not faults: MAINTENANCE (Jira's start-up waits for a reindex,
# https://support.atlassian.com/jira/kb/jira-status-endpoint-response-meanings/) and, until
# the app has been seen RUNNING, FIRST_RUN (its setup wizard waits for the customer).
MAINTENANCE = "MAINTENANCE"
FIRST_RUN = "FIRST_RUN"


def setup_pending(instance: AtlassianInstance) -> bool:
    """Whether ``instance`` has never been seen RUNNING, so FIRST_RUN is its settled state
    (Crowd stays there until someone finishes its setup wizard).

    A copy (a restore into a new instance, a drill) is never pending: its source was set up
    (a restore refuses a point without a base URL), so a copy answering FIRST_RUN has lost its
    configuration, which is exactly what a restore and a drill must catch."""
    if instance.copy_point is not None:
        return False
    return not InstanceHealthCheck.objects.filter(instance=instance, state="RUNNING").exists()


def _waiting(instance: AtlassianInstance, state: str) -> bool:
    return state == MAINTENANCE or (state == FIRST_RUN and setup_pending(instance))


def _by_host(instances: Any) -> dict[Host, list[AtlassianInstance]]:
    groups: dict[Host, list[AtlassianInstance]] = defaultdict(list)
    for inst in instances:
        groups[inst.host].append(inst)
    return groups


def instance_health_record(
    instance: AtlassianInstance, ok: bool, state: str, detail: str, response_ms: int | None = None
) -> InstanceHealthCheck:
    """Store one check and update the instance's health (degraded after repeated failures).

    A MAINTENANCE answer (or FIRST_RUN before the setup was ever finished) is recorded as not
    ok but leaves the health as it is, and does not count towards DEGRADED."""
    waiting = not ok and _waiting(instance, state)
    check = InstanceHealthCheck.objects.create(
        instance=instance, ok=ok, state=state[:40], detail=detail[:500], response_ms=response_ms
    )
    new: str
    if ok:
        new = InstanceHealth.HEALTHY
    elif waiting:
        new = instance.health
    else:
        recent = list(
            InstanceHealthCheck.objects.filter(instance=instance)
            .exclude(state=MAINTENANCE)
            .order_by("-checked_at")
            .values_list("ok", flat=True)[:DEGRADED_AFTER]
        )
        failed = len(recent) == DEGRADED_AFTER and not any(recent)
        new = InstanceHealth.DEGRADED if failed else instance.health
    if new != instance.health:
        AtlassianInstance.objects.filter(pk=instance.pk).update(
            health=new, health_changed_at=timezone.now()
        )
        instance.health = new
    return check


def instances_health_check(host_ids: list[Any] | None = None) -> int:
    """Poll the health answer of every running instance (optionally on some hosts) and sample
    their resource use over the same connection; returns how many were checked."""
    from provisioning.rollout import instance_probe

    qs = AtlassianInstance.objects.filter(
        status=InstanceStatus.RUNNING, host__isnull=False
    ).select_related("host", "tenant")
    if host_ids is not None:
        qs = qs.filter(host_id__in=host_ids)
    checked = 0
    for host, instances in _by_host(qs).items():
        try:
            with HostConnection(SSHTarget.for_host(host), connect_timeout=10) as conn:
                for inst in instances:
                    started = timezone.now()
                    ok, state, detail = instance_probe(conn, inst)
                    ms = int((timezone.now() - started).total_seconds() * 1000)
                    instance_health_record(inst, ok, state, detail, ms)
                    checked += 1
                # Over the same connection, after the probes (whose response times it would
                # otherwise slow down).
                _usage_sample(conn, host, instances)
        except RemoteError as exc:
            for inst in instances:
                instance_health_record(inst, False, "", f"host unreachable: {exc}")
                checked += 1
    usage_prune()
    return checked


def _usage_sample(conn: HostConnection, host: Host, instances: list[AtlassianInstance]) -> None:
    """Sample the host's instances' resource use; a sample that fails is logged, never a
    failed health check (host_usage_sample already turns failed commands into empty fields)."""
    try:
        host_usage_sample(conn, instances)
    except (RemoteError, ValueError, DatabaseError):
        log.warning("resource use of the instances on %s not sampled", host.name, exc_info=True)


def instances_drift_check() -> int:
    """Compare each deployed compose file's hash and the running containers with what the
    panel expects; record differences on the instance. Returns how many drifted."""
    qs = (
        AtlassianInstance.objects.filter(
            status__in=[InstanceStatus.RUNNING, InstanceStatus.STOPPED], host__isnull=False
        )
        .exclude(deployed_compose_hash="")
        .select_related("host", "tenant")
    )
    drifted = 0
    for host, instances in _by_host(qs).items():
        try:
            with HostConnection(SSHTarget.for_host(host), connect_timeout=10) as conn:
                for inst in instances:
                    problems = instance_drift(conn, inst)
                    AtlassianInstance.objects.filter(pk=inst.pk).update(
                        drift="\n".join(problems), drift_checked_at=timezone.now()
                    )
                    drifted += bool(problems)
        except RemoteError as exc:
            log.warning("drift check of host %s failed: %s", host.name, exc)
    return drifted


def instance_drift(conn: HostConnection, instance: AtlassianInstance) -> list[str]:
    """What differs on the host from what the panel deployed for ``instance``."""
    problems = []
    spec = spec_for(instance.product)
    if spec.default_context and not instance.context_path:
        # Rows made before the panel knew Crowd's default keep their empty context: moving
        # them would change their base URL, so the difference is reported instead.
        problems.append(
            f"{instance.get_product_display()} answers at {spec.default_context} (its image's "
            f"default when the context path is empty), but this instance's base URL is "
            f"{instance.base_url}; it was left as it is because changing it changes the base "
            "URL."
        )
    data = conn.read(f"{instance_dir(instance)}/compose.yml", missing_ok=True)
    if data is None:
        problems.append("The compose file is missing on the host.")
    elif hashlib.sha256(data).hexdigest() != instance.deployed_compose_hash:
        problems.append("The compose file on the host was changed outside the panel.")
    result = conn.run(
        [
            "docker",
            "ps",
            "--all",
            "--filter",
            f"label=com.docker.compose.project={project_name(instance)}",
            "--format",
            '{{.Label "com.docker.compose.service"}} {{.State}}',
        ],
        timeout=30,
        record=False,
        ok_codes=range(256),
    )
    states = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    expected = {"app", "db"} if instance.status == InstanceStatus.RUNNING else set()
    for service in sorted(expected):
        if states.get(service) != "running":
            problems.append(
                f"The {service} container is {states.get(service, 'missing')}, "
                "but the instance should be running."
            )
    if instance.status == InstanceStatus.STOPPED:
        running = sorted(s for s, st in states.items() if st == "running")
        if running:
            problems.append(f"Containers {', '.join(running)} run, but the instance is stopped.")
    return problems
