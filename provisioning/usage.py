"""Resource use of running instances, sampled over the health check's connection to each host:
CPU and memory of each instance's app and database containers (``docker stats``), and the disk
under its home and database directories (``du``). Read-only, so not an Operation; a sample
that cannot be taken leaves a gap in the chart and never fails the health check."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from provisioning.compose import instance_dir, project_name
from provisioning.models import AtlassianInstance, InstanceUsage
from provisioning.remote import HostConnection, RemoteError

log = logging.getLogger(__name__)

# How long samples are kept. The health history has no pruning to copy (it is kept: the first
# RUNNING check is what tells a finished setup, see monitoring.setup_pending), so this is the
# charts' day plus a week for looking back through the API and the admin.
USAGE_RETENTION = timedelta(days=8)
# CPU and memory are sampled at every health check (each minute). Disk is measured less often
# *and* bounded: ``du`` walks every file of a home, which takes long on a large one, so each
# instance is measured at most every DISK_SAMPLE_EVERY, each run is stopped by coreutils'
# ``timeout`` after DU_TIMEOUT seconds (then that measurement is recorded as failed, with the
# reason, instead of stalling the health check), and a host's pass starts no more runs once
# DISK_BUDGET seconds went to ``du``: the instances left wait for the next pass, oldest first.
# So a host adds at most about DISK_BUDGET + DU_TIMEOUT seconds to a health check pass (the
# pass visits hosts one after another, within the task's soft time limit); a fresh home takes
# well under a second.
DISK_SAMPLE_EVERY = timedelta(minutes=15)
DU_TIMEOUT = 15
DISK_BUDGET = 20.0
STATS_TIMEOUT = 30
# A host's totals count CPU and memory only from samples this young: an instance not sampled
# for longer is stopped or unreachable, and uses none now that anyone knows of.
USAGE_FRESH = timedelta(minutes=10)
SERVICES = ("app", "db")

# docker stats prints memory in binary units (MiB, GiB), network and block I/O in decimal ones.
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "tib": 1024**4,
    "pb": 1000**5,
    "pib": 1024**5,
}
_SIZE_RE = re.compile(r"\A\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]{0,3})\s*\Z")
_PERCENT_RE = re.compile(r"\A\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*\Z")
_DU_LINE_RE = re.compile(r"\A([0-9]+)\t(/.*)\Z")


@dataclass(frozen=True)
class ContainerStats:
    """One container's line of ``docker stats``: CPU (percent of one CPU) and memory."""

    cpu_percent: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None


def size_parse(text: str) -> int | None:
    """Bytes of a size as docker prints it (``"512MiB"``, ``"1.5GiB"``, ``"0B"``); None for
    anything else (``"--"`` of a container that is not running)."""
    match = _SIZE_RE.match(text or "")
    if match is None:
        return None
    factor = _UNITS.get(match.group(2).lower())
    if factor is None:
        return None
    return round(float(match.group(1)) * factor)


def percent_parse(text: str) -> float | None:
    """A percentage as docker prints it (``"12.34%"``); None for anything else."""
    match = _PERCENT_RE.match(text or "")
    return round(float(match.group(1)), 2) if match else None


def docker_stats_parse(stdout: str) -> dict[str, ContainerStats]:
    """``docker stats --no-stream --format '{{json .}}'`` output, by container name. Lines that
    are not such JSON objects are skipped (a warning of the CLI, a truncated answer)."""
    found: dict[str, ContainerStats] = {}
    for line in stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("Name"), str):
            continue
        used, _, limit = str(row.get("MemUsage", "")).partition("/")
        found[row["Name"].lstrip("/")] = ContainerStats(
            cpu_percent=percent_parse(str(row.get("CPUPerc", ""))),
            memory_bytes=size_parse(used),
            memory_limit_bytes=size_parse(limit),
        )
    return found


def du_parse(stdout: str) -> dict[str, int]:
    """``du -s -B1 PATH...`` output: bytes by path (lines of ``<bytes>\\t<path>``)."""
    sizes: dict[str, int] = {}
    for line in stdout.splitlines():
        match = _DU_LINE_RE.match(line)
        if match:
            sizes[match.group(2)] = int(match.group(1))
    return sizes


def container_name(instance: AtlassianInstance, service: str) -> str:
    """The name docker compose gives the ``service`` container of ``instance``'s project
    (``<project>-<service>-1``: compose.py sets no container_name and no replicas)."""
    return f"{project_name(instance)}-{service}-1"


def containers_stats(conn: HostConnection, names: Iterable[str]) -> dict[str, ContainerStats]:
    """CPU and memory of the named containers that are running on the host, in one
    ``docker stats`` run. ``docker stats NAME...`` fails as a whole when one of the names is
    no container (an instance whose app was removed by hand), so the running ones are listed
    first; a container that stops in between costs this pass's CPU and memory figures."""
    listed = conn.run(
        ["docker", "ps", "--format", "{{.Names}}"], timeout=STATS_TIMEOUT, record=False
    )
    running = set(listed.stdout.split())
    wanted = sorted(n for n in set(names) if n in running)
    if not wanted:
        return {}
    result = conn.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *wanted],
        timeout=STATS_TIMEOUT,
        record=False,
    )
    return docker_stats_parse(result.stdout)


@dataclass(frozen=True)
class DiskUse:
    """One ``du`` of an instance's home and database directories."""

    home_bytes: int | None
    db_bytes: int | None
    error: str = ""


def instance_disk_measure(conn: HostConnection, instance: AtlassianInstance) -> DiskUse:
    """Bytes on disk under the instance's home and database directories (``du -sx``: one file
    system, hard links once), stopped after DU_TIMEOUT seconds. The error names what could not
    be measured in the panel's words (du's own message, with host paths, only goes to the log:
    customers read this)."""
    directory = instance_dir(instance)
    home, db = f"{directory}/home", f"{directory}/db"
    # The paths come from validated fields (data root, instance name); run() quotes each one.
    result = conn.run(
        ["timeout", str(DU_TIMEOUT), "du", "-sx", "-B1", "--", home, db],
        timeout=DU_TIMEOUT + 15,
        ok_codes=range(256),
        record=False,
    )
    sizes = du_parse(result.stdout)
    missing = [label for label, path in (("home", home), ("database", db)) if path not in sizes]
    error = ""
    if missing:
        what = " and ".join(missing) + (" directories" if len(missing) > 1 else " directory")
        if result.exit_code == 124:
            why = f"du did not finish within {DU_TIMEOUT} s"
        else:
            why = f"du ended with exit code {result.exit_code}"
        error = f"The {what} could not be measured ({why})."
        log.warning(
            "disk use of %s not measured: exit %s: %s",
            instance.name,
            result.exit_code,
            result.stderr.strip()[-300:],
        )
    # du may also end with 1 after measuring both (a file removed while it walked the live
    # database directory): the sizes it printed count, without that file.
    return DiskUse(home_bytes=sizes.get(home), db_bytes=sizes.get(db), error=error)


def _latest_samples(instances: Sequence[AtlassianInstance]) -> dict[object, InstanceUsage]:
    """Each instance's newest sample (one query for all of them)."""
    newest = (
        InstanceUsage.objects.filter(instance=OuterRef("pk")).order_by("-sampled_at").values("pk")
    )
    ids = (
        AtlassianInstance.objects.filter(pk__in=[i.pk for i in instances])
        .annotate(latest=Subquery(newest[:1]))
        .values("latest")
    )
    return {s.instance_id: s for s in InstanceUsage.objects.filter(pk__in=ids)}


def _disk_due(previous: InstanceUsage | None, now: datetime) -> bool:
    return (
        previous is None
        or previous.disk_sampled_at is None
        or now - previous.disk_sampled_at >= DISK_SAMPLE_EVERY
    )


def host_usage_sample(
    conn: HostConnection, instances: Sequence[AtlassianInstance], *, now: datetime | None = None
) -> list[InstanceUsage]:
    """Take one usage sample of each of ``instances`` (all on the host ``conn`` is open to) and
    store it. A failed ``docker stats`` or ``du`` leaves its fields empty; an instance for which
    nothing at all could be read gets no sample (a gap in its chart)."""
    now = now or timezone.now()
    previous = _latest_samples(instances)
    try:
        stats = containers_stats(conn, [container_name(i, s) for i in instances for s in SERVICES])
    except RemoteError as exc:
        log.warning("docker stats on %s failed: %s", conn.target.label, exc)
        stats = {}
    measured: dict[object, DiskUse] = {}
    due = [i for i in instances if _disk_due(previous.get(i.pk), now)]
    due.sort(key=lambda i: _disk_age_key(previous.get(i.pk)))
    spent = 0.0
    for inst in due:
        if spent >= DISK_BUDGET:
            break  # the rest are measured in a later pass (they stay due, oldest first)
        started = time.monotonic()
        try:
            measured[inst.pk] = instance_disk_measure(conn, inst)
        except RemoteError as exc:
            log.warning("du of %s failed: %s", inst.name, exc)
            measured[inst.pk] = DiskUse(None, None, "The disk use could not be measured.")
        spent += time.monotonic() - started
    rows = []
    for inst in instances:
        app = stats.get(container_name(inst, "app"))
        db = stats.get(container_name(inst, "db"))
        disk = measured.get(inst.pk)
        if app is None and db is None and disk is None:
            continue
        before = previous.get(inst.pk)
        row = InstanceUsage(
            instance=inst,
            sampled_at=now,
            app_cpu_percent=app.cpu_percent if app else None,
            app_memory_bytes=app.memory_bytes if app else None,
            app_memory_limit_bytes=app.memory_limit_bytes if app else None,
            db_cpu_percent=db.cpu_percent if db else None,
            db_memory_bytes=db.memory_bytes if db else None,
            db_memory_limit_bytes=db.memory_limit_bytes if db else None,
        )
        if disk is not None:
            row.home_bytes, row.db_disk_bytes = disk.home_bytes, disk.db_bytes
            row.disk_sampled_at, row.disk_error = now, disk.error
        elif before is not None:  # carried forward until the next measurement
            row.home_bytes, row.db_disk_bytes = before.home_bytes, before.db_disk_bytes
            row.disk_sampled_at, row.disk_error = before.disk_sampled_at, before.disk_error
        rows.append(row)
    return InstanceUsage.objects.bulk_create(rows)


def _disk_age_key(previous: InstanceUsage | None) -> float:
    if previous is None or previous.disk_sampled_at is None:
        return float("-inf")
    return previous.disk_sampled_at.timestamp()


def usage_prune(*, now: datetime | None = None) -> int:
    """Delete samples older than USAGE_RETENTION; returns how many went."""
    cutoff = (now or timezone.now()) - USAGE_RETENTION
    deleted, _ = InstanceUsage.objects.filter(sampled_at__lt=cutoff).delete()
    return deleted
