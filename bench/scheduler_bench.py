"""Nightly backup scheduling at fleet size, with a simulated executor (run
``bench/fleet_seed.py`` first).

    .venv/bin/python bench/scheduler_bench.py [--caps 1,2,3,4] [--overhead 300] [--no-write]
    .venv/bin/python bench/scheduler_bench.py --caps 3 --overhead 0 --no-write   # quick look

The fleet: 10,000 instances on 500 app hosts, whose backups go to 20 backup hosts; every
instance has a daily policy due at 01:00 UTC plus its stable jitter (0-60 min).

**The dispatcher's plan.** The panel's own dispatcher (:func:`backups.services.backups_dispatch`)
runs against the real PostgreSQL fleet as in production: once per simulated minute (beat) and,
for its backup host, the moment each backup ends (the runner's listener,
:func:`backups.services.backup_ended_dispatch`), with the per-backup-host cap
(``PANEL_BACKUP_MAX_PER_BACKUP_HOST``) given by ``--caps`` and one backup at a time per app host
(``PANEL_BACKUP_MAX_PER_APP_HOST=1``). Its Operations are "run" by a simulated executor:
claimed at once, finished after the instance's modelled backup time (see
:func:`backup_seconds`), so the caps the dispatcher reads from the database are the real ones.
The night's slots are written (committed) and vacuumed first; each configuration then runs
inside a transaction that is rolled back. Reported: when work starts and ends per hour, the
makespan from the window's start to the last backup's end against its lower bounds (total
work / total capacity, the busiest backup host's and app host's work / their caps, the latest
release plus its backup), the runs flagged missed beside the same plan computed in continuous
time without the database (:func:`ideal_plan`), and the dispatcher's own time per call beside
what starting its backups costs.

**The panel's own overhead per operation.** Outside any transaction (every write committed,
as in production): ``operation_start`` (create the row, audit it, enqueue the task on Redis
after commit), then ``operation_execute`` (conditional claim, heartbeat thread, a handler that
logs one step, the terminal update, the ended-operation listeners) of a no-op kind,
``--overhead`` times; the rows are deleted afterwards.

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
    window: float = 0.0  # seconds a run may wait after it is due (PANEL_BACKUP_WINDOW_MINUTES)
    started: dict[str, datetime] = field(default_factory=dict)
    finished: dict[str, datetime] = field(default_factory=dict)
    duration: dict[str, float] = field(default_factory=dict)
    op_host: dict[str, tuple[str, str]] = field(default_factory=dict)
    release: dict[str, datetime] = field(default_factory=dict)  # by instance id
    op_instance: dict[str, str] = field(default_factory=dict)
    tick_seconds: list[float] = field(default_factory=list)  # beat's calls, every minute
    end_seconds: list[float] = field(default_factory=list)  # the listener's, one per ended backup
    start_seconds: list[float] = field(default_factory=list)  # in backup_start, per call
    ensure_seconds: list[float] = field(default_factory=list)  # policies for new instances
    missed: int = 0
    unfinished: int = 0
    ideal: dict[str, Any] = field(default_factory=dict)


def ideal_plan(
    jobs: list[tuple[str, str, float, float]], cap_backup: int, cap_app: int, window: float
) -> dict[str, Any]:
    """The same policy in continuous time, without the database: each backup host starts, the
    moment a slot frees or a run becomes due, the due run with the earliest deadline whose
    app host is under its cap. ``jobs``: (backup host, app host, release s, duration s).
    Its makespan and missed runs are what a dispatcher reacting instantly would reach."""
    by_host: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for b, a, release, seconds in jobs:
        by_host[b].append((release, seconds, a))
    makespan, missed, waits = 0.0, 0, []
    for runs in by_host.values():
        runs.sort()
        pending: list[tuple[float, int, str, float, float]] = []  # deadline, seq, app, dur, rel
        running: list[tuple[float, str]] = []  # end, app host
        busy_app: Counter = Counter()
        t, k, seq = 0.0, 0, 0
        while k < len(runs) or pending or running:
            while k < len(runs) and runs[k][0] <= t:
                release, seconds, a = runs[k]
                heapq.heappush(pending, (release + window, seq, a, seconds, release))
                seq, k = seq + 1, k + 1
            skipped = []
            while pending and len(running) < cap_backup:
                item = heapq.heappop(pending)
                if busy_app[item[2]] >= cap_app:
                    skipped.append(item)
                    continue
                deadline, _, a, seconds, release = item
                missed += t > deadline
                waits.append(t - release)
                busy_app[a] += 1
                heapq.heappush(running, (t + seconds, a))
            for item in skipped:
                heapq.heappush(pending, item)
            upcoming = [running[0][0]] if running else []
            if k < len(runs):
                upcoming.append(runs[k][0])
            if not upcoming:
                break
            t = min(upcoming)
            while running and running[0][0] <= t:
                end, a = heapq.heappop(running)
                busy_app[a] -= 1
                makespan = max(makespan, end)
    return {"makespan": makespan, "missed": missed, "waits": sorted(waits)}


def simulate(cap_backup: int, cap_app: int) -> Night:
    """One night of the real dispatcher against the fleet, rolled back afterwards: beat's call
    every minute, and the runner's listener (``backup_ended_dispatch``) the moment each
    backup ends, as in production."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.test.utils import override_settings

    import backups.services as services
    from backups.models import BackupOperationKind, BackupPolicy
    from backups.policies import next_run_after
    from provisioning.models import Operation

    night = Night(cap_backup, cap_app)
    real_start, real_ensure = services.backup_start, services._policies_ensure

    def timed_start(**kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_start(**kwargs)
        finally:
            night.start_seconds.append(time.perf_counter() - t0)

    def timed_ensure() -> None:
        t0 = time.perf_counter()
        real_ensure()
        night.ensure_seconds.append(time.perf_counter() - t0)

    # Tonight's slots, committed and vacuumed before the night (as production's would be after
    # a day of autovacuum): rewriting every row inside the night's transaction would leave
    # 10,000 dead index entries for the dispatcher's index scans to step over.
    policies = list(BackupPolicy.objects.select_related("instance__host"))
    for policy in policies:
        policy.next_run_at = next_run_after(policy, NIGHT)
        night.release[str(policy.instance_id)] = policy.next_run_at
    BackupPolicy.objects.bulk_update(policies, ["next_run_at"], batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE backups_backuppolicy")
        cursor.execute("VACUUM ANALYZE provisioning_operation")
    services.backup_start, services._policies_ensure = timed_start, timed_ensure
    try:
        with (
            override_settings(
                PANEL_BACKUP_MAX_PER_BACKUP_HOST=cap_backup,
                PANEL_BACKUP_MAX_PER_APP_HOST=cap_app,
            ),
            transaction.atomic(),
        ):
            night.window = settings.PANEL_BACKUP_WINDOW_MINUTES * 60.0
            hosts = {
                str(p.instance_id): (str(p.instance.host.backup_host_id), str(p.instance.host_id))
                for p in policies
            }
            # Failed instances are not backed up (the dispatcher skips them): not part of the night.
            total = sum(1 for p in policies if p.instance.status in ("running", "stopped"))
            ends: list[tuple[datetime, str]] = []

            def begun(result: dict[str, list[str]], now: datetime) -> None:
                """The simulated executor claims what the dispatcher started, at once."""
                night.missed += len(result["missed"])
                started = result["started"]
                if not started:
                    return
                Operation.objects.filter(id__in=started, status="pending").update(
                    status="running", started_at=now, heartbeat_at=now
                )
                for op_pk, instance_pk in Operation.objects.filter(id__in=started).values_list(
                    "id", "instance_id"
                ):
                    op_id, instance_id = str(op_pk), str(instance_pk)
                    seconds = backup_seconds(instance_id)
                    night.started[op_id] = now
                    night.duration[op_id] = seconds
                    night.op_instance[op_id] = instance_id
                    night.op_host[op_id] = hosts[instance_id]
                    heapq.heappush(ends, (now + timedelta(seconds=seconds), op_id))

            tick = NIGHT
            while tick < NIGHT + HORIZON and len(night.finished) < total:
                if ends and ends[0][0] <= tick:
                    end, op_id = heapq.heappop(ends)
                    Operation.objects.filter(id=op_id).update(status="succeeded", finished_at=end)
                    night.finished[op_id] = end
                    b, _ = night.op_host[op_id]
                    ended = Operation(
                        id=op_id,
                        kind=BackupOperationKind.BACKUP_CREATE,
                        status="succeeded",
                        instance_id=night.op_instance[op_id],
                        params={"backup_host": b},
                        started_at=night.started[op_id],
                        finished_at=end,
                    )
                    t0 = time.perf_counter()
                    result = services.backup_ended_dispatch(ended)
                    night.end_seconds.append(time.perf_counter() - t0)
                    begun(result or {"started": [], "missed": []}, end)
                    continue
                t0 = time.perf_counter()
                result = services.backups_dispatch(now=tick)
                night.tick_seconds.append(time.perf_counter() - t0)
                begun(result, tick)
                tick += TICK
            night.unfinished = total - len(night.finished)
            raise Rollback
    except Rollback:
        pass
    finally:
        services.backup_start, services._policies_ensure = real_start, real_ensure
    jobs = [
        (
            night.op_host[o][0],
            night.op_host[o][1],
            (night.release[night.op_instance[o]] - WINDOW_START).total_seconds(),
            d,
        )
        for o, d in night.duration.items()
    ]
    night.ideal = ideal_plan(jobs, cap_backup, cap_app, night.window)
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
    late = sum(
        1
        for o in night.started
        if (night.started[o] - night.release[night.op_instance[o]]).total_seconds() > night.window
    )
    return {
        "late": late,
        "ideal_makespan": night.ideal.get("makespan", 0.0),
        "ideal_missed": night.ideal.get("missed", 0),
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


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{1000 * statistics.mean(values):.1f} / {1000 * max(values):.0f}"


def report(nights: list[tuple[Night, dict]], ovh: Overhead | None, info: dict, fleet: dict) -> str:
    window_h = nights[0][0].window / 3600
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
        "- Policies: daily, window 01:00 UTC, each instance at its stable jitter within 60 min; "
        f"a run is on time when it starts within {window_h:g} h of being due "
        "(`PANEL_BACKUP_WINDOW_MINUTES`), *missed* when later",
        "- Dispatcher: `backups.services.backups_dispatch`, the real code on PostgreSQL, called "
        "once per simulated minute (as beat does) and, for its backup host, the moment each "
        "backup ends (`backup_ended_dispatch`, the runner's listener); executor simulated "
        "(claim at once, finish after the modelled backup time); each night rolled back",
        "- Ideal plan: the same rule (earliest deadline first within the caps) in continuous "
        "time without the database, reacting instantly to every release and end",
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
        "/ bound | slot use | ideal plan | wait p50 | wait p95 | missed | missed by the ideal "
        "plan | unfinished |",
        "| ---: | ---: | ---: | --- | --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for night, d in nights:
        lines.append(
            f"| {night.cap_backup} | {night.cap_app} | {d['capacity']} | {_fmt(d['makespan'])} "
            f"| {_fmt(d['bound'])} | {d['makespan'] / d['bound']:.2f} | "
            f"{100 * d['utilisation']:.0f} % | {_fmt(d['ideal_makespan'])} | "
            f"{_fmt(d['wait_p50'])} | {_fmt(d['wait_p95'])} | {night.missed:,} | "
            f"{d['ideal_missed']:,} | {night.unfinished} |"
        )
    lines += [
        "",
        "*Missed* is what the dispatcher flagged (started more than the window after being "
        "due; the bench recounts it from the start times: "
        + ", ".join(f"cap {n.cap_backup}: {d['late']:,}" for n, d in nights)
        + "). Slot use is the backup-hours over slots × makespan.",
        "",
        "Lower bounds (the largest is the one in the table):",
        "",
    ]
    for night, d in nights:
        parts = ", ".join(f"{name} {_fmt(v)}" for name, v in d["bounds"].items())
        lines.append(f"- cap {night.cap_backup}: {parts}")
    lines += [
        "",
        "## The dispatcher's own time",
        "",
        "Milliseconds per call, mean / max. A call cannot cost less than starting its backups "
        "(`backup_start`: the operation row, its audit event and the enqueue after commit, "
        "measured inside the same calls); the rest is reading the counts and the due runs.",
        "",
        "| cap per backup host | beat calls | per beat call | calls after a backup ended | "
        "per call after an end | backups started | `backup_start` per backup | the rest, per "
        "call | policies for new instances (every tenth beat call) |",
        "| ---: | ---: | --- | ---: | --- | ---: | --- | ---: | --- |",
    ]
    for night, _d in nights:
        calls = night.tick_seconds + night.end_seconds
        rest = (sum(calls) - sum(night.start_seconds)) / max(1, len(calls))
        lines.append(
            f"| {night.cap_backup} | {len(night.tick_seconds):,} | {_ms(night.tick_seconds)} | "
            f"{len(night.end_seconds):,} | {_ms(night.end_seconds)} | "
            f"{len(night.start_seconds):,} | {_ms(night.start_seconds)} | {1000 * rest:.1f} | "
            f"{_ms(night.ensure_seconds)} |"
        )
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
    if ovh is not None:
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
            f"terminal update, ended-operation listeners | {ovh.execute_queries:.0f} | "
            f"{statistics.median(e):.2f} | {e[int(0.95 * (len(e) - 1))]:.2f} |",
            f"| total | | {ovh.start_queries + ovh.execute_queries:.0f} | "
            f"{statistics.median(s) + statistics.median(e):.2f} | |",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", default="1,2,3,4", help="caps per backup host to simulate")
    parser.add_argument("--cap-app", type=int, default=1)
    parser.add_argument("--overhead", type=int, default=300, help="0: leave the overhead out")
    parser.add_argument(
        "--no-write", action="store_true", help="print the tables, leave the results file alone"
    )
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
            f"{d['makespan'] / d['bound']:.2f}, slot use {100 * d['utilisation']:.0f} %, "
            f"missed {night.missed} (ideal {d['ideal_missed']}), beat call "
            f"{_ms(night.tick_seconds)} ms, after an end {_ms(night.end_seconds)} ms "
            f"({took:.0f} s)",
            flush=True,
        )
    panel.operations.operation_enqueue = real_enqueue
    ovh = overhead(args.overhead) if args.overhead else None
    if ovh is not None:
        print(
            f"overhead: start {statistics.median(ovh.start_ms):.2f} ms, execute "
            f"{statistics.median(ovh.execute_ms):.2f} ms"
        )
    text = report(nights, ovh, info, fleet)
    if args.no_write:
        print(text)
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
