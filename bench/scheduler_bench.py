"""Nightly backup scheduling at fleet size, with a simulated executor (run
``bench/fleet_seed.py`` first).

    .venv/bin/python bench/scheduler_bench.py [--caps 2,4] [--overhead 300]

The fleet: 10,000 instances on 500 app hosts, whose backups go to 20 backup hosts; every
instance has a daily policy due at 01:00 UTC plus its stable jitter (0-60 min).

**The dispatcher's plan.** The panel's own dispatcher (:func:`backups.services.backups_dispatch`,
which beat calls every 60 s) runs against the real PostgreSQL fleet, once per simulated
minute, with the per-backup-host cap (``PANEL_BACKUP_MAX_PER_BACKUP_HOST``) given by
``--caps`` and one backup at a time per app host (``PANEL_BACKUP_MAX_PER_APP_HOST=1``). Its
Operations are "run" by a simulated executor: claimed at once, finished after the instance's
modelled backup time (see :func:`backup_seconds`), so the caps the dispatcher reads from the
database are the real ones. Each configuration runs inside a transaction that is rolled back,
so the fleet is untouched. Reported: when work starts and ends per hour, the makespan from the
window's start to the last backup's end, and the lower bounds it is measured against: total
work / total capacity, and the busiest backup host's and app host's work / their caps.

**The panel's own overhead per operation.** Outside any transaction (every write committed,
as in production): ``operation_start`` (create the row, audit it, enqueue the task on Redis
after commit), then ``operation_execute`` (conditional claim, heartbeat thread, a handler that
logs one step, the terminal update) of a no-op kind, ``--overhead`` times; the rows are deleted
afterwards.

Writes ``bench/results/scheduler.md``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import statistics
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault(
    "DATABASE_URL",
    os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/panel_bench"),
)
RESULTS = REPO / "bench" / "results" / "scheduler.md"
NIGHT = datetime(2026, 11, 2, 0, 55, tzinfo=UTC)  # five minutes before the window opens
WINDOW_START = NIGHT + timedelta(minutes=5)
TICK = timedelta(seconds=60)
HORIZON = timedelta(hours=23)  # past this the policies would be due again


class Rollback(Exception):
    """Raised to roll a simulated night back."""


def backup_seconds(instance_id: Any) -> float:
    """Modelled wall time of one nightly hot backup of an instance.

    Home directory size is log-normal (median 16 GB, one in 40 over 100 GB), stable per
    instance; the database is 15 % of it. Time = 20 s of setup (SSH, compose, checks) + the
    database dump at 80 MB/s + an incremental rsync of 2 % changed data at 100 MB/s + 5 s of
    manifest and verification. Median ~1 min, mean ~1.6 min, the largest ~25 min.
    """
    h = zlib.crc32(str(instance_id).encode())
    u = ((h % 100_000) + 0.5) / 100_000
    z = statistics.NormalDist().inv_cdf(u)
    home_gb = min(1000.0, max(1.0, math.exp(math.log(16) + 1.0 * z)))
    db_mb = home_gb * 0.15 * 1024
    changed_mb = home_gb * 0.02 * 1024
    return 20 + db_mb / 80 + changed_mb / 100 + 5


@dataclass
class Night:
    cap_backup: int
    cap_app: int
    started: dict[str, datetime] = field(default_factory=dict)
    finished: dict[str, datetime] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)
    op_host: dict[str, tuple[str, str]] = field(default_factory=dict)
    release: dict[str, datetime] = field(default_factory=dict)  # by instance id
    op_instance: dict[str, str] = field(default_factory=dict)
    tick_seconds: list[float] = field(default_factory=list)
    missed: int = 0
    deferred_max: int = 0
    unfinished: int = 0


def simulate(cap_backup: int, cap_app: int) -> Night:
    """One night of the real dispatcher against the fleet, rolled back afterwards."""
    from django.db import transaction
    from django.test.utils import override_settings

    from backups.models import BackupPolicy
    from backups.policies import next_run_after
    from backups.services import backups_dispatch
    from provisioning.models import Operation

    night = Night(cap_backup, cap_app)
    try:
        with (
            override_settings(
                PANEL_BACKUP_MAX_PER_BACKUP_HOST=cap_backup,
                PANEL_BACKUP_MAX_PER_APP_HOST=cap_app,
            ),
            transaction.atomic(),
        ):
            policies = list(BackupPolicy.objects.select_related("instance__host"))
            for policy in policies:
                policy.next_run_at = next_run_after(policy, NIGHT)
                night.release[str(policy.instance_id)] = policy.next_run_at
            BackupPolicy.objects.bulk_update(policies, ["next_run_at"], batch_size=2000)
            hosts = {
                str(p.instance_id): (str(p.instance.host.backup_host_id), str(p.instance.host_id))
                for p in policies
            }
            ends: list[tuple[datetime, str]] = []
            now = NIGHT
            # Failed instances are not backed up (the dispatcher skips them): not part of the night.
            total = sum(1 for p in policies if p.instance.status in ("running", "stopped"))
            while now < NIGHT + HORIZON:
                done = []
                while ends and ends[0][0] <= now:
                    end, op_id = heapq.heappop(ends)
                    night.finished[op_id] = end
                    done.append(op_id)
                if done:
                    Operation.objects.filter(id__in=done).update(
                        status="succeeded", finished_at=now
                    )
                tick = time.perf_counter()
                result = backups_dispatch(now=now)
                night.tick_seconds.append(time.perf_counter() - tick)
                night.missed += len(result["missed"])
                night.deferred_max = max(night.deferred_max, len(result["deferred"]))
                started = result["started"]
                if started:
                    Operation.objects.filter(id__in=started, status="pending").update(
                        status="running", started_at=now, heartbeat_at=now
                    )
                    for op_id, instance_id in Operation.objects.filter(id__in=started).values_list(
                        "id", "instance_id"
                    ):
                        op_id, instance_id = str(op_id), str(instance_id)
                        seconds = backup_seconds(instance_id)
                        night.started[op_id] = now
                        night.duration[op_id] = seconds
                        night.op_instance[op_id] = instance_id
                        night.op_host[op_id] = hosts[instance_id]
                        heapq.heappush(ends, (now + timedelta(seconds=seconds), op_id))
                if len(night.finished) == total:
                    break
                now += TICK
            night.unfinished = total - len(night.finished)
            raise Rollback
    except Rollback:
        pass
    return night


@dataclass
class Overhead:
    n: int
    start_ms: list[float]
    execute_ms: list[float]
    start_queries: float
    execute_queries: float


def overhead(n: int) -> Overhead:
    """Create, claim and finish ``n`` no-op operations through panel.operations, committed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from panel.operations import operation_execute, operation_handler, operation_start
    from provisioning.models import AtlassianInstance, Operation

    @operation_handler("bench.noop")
    def _noop(ctx: Any) -> dict:
        ctx.step("bench: nothing to do", command="true", exit_code=0, duration_ms=0)
        return {}

    instance = AtlassianInstance.objects.select_related("tenant").first()
    start_ms, execute_ms, ids = [], [], []
    q_start = q_exec = 0
    for k in range(n):
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            op = operation_start(kind="bench.noop", actor=None, instance=instance, params={"n": k})
            t1 = time.perf_counter()
        q_start += len(captured)
        with CaptureQueriesContext(connection) as captured:
            t2 = time.perf_counter()
            status = operation_execute(op.id)
            t3 = time.perf_counter()
        q_exec += len(captured)
        assert status == "succeeded", status
        ids.append(op.id)
        start_ms.append((t1 - t0) * 1000)
        execute_ms.append((t3 - t2) * 1000)
    Operation.objects.filter(id__in=ids).delete()
    try:
        import redis
        from django.conf import settings

        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # the bench's own db
    except Exception as exc:  # noqa: BLE001 - a leftover queue is harmless
        print(f"could not flush the bench broker: {exc}")
    return Overhead(n, start_ms, execute_ms, q_start / n, q_exec / n)


def _fmt(td: timedelta | float) -> str:
    seconds = td.total_seconds() if isinstance(td, timedelta) else td
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def describe(night: Night, n_backup_hosts: int, n_app_hosts: int) -> dict[str, Any]:
    work_total = sum(night.duration.values())
    per_backup: dict[str, float] = defaultdict(float)
    per_app: dict[str, float] = defaultdict(float)
    for op_id, seconds in night.duration.items():
        b, a = night.op_host[op_id]
        per_backup[b] += seconds
        per_app[a] += seconds
    capacity = n_backup_hosts * night.cap_backup
    release_bound = max(
        (night.release[night.op_instance[o]] - WINDOW_START).total_seconds() + d
        for o, d in night.duration.items()
    )
    bounds = {
        "total work / capacity": work_total / capacity,
        "busiest backup host / its cap": max(per_backup.values()) / night.cap_backup,
        "busiest app host / its cap": max(per_app.values()) / night.cap_app,
        "latest release + its backup": release_bound,
    }
    end = max(night.finished.values()) if night.finished else WINDOW_START
    makespan = (end - WINDOW_START).total_seconds()
    waits = [
        (night.started[o] - night.release[night.op_instance[o]]).total_seconds()
        for o in night.started
    ]
    hours: dict[int, Counter] = defaultdict(Counter)
    for t in night.started.values():
        hours[int((t - WINDOW_START).total_seconds() // 3600)]["started"] += 1
    for t in night.finished.values():
        hours[int((t - WINDOW_START).total_seconds() // 3600)]["finished"] += 1
    busy_by_hour: dict[int, float] = defaultdict(float)
    for o, s in night.started.items():
        f = night.finished.get(o, s + timedelta(seconds=night.duration[o]))
        t = s
        while t < f:
            h = int((t - WINDOW_START).total_seconds() // 3600)
            edge = WINDOW_START + timedelta(hours=h + 1)
            busy_by_hour[h] += (min(f, edge) - t).total_seconds()
            t = min(f, edge)
    return {
        "work_total": work_total,
        "capacity": capacity,
        "bounds": bounds,
        "bound": max(bounds.values()),
        "makespan": makespan,
        "utilisation": work_total / (capacity * makespan) if makespan else 0,
        "wait_p50": statistics.median(waits) if waits else 0,
        "wait_p95": sorted(waits)[int(0.95 * (len(waits) - 1))] if waits else 0,
        "hours": hours,
        "busy_by_hour": busy_by_hour,
        "durations": sorted(night.duration.values()),
    }


def report(nights: list[tuple[Night, dict]], ovh: Overhead, info: dict, fleet: dict) -> str:
    lines = [
        "# Nightly backup scheduling at fleet size",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/scheduler_bench.py` "
        f"(load average at start {info['load']}).",
        "",
        f"- Machine: {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- Python {info['python']}, PostgreSQL {info['postgresql']} (same machine)",
        f"- Fleet: {fleet['instances']:,} instances on {fleet['app_hosts']} app hosts, "
        f"{fleet['backup_hosts']} backup hosts (25 app hosts, 500 instances each); "
        f"{fleet['operations']:,} earlier operations in the table",
        "- Policies: daily, window 01:00 UTC, each instance at its stable jitter within 60 min",
        "- Dispatcher: `backups.services.backups_dispatch`, the real code on PostgreSQL, called "
        "once per simulated minute (as beat does); executor simulated (claim at once, finish "
        "after the modelled backup time); each night rolled back",
    ]
    d0 = nights[0][1]["durations"]
    lines += [
        f"- Modelled backup time per instance: median {statistics.median(d0) / 60:.1f} min, "
        f"mean {statistics.mean(d0) / 60:.1f} min, p95 {d0[int(0.95 * (len(d0) - 1))] / 60:.1f}"
        f" min, max {d0[-1] / 60:.1f} min; total {sum(d0) / 3600:,.0f} backup-hours a night",
        "",
        "## Makespan against the lower bound",
        "",
        "| cap per backup host | cap per app host | slots | makespan | lower bound | makespan "
        "/ bound | slot use | wait p50 | wait p95 | started > 15 min late (missed) | "
        "dispatch tick mean / max | unfinished |",
        "| ---: | ---: | ---: | --- | --- | ---: | ---: | --- | --- | ---: | --- | ---: |",
    ]
    for night, d in nights:
        ticks = night.tick_seconds
        lines.append(
            f"| {night.cap_backup} | {night.cap_app} | {d['capacity']} | {_fmt(d['makespan'])} "
            f"| {_fmt(d['bound'])} | {d['makespan'] / d['bound']:.2f} | "
            f"{100 * d['utilisation']:.0f} % | {_fmt(d['wait_p50'])} | {_fmt(d['wait_p95'])} | "
            f"{night.missed:,} | {1000 * statistics.mean(ticks):.0f} ms / "
            f"{1000 * max(ticks):.0f} ms | {night.unfinished} |"
        )
    lines += ["", "Lower bounds (the largest is the one in the table):", ""]
    for night, d in nights:
        parts = ", ".join(f"{name} {_fmt(v)}" for name, v in d["bounds"].items())
        lines.append(f"- cap {night.cap_backup}: {parts}")
    for night, d in nights:
        lines += [
            "",
            f"## The plan with {night.cap_backup} per backup host, hour by hour",
            "",
            "| hour from 01:00 | backups started | finished | slots busy |",
            "| --- | ---: | ---: | ---: |",
        ]
        for h in sorted(set(d["hours"]) | set(d["busy_by_hour"])):
            busy = d["busy_by_hour"].get(h, 0) / (3600 * d["capacity"])
            lines.append(
                f"| {h:02d}-{h + 1:02d} | {d['hours'][h]['started']:,} | "
                f"{d['hours'][h]['finished']:,} | {100 * busy:.0f} % |"
            )
    s, e = sorted(ovh.start_ms), sorted(ovh.execute_ms)
    lines += [
        "",
        "## The panel's own overhead per operation",
        "",
        f"{ovh.n} no-op operations through `panel.operations`, every write committed "
        "(autocommit, as a worker runs), on the same PostgreSQL with the fleet's 100,000 "
        "operations and 1,000,000 steps in the tables:",
        "",
        "| phase | what | queries | p50 ms | p95 ms |",
        "| --- | --- | ---: | ---: | ---: |",
        f"| request | `operation_start`: insert, audit event, enqueue on Redis after commit | "
        f"{ovh.start_queries:.0f} | {statistics.median(s):.2f} | "
        f"{s[int(0.95 * (len(s) - 1))]:.2f} |",
        f"| run | `operation_execute`: conditional claim, heartbeat thread, one logged step, "
        f"terminal update | {ovh.execute_queries:.0f} | {statistics.median(e):.2f} | "
        f"{e[int(0.95 * (len(e) - 1))]:.2f} |",
        f"| total | | {ovh.start_queries + ovh.execute_queries:.0f} | "
        f"{statistics.median(s) + statistics.median(e):.2f} | |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", default="2,4", help="caps per backup host to simulate")
    parser.add_argument("--cap-app", type=int, default=1)
    parser.add_argument("--overhead", type=int, default=300)
    args = parser.parse_args()

    import django

    django.setup()
    import panel.operations
    from bench.api_bench import machine
    from provisioning.models import AtlassianInstance, Host, Operation

    info = machine()
    fleet = {
        "instances": AtlassianInstance.objects.count(),
        "app_hosts": Host.objects.filter(role="app").count(),
        "backup_hosts": Host.objects.filter(role="backup").count(),
        "operations": Operation.objects.count(),
    }
    if fleet["instances"] < 10_000:
        raise SystemExit("panel_bench is not seeded: run bench/fleet_seed.py first")

    # The simulated nights start operations but never run them: nothing goes to the broker.
    real_enqueue = panel.operations.operation_enqueue
    panel.operations.operation_enqueue = lambda operation_id: None
    nights = []
    for cap in (int(c) for c in args.caps.split(",")):
        started = time.monotonic()
        night = simulate(cap, args.cap_app)
        d = describe(night, fleet["backup_hosts"], fleet["app_hosts"])
        nights.append((night, d))
        took = time.monotonic() - started
        print(
            f"cap {cap}: makespan {_fmt(d['makespan'])}, bound {_fmt(d['bound'])}, ratio "
            f"{d['makespan'] / d['bound']:.2f}, missed {night.missed}, tick mean "
            f"{1000 * statistics.mean(night.tick_seconds):.0f} ms ({took:.0f} s)",
            flush=True,
        )
    panel.operations.operation_enqueue = real_enqueue
    ovh = overhead(args.overhead)
    print(
        f"overhead: start {statistics.median(ovh.start_ms):.2f} ms, execute "
        f"{statistics.median(ovh.execute_ms):.2f} ms"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report(nights, ovh, info, fleet))
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
