#!/usr/bin/env python3
"""Benchmark of the panel's backups against the seed's method, on the lab (not part of tests).

    .venv/bin/python bench/backup_bench.py --small     # ~50 MB home, ~30 MB database
    .venv/bin/python bench/backup_bench.py             # ~1 GB home, ~300 MB database

One Jira stand-in on lab app1, backed up to lab backup1 through the panel's own code (real
pg_dump, rsync with the app host's rrsync-restricted key, --link-dest points, verification,
7/4/12 retention). It measures:

* downtime per backup: the panel's hot mode, its cold mode, and the seed's method (stop app and
  database, rsync home and the database directory, start again);
* total bytes on the backup host after 40 simulated days with ~1% of the data changing a day:
  the panel's points vs the seed's method (an rsync target plus rsnapshot 7/4/12 of it, with the
  stopped database directory instead of a dump) vs the unique content of the panel's points;
* time of an unchanged incremental backup vs the first full one;
* restore time (in place, and into a new instance) vs a plain rsync of the same data between
  the same hosts.

It needs the lab (``scripts/lab up``), PostgreSQL on 127.0.0.1 (a scratch database
``panel_bench_backups`` is created and dropped) and root (the lab's data roots). Results are
printed and written to ``bench/results/backup_bench_<size>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BENCH_DB = "panel_bench_backups"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.test_settings")

SIZES = {
    "small": {"files": 100, "file_bytes": 512 * 1024, "db_rows": 100_000},
    "full": {"files": 1000, "file_bytes": 1024 * 1024, "db_rows": 1_000_000},
}
DAYS = 40
START = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)  # a Wednesday


def sh(*argv: str, check: bool = True, timeout: float = 3600, input: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def backup1(*argv: str, check: bool = True) -> str:
    return sh("docker", "exec", "panel-lab-backup1", *argv, check=check)


def database_create() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def database_drop() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


# --- the seed's method: rsync of the stopped home + database directory, rsnapshot 7/4/12 -----


def seed_rsnapshot_conf(root: str) -> str:
    """rsnapshot's configuration for the seed's method (fields are separated by tabs)."""
    rows = [
        ("config_version", "1.2"),
        ("snapshot_root", f"{root}/snapshots/"),
        ("no_create_root", "0"),
        ("cmd_cp", "/bin/cp"),
        ("cmd_rm", "/bin/rm"),
        ("cmd_rsync", "/usr/bin/rsync"),
        ("retain", "daily", "7"),
        ("retain", "weekly", "4"),
        ("retain", "monthly", "12"),
        ("verbose", "1"),
        ("loglevel", "2"),
        ("lockfile", f"{root}/rsnapshot.pid"),
        ("link_dest", "1"),
        ("rsync_long_args", "--delete --numeric-ids --relative --delete-excluded"),
        ("backup", f"{root}/sync/", "localhost/"),
    ]
    return "\n".join("\t".join(row) for row in rows) + "\n"


class Bench:
    def __init__(self, size: str) -> None:
        self.size = size
        self.spec = SIZES[size]
        self.rows: list[tuple[str, str, str]] = []
        self.raw: dict[str, Any] = {"size": size, **self.spec, "days": DAYS}

    # setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        from django.contrib.auth.models import Group, User
        from django.core.management import call_command

        from panel.access import PLATFORM_ADMIN_GROUP, access_for_user
        from panel.registry import registry
        from tenants.models import Tenant

        call_command("migrate", verbosity=0)
        import panel.operations

        panel.operations.operation_enqueue = lambda op_id: None
        registry["instance_hooks"]["publish"][:] = []
        registry["instance_hooks"]["unpublish"][:] = []
        state = json.loads((REPO / ".lab" / "state.json").read_text())
        self.state = state
        specs = {h["name"]: h for h in state["hosts"]}
        user = User.objects.create_user("bench-pat", "pat@bench.example", "x")
        user.groups.add(Group.objects.get_or_create(name=PLATFORM_ADMIN_GROUP)[0])
        self.actor = access_for_user(user)
        self.tenant = Tenant.objects.create(
            name="Bench", slug="bench", contact_email="b@x.y", default_tier="tier3"
        )
        self.backup_host = self.enrol(specs["backup1"])
        self.app_host = self.enrol(specs["app1"], backup_host=self.backup_host)
        self.suffix = secrets.token_hex(3)
        self.instance = self.create_instance(f"bench{self.suffix}")

    def run(self, op: Any) -> Any:
        from panel.operations import operation_execute

        operation_execute(op.id)
        op.refresh_from_db()
        if op.status != "succeeded":
            raise RuntimeError(f"{op.kind} failed: {op.error}")
        return op

    def enrol(self, spec: dict[str, Any], **extra: Any) -> Any:
        from provisioning.hosts import host_enrol, host_provision
        from provisioning.models import Host

        op = self.run(
            host_enrol(
                actor=self.actor,
                name=f"lab-{spec['name']}",
                role=spec["role"],
                address=spec["address"],
                ssh_port=int(spec["ssh_port"]),
                ssh_user=spec["ssh_user"],
                data_root=spec["data_root"],
                private_address=spec["private_address"],
                peer_ssh_port=22,
                host_key_fingerprint=spec["host_key_fingerprint"],
                root_password=spec["root_password"],
                **extra,
            )
        )
        host = Host.objects.get(pk=op.host_id)
        self.run(host_provision(actor=self.actor, host=host))
        return Host.objects.select_related("backup_host").get(pk=host.pk)

    def create_instance(self, name: str) -> Any:
        from provisioning.models import AtlassianInstance
        from provisioning.services import instance_create

        op = self.run(
            instance_create(
                actor=self.actor,
                tenant=self.tenant,
                name=name,
                product="jira-software",
                version="9.12.0",
                hostname=f"{name}.bench.example",
                host=self.app_host,
                heap_min_mb=512,
                heap_max_mb=1024,
                tier="tier3",
                extra_env={"STANDIN_STARTUP_SECONDS": "2", "STANDIN_ACCESS_LOG": "0"},
            )
        )
        return AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
            pk=op.instance_id
        )

    @property
    def idir(self) -> str:
        return f"{self.app_host.data_root}/instances/{self.instance.name}"

    @property
    def area(self) -> str:
        return f"{self.backup_host.data_root}/hosts/{self.app_host.name}/{self.instance.name}"

    @property
    def seed_area(self) -> str:
        return self.area + "-seed"

    def psql(self, sql: str) -> str:
        inst = self.instance
        return sh(
            "docker",
            "compose",
            "-p",
            inst.name,
            "exec",
            "-T",
            "db",
            "psql",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            inst.db_user,
            "-d",
            inst.db_name,
            input=sql,
        )

    def fill(self) -> None:
        """Home: incompressible files; database: rows of random text."""
        data = Path(self.idir) / "home" / "data" / "bulk"
        data.mkdir(parents=True, exist_ok=True)
        for i in range(self.spec["files"]):
            (data / f"f{i:05d}.bin").write_bytes(os.urandom(self.spec["file_bytes"]))
        sh("chown", "-R", "2001:2001", f"{self.idir}/home/data")
        payload = " || ".join(["md5(random()::text)"] * 6)
        rows = int(self.spec["db_rows"])
        self.psql(
            f"CREATE TABLE bench_rows AS SELECT g AS id, {payload} AS payload "  # noqa: S608
            f"FROM generate_series(1, {rows}) g;\n"
            "ALTER TABLE bench_rows ADD PRIMARY KEY (id);\n"
        )
        self.raw["home_bytes"] = int(sh("du", "-s", "-B1", f"{self.idir}/home").split()[0])
        self.raw["pgdata_bytes"] = int(sh("du", "-s", "-B1", f"{self.idir}/db").split()[0])

    def change_one_percent(self, day: int) -> None:
        files = self.spec["files"]
        count = max(1, files // 100)
        data = Path(self.idir) / "home" / "data" / "bulk"
        for k in range(count):
            path = data / f"f{(day * count + k) % files:05d}.bin"
            path.write_bytes(os.urandom(self.spec["file_bytes"]))
            os.chown(path, 2001, 2001)
        payload = " || ".join(["md5(random()::text)"] * 6)
        self.psql(f"UPDATE bench_rows SET payload = {payload} WHERE id % 100 = {day % 100};\n")  # noqa: S608

    # measurements --------------------------------------------------------------------------

    def ctx(self) -> Any:
        from panel.operations import OperationContext
        from provisioning.models import Operation

        op = Operation.objects.create(
            kind="backup.create", tenant=self.tenant, instance=self.instance, status="running"
        )
        return OperationContext(op)

    def panel_backup(
        self, mode: str, taken_at: datetime | None = None, kind: str = "scheduled"
    ) -> Any:
        from backups.take import backup_take

        return backup_take(self.ctx(), self.instance, kind=kind, mode=mode, taken_at=taken_at)

    def status_poller(self) -> tuple[threading.Event, list[str], list[str]]:
        from tests.support.lab import container_ip

        ip = container_ip(self.instance.name, "app", "panel-proxy")
        stop, failures, polls = threading.Event(), [], []

        def poll() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(
                        f"http://{ip}:8080/status",
                        timeout=2,
                    ) as response:
                        body = response.read().decode()
                        polls.append(body)
                        if "RUNNING" not in body:
                            failures.append(body)
                except Exception as exc:  # noqa: BLE001
                    failures.append(repr(exc))
                time.sleep(0.2)

        threading.Thread(target=poll, daemon=True).start()
        return stop, failures, polls

    def seed_cold_backup(self, *, rotate: list[str]) -> float:
        """The seed's method: stop app and database, rsync home and the database directory
        to the backup host, start; then rsnapshot rotates. Returns the downtime."""
        from backups.transfer import rsync_base, rsync_remote
        from provisioning.hosts import host_connection
        from provisioning.rollout import wait_running

        ctx = self.ctx()
        with host_connection(self.app_host) as app, host_connection(self.backup_host) as bconn:
            started = time.monotonic()
            app.run(
                [
                    "docker",
                    "compose",
                    "--project-directory",
                    self.idir,
                    "--project-name",
                    self.instance.name,
                    "stop",
                    "--timeout",
                    "120",
                ],
                timeout=600,
            )
            remote = f"/{self.instance.name}-seed/sync/"
            bconn.run(["mkdir", "-p", f"{self.seed_area}/sync"])
            app.run(
                rsync_base(self.app_host)
                + [
                    "--delete",
                    f"{self.idir}/home",
                    f"{self.idir}/db",
                    rsync_remote(self.app_host, remote),
                ],
                timeout=7200,
            )
            app.run(
                [
                    "docker",
                    "compose",
                    "--project-directory",
                    self.idir,
                    "--project-name",
                    self.instance.name,
                    "up",
                    "--detach",
                ],
                timeout=600,
            )
            wait_running(ctx, app, self.instance, first=False)
            downtime = time.monotonic() - started
            for interval in rotate:
                bconn.run(
                    ["rsnapshot", "-c", f"{self.seed_area}/rsnapshot.conf", interval], timeout=7200
                )
        return downtime

    def seed_prepare(self) -> None:
        from provisioning.hosts import host_connection

        with host_connection(self.backup_host) as bconn:
            bconn.run(["mkdir", "-p", f"{self.seed_area}/sync"])
            bconn.upload(f"{self.seed_area}/rsnapshot.conf", seed_rsnapshot_conf(self.seed_area))
            bconn.run(["rsnapshot", "-c", f"{self.seed_area}/rsnapshot.conf", "configtest"])

    def du(self, path: str) -> int:
        return int(backup1("du", "-s", "-B1", path).split()[0])

    def unique_content_bytes(self) -> int:
        """Bytes of distinct file contents across the panel's retained points (hard-linked
        files are one inode and hashed once)."""
        listing = backup1("find", f"{self.area}/points", "-type", "f", "-printf", "%i\\t%s\\t%p\\0")
        by_inode: dict[str, tuple[int, str]] = {}
        for entry in listing.split("\0"):
            if entry:
                inode, size, path = entry.split("\t", 2)
                by_inode.setdefault(inode, (int(size), path))
        sizes = {path: size for size, path in by_inode.values()}
        hashed = sh(
            "docker",
            "exec",
            "-i",
            "panel-lab-backup1",
            "xargs",
            "-0",
            "sha256sum",
            "--",
            input="\0".join(sizes),
        )
        unique: dict[str, int] = {}
        for line in hashed.splitlines():
            digest, path = line.split("  ", 1)
            unique[digest] = sizes.get(path, 0)
        return sum(unique.values())

    # the run -------------------------------------------------------------------------------

    def measure(self) -> None:
        from backups.models import Backup
        from backups.restore import restore_in_place, restore_new
        from backups.services import policy_for

        policy_for(self.instance)
        self.fill()
        row = self.rows.append
        mb = 1024 * 1024
        row(
            (
                "data",
                f"home {self.raw['home_bytes'] / mb:.0f} MB, database directory "
                f"{self.raw['pgdata_bytes'] / mb:.0f} MB",
                "",
            )
        )

        stop, failures, polls = self.status_poller()
        first = self.panel_backup("hot", kind="manual")
        again = self.panel_backup("hot", kind="manual")
        stop.set()
        row(
            (
                "first full backup (hot)",
                f"{first.duration_seconds:.1f} s",
                f"{first.bytes_transferred / mb:.1f} MB sent, dump {first.dump_bytes / mb:.1f} MB",
            )
        )
        row(
            (
                "unchanged incremental backup (hot)",
                f"{again.duration_seconds:.1f} s",
                f"{again.bytes_transferred / mb:.1f} MB sent",
            )
        )
        row(
            (
                "downtime, panel hot",
                f"{first.downtime_seconds:.1f} s",
                f"{len(failures)} failed of {len(polls)} /status polls during both",
            )
        )
        cold = self.panel_backup("cold", kind="manual")
        row(
            (
                "downtime, panel cold",
                f"{cold.downtime_seconds:.1f} s",
                "stop app, dump, stop db, copy home, start, RUNNING",
            )
        )
        self.seed_prepare()
        seed_first = self.seed_cold_backup(rotate=[])
        seed_again = self.seed_cold_backup(rotate=[])
        row(
            (
                "downtime, seed cold (first / incremental)",
                f"{seed_first:.1f} s / {seed_again:.1f} s",
                "stop app+db, rsync home + database directory, start",
            )
        )
        backup1(
            "rm",
            "-rf",
            f"{self.area}/points",
            f"{self.seed_area}/snapshots",
            f"{self.seed_area}/sync",
        )
        Backup.objects.filter(instance=self.instance).delete()

        # 40 simulated days, ~1% changing a day, both methods side by side
        self.seed_prepare()
        seed_downtimes, panel_times = [], []
        for day in range(DAYS):
            moment = START + timedelta(days=day)
            self.change_one_percent(day)
            point = self.panel_backup("hot", taken_at=moment)
            panel_times.append(point.duration_seconds)
            rotate = []
            if moment.day == 1:
                rotate.append("monthly")
            if moment.isoweekday() == 7:
                rotate.append("weekly")
            rotate.append("daily")
            seed_downtimes.append(self.seed_cold_backup(rotate=rotate))
            print(
                f"day {day + 1}/{DAYS}: panel {point.duration_seconds:.1f} s, seed downtime "
                f"{seed_downtimes[-1]:.1f} s",
                flush=True,
            )
        panel_total = self.du(f"{self.area}/points")
        seed_total = self.du(self.seed_area)
        unique = self.unique_content_bytes()
        kept = len(backup1("ls", f"{self.area}/points").split())
        seed_kept = len(backup1("ls", f"{self.seed_area}/snapshots").split())
        row(
            (
                f"bytes on the backup host after {DAYS} days, panel ({kept} points)",
                f"{panel_total / mb:.0f} MB",
                f"{panel_total / (self.raw['home_bytes'] + first.dump_bytes):.2f}x one copy",
            )
        )
        row(
            (
                f"bytes on the backup host after {DAYS} days, seed ({seed_kept} snapshots + sync)",
                f"{seed_total / mb:.0f} MB",
                f"{seed_total / (self.raw['home_bytes'] + self.raw['pgdata_bytes']):.2f}x one copy",
            )
        )
        row(
            (
                "unique content of the panel's points",
                f"{unique / mb:.0f} MB",
                "distinct file contents (sha256)",
            )
        )
        row(("daily hot backup, mean of 40", f"{sum(panel_times) / DAYS:.1f} s", "no downtime"))
        row(("daily seed downtime, mean of 40", f"{sum(seed_downtimes) / DAYS:.1f} s", ""))

        # restores
        latest = (
            Backup.objects.filter(instance=self.instance, status="succeeded")
            .order_by("-taken_at")
            .first()
        )
        self.change_one_percent(DAYS)
        started = time.monotonic()
        restore_in_place(self.ctx(), self.instance, latest)
        in_place = time.monotonic() - started
        row(
            (
                "restore in place (safety backup, delta home, pg_restore, start)",
                f"{in_place:.1f} s",
                f"point {latest.point_name}",
            )
        )
        target = self.new_target()
        started = time.monotonic()
        restore_new(self.ctx(), target, latest)
        new = time.monotonic() - started
        row(("restore into a new instance (full copy, pg_restore, start)", f"{new:.1f} s", ""))
        plain = self.plain_rsync(latest.point_name)
        row(
            (
                "plain rsync of the same point to app1 (full copy, no database)",
                f"{plain:.1f} s",
                "the floor for any file-level restore",
            )
        )
        self.raw["new_instance"] = target.name

    def new_target(self) -> Any:
        from provisioning.models import AtlassianInstance

        name = f"bench{self.suffix}-copy"
        target = AtlassianInstance.objects.create(
            tenant=self.tenant,
            name=name,
            product="jira-software",
            version="9.12.0",
            hostname=f"{name}.bench.example",
            host=self.app_host,
            tier="tier3",
            db_name=name.replace("-", "_"),
            db_user=name.replace("-", "_"),
            db_password=secrets.token_urlsafe(16),
            extra_env=dict(self.instance.extra_env),
        )
        return AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
            pk=target.pk
        )

    def plain_rsync(self, point: str) -> float:
        from backups.transfer import rsync_base, rsync_remote
        from provisioning.hosts import host_connection

        dest = f"{self.app_host.data_root}/instances/bench{self.suffix}-plain/"
        with host_connection(self.app_host) as app:
            app.run(["rm", "-rf", dest])
            started = time.monotonic()
            app.run(
                rsync_base(self.app_host)
                + [rsync_remote(self.app_host, f"/{self.instance.name}/points/{point}/"), dest],
                timeout=7200,
            )
            seconds = time.monotonic() - started
            app.run(["rm", "-rf", dest])
        return seconds

    def cleanup(self) -> None:
        if not hasattr(self, "instance"):
            return
        names = [self.instance.name, f"bench{self.suffix}-copy", f"bench{self.suffix}-plain"]
        for name in names:
            sh("docker", "compose", "-p", name, "down", "-v", "-t", "3", check=False)
            sh("rm", "-rf", f"{self.app_host.data_root}/instances/{name}", check=False)
            backup1(
                "rm",
                "-rf",
                f"{self.backup_host.data_root}/hosts/{self.app_host.name}/{name}",
                f"{self.backup_host.data_root}/hosts/{self.app_host.name}/{name}-seed",
                check=False,
            )
        for name, host in (("app1", self.app_host), ("backup1", self.backup_host)):
            try:
                from tests.support.lab import lab_admin_connection

                with lab_admin_connection(self.state, name) as conn:
                    conn.run(
                        [
                            "sh",
                            "-c",
                            'f="$HOME/.ssh/authorized_keys"; grep -vxF "$1" '
                            '"$f" > "$f.b" || true; cat "$f.b" > "$f"; rm -f "$f.b"',
                            "sh",
                            host.ssh_public_key,
                        ]
                    )
            except Exception as exc:  # noqa: BLE001 - best effort
                print(f"could not remove the bench key from {name}: {exc}")

    def report(self) -> str:
        width = max(len(r[0]) for r in self.rows)
        lines = [
            f"Backup benchmark ({self.size}: {self.spec['files']} files of "
            f"{self.spec['file_bytes'] // 1024} KiB, {self.spec['db_rows']} database rows, "
            f"{DAYS} simulated days, ~1% changing a day), "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"| {'measure'.ljust(width)} | result | note |",
            f"|{'-' * (width + 2)}|--------|------|",
        ]
        lines += [f"| {a.ljust(width)} | {b} | {c} |" for a, b, c in self.rows]
        return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="~50 MB instead of ~1 GB")
    args = parser.parse_args()
    size = "small" if args.small else "full"
    database_create()
    import django

    django.setup()
    bench = Bench(size)
    try:
        bench.setup()
        bench.measure()
    finally:
        try:
            bench.cleanup()
        finally:
            database_drop()
    text = bench.report()
    print(text)
    out = REPO / "bench" / "results" / f"backup_bench_{size}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
