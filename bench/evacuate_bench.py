#!/usr/bin/env python3
"""Benchmark of host evacuation (issue #15) on the lab (not part of tests).

    .venv/bin/python bench/evacuate_bench.py            # 4 stand-in instances
    .venv/bin/python bench/evacuate_bench.py -n 6

N Jira stand-ins (each with ~20 MB of home data and ~50,000 database rows) run on lab app2,
each with one backup point on backup1. app2 dies (its sshd and every container of its projects
killed). The panel evacuates it onto app1 with ``PANEL_EVACUATE_PARALLEL=1`` (one restore after
another: the sum of single restores). app2 comes back and is fenced; then app1 dies and the
same instances are evacuated back onto app2 with ``PANEL_EVACUATE_PARALLEL=2``. Rows:

* the serial evacuation's total, which is the sum of its single restores plus the parent's
  overhead (planning, the per-instance steps);
* the parallel evacuation's total against that sum and against its lower bound, the sum divided
  by the parallelism (perfect overlap), and the largest single restore (nothing finishes before
  the slowest part);
* the RTO each instance achieved (failure to answering again) and the fence of the returned host;
* the achieved RPO of one more instance that archives its WAL, with a writer committing a row
  every second until the host is killed: how much older its newest restored row is than the
  kill (its database comes back from its base backup and archived WAL, replayed to the end).

It needs the lab (``scripts/lab up``), PostgreSQL on 127.0.0.1 (a scratch database
``panel_bench_evacuate`` is made and dropped) and root (the lab's data roots). DNS,
certificates and the proxy are off here (their cost is per instance and the same either way).
Results are printed and written to ``bench/results/evacuate.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BENCH_DB = "panel_bench_evacuate"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.test_settings")
HOME_FILES, FILE_BYTES, DB_ROWS = 20, 1024 * 1024, 50_000


def sh(*argv: str, check: bool = True, timeout: float = 3600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def database(action: str) -> None:
    import psycopg

    if action == "drop":
        from django.db import connections

        connections.close_all()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        if action == "create":
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def containers_under(root: str) -> list[str]:
    from tests.support.lab import containers_under as under

    return under(root)


def wait_ssh(address: str, port: int, seconds: float = 90) -> None:
    from tests.support.lab import wait_ssh as wait

    wait(address, port, seconds)


class Bench:
    def __init__(self, count: int) -> None:
        self.count = count
        self.rows: list[tuple[str, str, str]] = []
        self.instances: list[Any] = []
        self.projects: set[str] = set()
        self.killed: list[str] = []

    def run(self, op: Any) -> Any:
        from panel.operations import operation_execute

        operation_execute(op.id)
        op.refresh_from_db()
        if op.status != "succeeded":
            raise RuntimeError(f"{op.kind} failed: {op.error}")
        return op

    def setup(self) -> None:
        from django.contrib.auth.models import Group, User
        from django.core.management import call_command

        import panel.operations
        from panel.access import PLATFORM_ADMIN_GROUP, access_for_user
        from panel.registry import registry
        from tenants.models import Tenant
        from tests.support.backup_lab import create_instance, enrol_and_provision

        call_command("migrate", verbosity=0)
        panel.operations.operation_enqueue = lambda operation_id: None
        registry["instance_hooks"]["publish"][:] = []
        registry["instance_hooks"]["unpublish"][:] = []
        self.state = json.loads((REPO / ".lab" / "state.json").read_text())
        self.specs = {h["name"]: h for h in self.state["hosts"]}
        user = User.objects.create_user("bench-pat", "pat@bench.example", "x")
        user.groups.add(Group.objects.get_or_create(name=PLATFORM_ADMIN_GROUP)[0])
        self.actor = access_for_user(user)
        tenant = Tenant.objects.create(
            name="Bench", slug="bench", contact_email="b@x.y", default_tier="tier3"
        )
        self.backup = enrol_and_provision(self.actor, self.specs["backup1"])
        self.app1 = enrol_and_provision(self.actor, self.specs["app1"], backup_host=self.backup)
        self.app2 = enrol_and_provision(self.actor, self.specs["app2"], backup_host=self.backup)
        suffix = secrets.token_hex(2)
        from backups.services import backup_start, wal_enable_start

        for i in range(self.count):
            inst = create_instance(self.actor, tenant, self.app2, f"ev{suffix}-{i}")
            self.instances.append(inst)
            self.projects.add(inst.name)
            self.fill(inst)
            self.run(backup_start(actor=self.actor, instance=inst))
        # One more whose WAL is archived, with a writer committing a row every second until the
        # host dies: the achieved RPO is how much older its newest restored row is.
        self.archiving = create_instance(self.actor, tenant, self.app2, f"ev{suffix}-wal")
        self.instances.append(self.archiving)
        self.projects.add(self.archiving.name)
        self.fill(self.archiving)
        self.run(wal_enable_start(actor=self.actor, instance=self.archiving))
        self.run(backup_start(actor=self.actor, instance=self.archiving))
        self.archiving.refresh_from_db()
        self.writer(self.archiving)

    def fill(self, inst: Any) -> None:
        from provisioning.compose import instance_dir, project_name

        data = Path(instance_dir(inst)) / "home" / "data" / "bulk"
        data.mkdir(parents=True, exist_ok=True)
        for i in range(HOME_FILES):
            (data / f"f{i:03d}.bin").write_bytes(os.urandom(FILE_BYTES))
        sh("chown", "-R", "2001:2001", str(data.parent))
        payload = " || ".join(["md5(random()::text)"] * 4)
        sql = f"CREATE TABLE bench_rows AS SELECT g AS id, {payload} AS p FROM generate_series(1, {DB_ROWS}) g;"  # noqa: E501, S608
        sh(
            "docker", "compose", "-p", project_name(inst), "exec", "-T", "db", "psql", "-q",
            "-U", inst.db_user, "-d", inst.db_name, "-c", sql,
        )  # fmt: skip

    def psql(self, inst: Any, sql: str, *extra: str) -> str:
        from provisioning.compose import project_name

        return sh(
            "docker", "compose", "-p", project_name(inst), "exec", *extra, "-T", "db", "psql",
            "-X", "-A", "-t", "-q", "-U", inst.db_user, "-d", inst.db_name, "-c", sql,
        )  # fmt: skip

    def writer(self, inst: Any) -> None:
        """A row with its commit time every second, inside the database container (it dies
        with it), until the host is killed."""
        from provisioning.compose import project_name

        self.psql(inst, "CREATE TABLE rpo_writes (at timestamptz NOT NULL)")
        loop = (
            'while true; do psql -X -q -U "$1" -d "$2" '
            "-c 'INSERT INTO rpo_writes VALUES (now())'; sleep 1; done"
        )
        sh(
            "docker", "compose", "-p", project_name(inst), "exec", "-d", "db",
            "sh", "-c", loop, "sh", inst.db_user, inst.db_name,
        )  # fmt: skip
        time.sleep(20)  # a few shipper passes with the writer running

    def kill(self, host: Any) -> list[str]:
        from provisioning.hosts import host_health_probe

        # A health check just before: the host's last contact is the moment it dies, so each
        # RTO below runs from the failure (a real outage also counts the time until someone,
        # or the automatic evacuation, starts it).
        host_health_probe(host)
        doomed = containers_under(host.data_root)
        self.killed += doomed
        sh("docker", "kill", self.specs[host.name.removeprefix("lab-")]["container"])
        if doomed:
            sh("docker", "kill", *doomed, check=False)
        # the newest row the writer could have committed is from before this moment
        self.killed_at = datetime.now(UTC)
        host_health_probe(host)
        host.refresh_from_db()
        assert host.status == "unreachable", host.status
        return doomed

    def revive(self, host: Any) -> float:
        """Start the host's sshd again and let the panel fence it; returns the fence's time."""
        from provisioning.hosts import host_health_probe
        from provisioning.models import Operation

        spec = self.specs[host.name.removeprefix("lab-")]
        sh("docker", "start", spec["container"])
        wait_ssh(spec["address"], int(spec["ssh_port"]))
        host_health_probe(host)
        fence = Operation.objects.filter(kind="host.fence", host=host).order_by("-created_at")[0]
        started = time.monotonic()
        self.run(fence)
        host.refresh_from_db()
        assert host.status == "ready", host.status
        return time.monotonic() - started

    def evacuate(self, host: Any, parallel: int) -> dict[str, Any]:
        from django.conf import settings

        from backups.evacuate import host_evacuate_start
        from provisioning.compose import project_name
        from provisioning.models import AtlassianInstance

        settings.PANEL_EVACUATE_PARALLEL = parallel
        started = time.monotonic()
        parent = self.run(host_evacuate_start(actor=self.actor, host=host))
        wall = time.monotonic() - started
        for inst in AtlassianInstance.objects.filter(pk__in=[i.pk for i in self.instances]):
            self.projects.add(project_name(inst))
        return {"wall": wall, **parent.result}

    def measure(self) -> None:
        from provisioning.models import Operation

        self.kill(self.app2)
        wal_killed_at = self.killed_at
        serial = self.evacuate(self.app2, 1)
        self.archiving.refresh_from_db()
        newest = datetime.fromisoformat(
            self.psql(self.archiving, "SELECT max(at) FROM rpo_writes").strip().replace(" ", "T")
        )
        rows_back = int(self.psql(self.archiving, "SELECT count(*) FROM rpo_writes").strip())
        rpo = (wal_killed_at - newest).total_seconds()
        wal_child = next(o for o in serial["instances"] if o["instance"] == self.archiving.name)
        fence_seconds = self.revive(self.app2)
        self.kill(self.app1)
        parallel = self.evacuate(self.app1, 2)
        self.revive(self.app1)
        n = len(self.instances)

        def restores(result: dict[str, Any]) -> list[float]:
            ids = [o["operation"] for o in result["instances"]]
            return [
                (op.result or {}).get("restore_seconds") or 0.0
                for op in Operation.objects.filter(pk__in=ids)
            ]

        singles = restores(serial)
        total_singles = sum(singles)
        lower = max(total_singles / 2, max(singles))
        par_singles = restores(parallel)
        self.rows += [
            (f"evacuate {n} instances, one at a time", f"{serial['wall']:.1f} s",
             f"sum of its {n} single restores {total_singles:.1f} s "
             f"(each {min(singles):.1f}-{max(singles):.1f} s); overhead "
             f"{serial['wall'] - total_singles:.1f} s"),
            (f"evacuate {n} instances, 2 at a time", f"{parallel['wall']:.1f} s",
             f"{parallel['wall'] / total_singles:.2f}x the sum of single restores; lower bound "
             f"max(sum/2, slowest) = {lower:.1f} s ({parallel['wall'] / lower:.2f}x it); its "
             f"restores took {min(par_singles):.1f}-{max(par_singles):.1f} s each (2 cores)"),
            ("RTO achieved (failure to answering), one at a time",
             f"{max(o['rto_seconds'] for o in serial['instances']):.1f} s worst",
             f"best {min(o['rto_seconds'] for o in serial['instances']):.1f} s"),
            ("RTO achieved, 2 at a time",
             f"{max(o['rto_seconds'] for o in parallel['instances']):.1f} s worst",
             f"best {min(o['rto_seconds'] for o in parallel['instances']):.1f} s"),
            ("achieved RPO: writer committing every second, host killed",
             f"{rpo:.1f} s",
             f"newest restored row vs the kill (target <= 60 s); {rows_back} rows back, database "
             f"from {wal_child.get('database_from')} (base backup + archived WAL replayed to its "
             "end), home from its point; WAL ships every 5 s"),
            (f"fence of the returned host ({n} old deployments)", f"{fence_seconds:.1f} s",
             "containers stopped, restart off, directories kept aside"),
        ]  # fmt: skip

    def cleanup(self) -> None:
        for name in ("app1", "app2"):
            spec = self.specs.get(name) if hasattr(self, "specs") else None
            if spec is None:
                continue
            subprocess.run(["docker", "start", spec["container"]], capture_output=True)
            wait_ssh(spec["address"], int(spec["ssh_port"]))
        # The hosts' proxies were killed with them; the lab's later users expect them running.
        for cid in self.killed:
            if "proxy" in sh("docker", "inspect", "-f", "{{.Name}}", cid, check=False):
                sh("docker", "start", cid, check=False)
        for project in self.projects:
            sh("docker", "compose", "-p", project, "down", "-v", "-t", "3", check=False)
            sh("docker", "network", "rm", f"panel-edge-{project}", check=False)
        for name in ("app1", "app2"):
            if not hasattr(self, "specs"):
                break
            root = self.specs[name]["data_root"]
            for inst in self.instances:
                sh("rm", "-rf", f"{root}/instances/{inst.name}", check=False)
            sh("rm", "-rf", f"{root}/evacuated", check=False)
            for inst in self.instances:
                sh("docker", "exec", self.specs["backup1"]["container"], "rm", "-rf",
                   f"{self.specs['backup1']['data_root']}/hosts/lab-{name}/{inst.name}",
                   check=False)  # fmt: skip
        from tests.support.lab import lab_key_remove

        for name, attr in (("app1", "app1"), ("app2", "app2"), ("backup1", "backup")):
            host = getattr(self, attr, None)
            if host is not None:
                lab_key_remove(self.state, name, host.ssh_public_key)

    def report(self) -> str:
        width = max(len(r[0]) for r in self.rows)
        load = os.getloadavg()[0]
        lines = [
            f"Evacuation benchmark ({self.count} Jira stand-ins of {HOME_FILES} MiB home and "
            f"{DB_ROWS} database rows each, plus one archiving its WAL; lab app2 -> app1 one at "
            f"a time, app1 -> app2 two at a time; {os.cpu_count()} cores, load {load:.1f} at the "
            "end), "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"| {'measure'.ljust(width)} | result | note |",
            f"| {'-' * width} | --- | --- |",
        ]
        lines += [f"| {a.ljust(width)} | {b} | {c} |" for a, b, c in self.rows]
        return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=4, help="instances on the failed host")
    args = parser.parse_args()
    database("create")
    import django

    django.setup()
    bench = Bench(args.n)
    try:
        bench.setup()
        bench.measure()
    finally:
        try:
            bench.cleanup()
        finally:
            database("drop")
    text = bench.report()
    print(text)
    out = REPO / "bench" / "results" / "evacuate.md"
    out.write_text(text)
    print(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
