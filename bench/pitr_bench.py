#!/usr/bin/env python3
"""Benchmark of point-in-time recovery (issue #14) on the lab (not part of tests).

    .venv/bin/python bench/pitr_bench.py            # ~1 GB home, ~300 MB database
    .venv/bin/python bench/pitr_bench.py --small    # ~50 MB home, ~30 MB database (a check)

One Jira stand-in on lab app1 with the data of ``backup_bench.py`` (the same sizes, so its
storage figures compare), its WAL archived to lab backup1 through the panel's own operations
(``wal_enable_start``: the ``wal`` service, the shipper, a first base backup), a hot home point,
then writes. Rows:

* **restore in place to a time** (``restore_to_time_start``, run by the panel's operation
  runner): the whole operation, the part until the instance answers again, and each part from
  its steps' timestamps, against the floor: a plain ``rsync -a`` of the same bytes (the
  database's data directory and the home) from backup1 to app1 over the same route and key,
  timed before and after the restore in the same run. Checked by the data: a row committed
  before the target is back, one committed after it is not, and a bulk delete after it is
  undone.
* **storage after 40 simulated days** (daily point, daily base backup as
  ``PANEL_WAL_BASE_INTERVAL_HOURS`` = 24 starts them, 7/4/12 retention, the archive keeping every
  base and WAL file the oldest retained point needs, ``backups.wal.bases_to_prune``): from the
  measured size of one base backup and the measured WAL of one day (1 % of the rows updated plus
  that day's base backup), against the dump points (modelled from this run's dump and home
  change, and for the full size the figure ``backup_bench.py`` measured) and the seed's method.

It needs the lab (``scripts/lab up``), PostgreSQL on 127.0.0.1 (a scratch database
``panel_bench_pitr`` is made and dropped) and root (the lab's data roots). DNS, certificates and
the proxy are off here. Results are printed and written to ``bench/results/pitr.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BENCH_DB = "panel_bench_pitr"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.test_settings")

# The sizes of backup_bench.py, whose 40-day figures this bench compares with.
SIZES = {
    "small": {"files": 100, "file_bytes": 512 * 1024, "db_rows": 100_000},
    "full": {"files": 1000, "file_bytes": 1024 * 1024, "db_rows": 1_000_000},
}
DAYS = 40
START = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)  # backup_bench.py's first simulated day
MB = 1024 * 1024
# backup_bench.py's full run (bench/results/backup_bench_full.md): the same data as "full" here
# bench/results/backup_bench_full.md: bytes on the backup host after 40 days, same data
MEASURED_FULL_WHEN = "2026-11-21"
MEASURED_FULL: dict[str, int] = {"panel_points": 2590 * MB, "seed": 6840 * MB}

# The parts of a restore to a time, each ending at the first step matching its pattern after
# the previous part's end (backups.wal.restore_to_time, backups.operations.restore_time_run).
PARTS = [
    ("marker commit written, wait until it is shipped (window check)", r"^Database: base backup"),
    ("base + archived WAL staged on the backup host (hard links)", r"WAL files staged for the"),
    ("base + WAL pulled to the app host (rsync)", r"^Pulled the base backup and the WAL"),
    ("app, WAL receiver and database stopped", r"^Stopped the app, the WAL receiver"),
    ("data directory moved aside, home hard-linked aside", r"^Kept the current home aside"),
    ("home pulled from the point (rsync, delta)", r"^Pulled the point's home"),
    ("base unpacked (tar -xz), recovery target set", r"^Unpacked the base backup"),
    ("database started, WAL replayed to the target, promoted", r"^Recovery finished"),
    ("recovery settings reset, receiver emptied, app + receiver started", r"^Started the app and"),
    ("until the app answers RUNNING", r" answers \S+ after "),
]


def sh(*argv: str, check: bool = True, timeout: float = 3600, input: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
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


def du(path: str) -> int:
    """Bytes on disk under ``path`` (the lab's data roots have the same paths here)."""
    out = sh("du", "-s", "-B1", path, check=False).split()
    return int(out[0]) if out else 0


def rsync_local(source: str, dest: str) -> None:
    """Copy a directory on this machine (a running database's files may vanish meanwhile)."""
    done = subprocess.run(["rsync", "-a", "--delete", source, dest], capture_output=True)
    if done.returncode not in (0, 24):
        raise RuntimeError(f"rsync {source} {dest}: {done.stderr[-2000:]!r}")


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    return (
        f"{os.cpu_count()} vCPU {cpu}, {mem / 1024**3:.1f} GiB, Python {platform.python_version()}"
    )


class Bench:
    def __init__(self, size: str) -> None:
        self.size = size
        self.spec = SIZES[size]
        self.rows: list[tuple[str, str, str]] = []
        self.parts: list[tuple[str, float]] = []
        self.storage: list[tuple[str, str, str]] = []
        self.assumptions: list[str] = []
        self.raw: dict[str, Any] = {"size": size, **self.spec, "days": DAYS}
        self.load_start = os.getloadavg()
        self.marker_note = ""

    # set-up --------------------------------------------------------------------------------

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
        self.app = enrol_and_provision(self.actor, self.specs["app1"], backup_host=self.backup)
        self.suffix = secrets.token_hex(2)
        self.instance = create_instance(self.actor, tenant, self.app, f"pitr{self.suffix}")

    def refresh(self) -> Any:
        from provisioning.models import AtlassianInstance

        self.instance = AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
            pk=self.instance.pk
        )
        return self.instance

    @property
    def idir(self) -> str:
        from provisioning.compose import instance_dir

        return instance_dir(self.instance)

    @property
    def area(self) -> str:
        return f"{self.backup.data_root}/hosts/{self.app.name}/{self.instance.name}"

    @property
    def wal_area(self) -> str:
        return f"{self.backup.data_root}/wal-incoming/{self.app.name}"

    @property
    def floor_dest(self) -> str:
        return f"{self.app.data_root}/pitrbench-floor-{self.suffix}"

    def psql(self, sql: str) -> str:
        from provisioning.compose import project_name

        inst = self.instance
        return sh(
            "docker", "compose", "-p", project_name(inst), "exec", "-T", "db", "psql", "-X",
            "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", inst.db_user, "-d", inst.db_name,
            input=sql,
        ).strip()  # fmt: skip

    def lsn(self) -> int:
        """The database's WAL position in bytes (what it has written since initdb)."""
        return int(self.psql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint;"))

    def archived(self) -> int:
        """Bytes of completed segments in the instance's WAL archive on the backup host."""
        return du(f"{self.wal_area}/wal/{self.instance.name}")

    def shipped_after(self, moment: datetime, timeout: float = 150) -> None:
        """Wait until the shipper finished a pass that started after ``moment``."""
        from backups.wal import ship_mark_parse

        ok = Path(self.idir) / "wal-ship.ok"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shipped = ship_mark_parse(ok.read_text() if ok.exists() else "")
            if shipped is not None and shipped > moment:
                return
            time.sleep(1)
        raise RuntimeError(f"the shipper did not pass after {moment} within {timeout} s")

    def fill(self) -> None:
        """Home: incompressible files; database: rows of random text (backup_bench.py's)."""
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
            "CHECKPOINT;\n"
        )
        self.raw["home_bytes"] = du(f"{self.idir}/home")
        self.raw["pgdata_bytes"] = du(f"{self.idir}/db")
        self.raw["pg_wal_bytes"] = du(f"{self.idir}/db/pg_wal")
        self.raw["table_bytes"] = int(self.psql("SELECT pg_total_relation_size('bench_rows');"))

    def change_one_percent(self, day: int) -> None:
        """backup_bench.py's daily change: 1 % of the home's files and of the rows."""
        files = self.spec["files"]
        count = max(1, files // 100)
        data = Path(self.idir) / "home" / "data" / "bulk"
        for k in range(count):
            path = data / f"f{(day * count + k) % files:05d}.bin"
            path.write_bytes(os.urandom(self.spec["file_bytes"]))
            os.chown(path, 2001, 2001)
        payload = " || ".join(["md5(random()::text)"] * 6)
        self.psql(f"UPDATE bench_rows SET payload = {payload} WHERE id % 100 = {day % 100};\n")  # noqa: S608

    # the floor -----------------------------------------------------------------------------

    def floor_stage(self) -> None:
        """The same bytes as the instance's data directory and home, on the backup host where
        the app host's restricted key reads (a copy made on this machine, not timed)."""
        Path(f"{self.area}/floor").mkdir(parents=True, exist_ok=True)
        rsync_local(f"{self.idir}/db/", f"{self.area}/floor/db/")
        rsync_local(f"{self.idir}/home/", f"{self.area}/floor/home/")
        self.raw["floor_bytes"] = du(f"{self.area}/floor")
        self.raw["floor_pg_wal_bytes"] = du(f"{self.area}/floor/db/pg_wal")

    def floor(self, *exclude: str) -> float:
        """A plain ``rsync -a`` of the staged copy from backup1 to an empty directory on app1,
        over the same route and key as the panel's pulls."""
        import shlex

        from backups.transfer import rsync_remote
        from provisioning.hosts import host_backup_ssh_argv, host_connection

        argv = ["rsync", "-a", "-e", shlex.join(host_backup_ssh_argv(self.app))]
        argv += [f"--exclude={e}" for e in exclude]
        argv += [rsync_remote(self.app, f"/{self.instance.name}/floor/"), f"{self.floor_dest}/"]
        with host_connection(self.app) as conn:
            conn.run(["rm", "-rf", self.floor_dest])
            started = time.monotonic()
            conn.run(argv, timeout=3600)
            seconds = time.monotonic() - started
            conn.run(["rm", "-rf", self.floor_dest])
        return seconds

    # the run -------------------------------------------------------------------------------

    def measure(self) -> None:
        from django.utils import timezone

        from backups.models import BaseBackup
        from backups.services import (
            backup_start,
            policy_for,
            restore_to_time_start,
            wal_base_start,
            wal_enable_start,
        )

        policy_for(self.instance)
        self.fill()
        raw, row = self.raw, self.rows.append
        row((
            "data",
            f"home {raw['home_bytes'] / MB:.0f} MB, database directory "
            f"{raw['pgdata_bytes'] / MB:.0f} MB",
            f"table with index {raw['table_bytes'] / MB:.0f} MB, pg_wal "
            f"{raw['pg_wal_bytes'] / MB:.0f} MB; {self.spec['db_rows']:,} rows",
        ))  # fmt: skip

        enable = self.run(wal_enable_start(actor=self.actor, instance=self.instance))
        self.refresh()
        base1 = BaseBackup.objects.get(instance=self.instance)
        row((
            "turn archiving on (deploy with the receiver, first base backup)",
            f"{(enable.finished_at - enable.started_at).total_seconds():.1f} s",
            f"base backup {base1.size_bytes / MB:.1f} MB (tar, gzip) in {base1.duration_seconds} s",
        ))  # fmt: skip
        from django.conf import settings

        # The first point carries a dump (as every point did before points of the archive), the
        # same again unchanged, then an unchanged point of the archive (no dump): issue #14's
        # "unchanged incremental <= 5 % of the first full backup".
        settings.PANEL_BACKUP_WAL_POINTS = False
        try:
            first = self.point_take(backup_start)
            with_dump = self.point_take(backup_start)
        finally:
            settings.PANEL_BACKUP_WAL_POINTS = True
        no_dump = self.point_take(backup_start)
        assert first.dump_bytes and with_dump.dump_bytes and no_dump.database == "wal"
        raw["dump_bytes"] = first.dump_bytes
        full_s = first.duration_seconds or 1.0
        raw["point_first_seconds"] = full_s
        raw["point_unchanged_dump_seconds"] = with_dump.duration_seconds
        raw["point_unchanged_wal_seconds"] = no_dump.duration_seconds
        row((
            "first point (hot: whole home + pg_dump)",
            f"{full_s:.1f} s",
            f"dump {(first.dump_bytes or 0) / MB:.1f} MB; opens the window",
        ))  # fmt: skip
        row((
            "unchanged point with its pg_dump (PANEL_BACKUP_WAL_POINTS off)",
            f"{with_dump.duration_seconds:.1f} s",
            f"{(with_dump.duration_seconds or 0) / full_s:.0%} of the first point",
        ))  # fmt: skip
        row((
            "unchanged point of the archive (no dump; database = WAL to its second)",
            f"{no_dump.duration_seconds:.1f} s",
            f"**{(no_dump.duration_seconds or 0) / full_s:.0%} of the first point** (target "
            f"<= 5 %); {self.point_parts(no_dump)}",
        ))  # fmt: skip

        self.cold_rows(backup_start)

        # Writes after the base: a day's 1 % change, a row before the target, one after it,
        # and a bulk delete after it (the restore must bring those rows back).
        self.psql("CREATE TABLE pitr_marks (label text PRIMARY KEY, at timestamptz NOT NULL);")
        lsn0, archived0 = self.lsn(), self.archived()
        self.change_one_percent(0)
        self.psql("INSERT INTO pitr_marks VALUES ('before-target', clock_timestamp());")
        lsn1 = self.lsn()
        raw["wal_change_bytes"] = lsn1 - lsn0
        time.sleep(1.5)
        target = timezone.now().replace(microsecond=0)
        time.sleep(1.5)
        gone = max(1, int(self.spec["db_rows"]) // 100)
        self.psql(
            "INSERT INTO pitr_marks VALUES ('after-target', clock_timestamp());\n"  # noqa: S608
            f"DELETE FROM bench_rows WHERE id <= {gone};\n"
        )
        self.shipped_after(timezone.now())
        raw["archived_change_bytes"] = self.archived() - archived0
        row((
            "writes after the base (1 % of rows and home files, marks)",
            f"{raw['wal_change_bytes'] / MB:.1f} MB of WAL",
            f"to the target; then {gone:,} rows deleted after it; archive grew "
            f"{raw['archived_change_bytes'] / MB:.0f} MB in completed segments",
        ))  # fmt: skip

        self.floor_stage()
        floor_before = self.floor()
        floor_no_wal = self.floor("db/pg_wal/")

        started = time.monotonic()
        op = self.run(
            restore_to_time_start(
                actor=self.actor,
                instance=self.instance,
                target_time=target,
                confirm_name=self.instance.name,
            )
        )
        wall = time.monotonic() - started
        self.refresh()
        # The base backup on the new timeline the restore left to an operation of its own.
        from provisioning.models import Operation

        after = self.run(
            Operation.objects.get(
                instance=self.instance, kind="backup.wal_base", created_at__gte=op.finished_at
            )
        )
        self.raw["base_after_seconds"] = (after.finished_at - after.started_at).total_seconds()
        floor_after = self.floor()
        self.restore_rows(op, wall, target, floor_before, floor_after, floor_no_wal)
        self.verify(op, target, gone)
        sh("rm", "-rf", f"{self.area}/floor")

        # One more simulated day after the restore: 1 % of the rows change, then the daily
        # base backup (wal_base_start: pg_basebackup with its checkpoint and segment switch,
        # then retention). The WAL it adds is the archive's daily growth.
        self.shipped_after(timezone.now())  # the restore's own WAL is archived first
        lsn2, archived2 = self.lsn(), self.archived()
        self.change_one_percent(1)
        base_op = self.run(wal_base_start(actor=self.actor, instance=self.instance))
        self.shipped_after(timezone.now())
        lsn3, archived3 = self.lsn(), self.archived()
        base = BaseBackup.objects.get(operation=base_op)
        raw["wal_day_bytes"] = lsn3 - lsn2
        raw["archived_day_bytes"] = archived3 - archived2
        raw["base_bytes"] = base.size_bytes
        raw["base_on_backup_host"] = du(f"{self.area}/wal-base/{base.label}")
        raw["base_seconds"] = base.duration_seconds
        raw["base_op_seconds"] = (base_op.finished_at - base_op.started_at).total_seconds()
        # What a restore leaves out since it stages only the WAL from its base's first segment
        # on (backups.wal.STAGE_SCRIPT): the archive's files before the newest base.
        from backups.wal import segment_before

        archive = Path(f"{self.wal_area}/wal/{self.instance.name}")
        older = [f for f in archive.iterdir() if segment_before(f.name, base.start_wal)]
        raw["files_before_newest_base"] = len(older)
        raw["bytes_before_newest_base"] = sum(f.stat().st_size for f in older)
        raw["archive_files"] = len(list(archive.iterdir()))
        self.storage_model(policy_for(self.instance))

    def cold_rows(self, backup_start: Any) -> None:
        """Cold mode (Bitbucket's default): the panel's cold point of the archive against the
        seed's method (stop app and database, rsync home and data directory to the backup
        host, start), each twice: the first copy, then unchanged. Downtime is stop to RUNNING."""
        from backups.models import Backup

        raw, row = self.raw, self.rows.append
        seed = [self.seed_cold(), self.seed_cold()]
        cold = []
        for _ in range(2):
            op = self.run(backup_start(actor=self.actor, instance=self.instance, mode="cold"))
            cold.append(Backup.objects.get(operation=op))
        assert all(b.database == "wal" for b in cold)
        panel = [b.downtime_seconds or 0.0 for b in cold]
        raw.update(cold_downtime=panel, seed_downtime=seed)
        row((
            "cold point of the archive: downtime, first / unchanged",
            f"{panel[0]:.1f} s / {panel[1]:.1f} s",
            f"**{panel[1] / seed[1]:.2f}x the seed's method** unchanged (target <= 0.5x), "
            f"{panel[0] / seed[0]:.2f}x it the first time; stop the app (the database runs "
            "on), freeze the home in a local copy (rsync, delta), start, RUNNING; the push "
            f"follows (whole point {cold[1].duration_seconds:.1f} s)",
        ))  # fmt: skip
        row((
            "  seed's method: downtime, first / unchanged",
            f"{seed[0]:.1f} s / {seed[1]:.1f} s",
            "stop app and database, rsync -aH home + data directory to backup1, start, RUNNING",
        ))  # fmt: skip

    def seed_cold(self) -> float:
        """The seed's cold backup once, through the app host's own push key; its downtime."""
        from backups.dump import compose_argv
        from backups.transfer import rsync_base, rsync_remote
        from panel.operations import OperationContext
        from provisioning.hosts import host_connection
        from provisioning.models import Operation
        from provisioning.rollout import wait_running

        name = self.instance.name
        ctx = OperationContext(
            Operation.objects.create(kind="backup.create", instance=self.instance, status="running")
        )
        push = f"{self.backup.data_root}/incoming/{self.app.name}/{name}-seed/sync"
        with host_connection(self.app) as app, host_connection(self.backup) as bconn:
            bconn.run(["mkdir", "-p", push])
            started = time.monotonic()
            app.run(compose_argv(self.instance, "stop", "--timeout", "120"), timeout=600)
            app.run(
                rsync_base(self.app)
                + ["--delete", f"{self.idir}/home", f"{self.idir}/db"]
                + [rsync_remote(self.app, f"/{name}-seed/sync/")],
                timeout=7200,
            )
            app.run(compose_argv(self.instance, "up", "--detach"), timeout=600)
            wait_running(ctx, app, self.instance, first=False)
            return time.monotonic() - started

    def point_take(self, backup_start: Any) -> Any:
        """One hot extra point now; its catalogue row."""
        from backups.models import Backup

        op = self.run(backup_start(actor=self.actor, instance=self.instance, mode="hot"))
        return Backup.objects.get(operation=op)

    @staticmethod
    def point_parts(backup: Any) -> str:
        """Where a point of the archive's time went, from its operation's steps: until its
        commit (written after the next whole second), the home's push, the checksum
        manifests and checks on both hosts, the wait for the archive, the commit."""
        from provisioning.models import OperationStep

        steps = list(OperationStep.objects.filter(operation=backup.operation_id).order_by("id"))
        marks = [steps[0].created_at] if steps else []
        for prefix in ("Wrote a commit after", "Pushed home to", "The archived WAL reaches"):
            at = next((x for x in steps if x.message.startswith(prefix)), None)
            if at is None:
                return "(its steps were not found)"
            if prefix == "The archived WAL reaches":  # the checks end with the step before it
                marks.append(steps[steps.index(at) - 1].created_at)
            marks.append(at.created_at)
        marks.append(steps[-1].created_at)
        spans = [(b - a).total_seconds() for a, b in zip(marks, marks[1:], strict=False)]
        labels = ("until its commit", "push", "manifests and checks", "archive wait", "commit")
        parts = zip(labels, spans, strict=False)
        return "; ".join(f"{label} {span:.1f} s" for label, span in parts)

    def verify(self, op: Any, target: datetime, gone: int) -> None:
        """The restore landed at the target: by the data, and by the replay's own report."""
        marks = self.psql("SELECT label FROM pitr_marks ORDER BY label;").split()
        rows = int(self.psql("SELECT count(*) FROM bench_rows;"))
        before_at = None
        if "before-target" in marks:
            before_at = self.psql("SELECT at FROM pitr_marks WHERE label = 'before-target';")
        ok = marks == ["before-target"] and rows == int(self.spec["db_rows"])
        self.raw["verified"] = ok
        self.rows.append((
            "restore landed at the target (checked by the data)",
            "yes" if ok else "NO",
            f"rows in pitr_marks: {marks}; bench_rows {rows:,} of {self.spec['db_rows']:,} "
            f"({gone:,} deleted after the target); target {target:%H:%M:%S}, 'before-target' "
            f"committed {before_at}, replay reached {op.result.get('recovered_to')}",
        ))  # fmt: skip
        if not ok:
            print(f"VERIFICATION FAILED: {marks} {rows}", flush=True)

    def restore_rows(
        self,
        op: Any,
        wall: float,
        target: datetime,
        floor_before: float,
        floor_after: float,
        floor_no_wal: float,
    ) -> None:
        from django.conf import settings

        raw, row = self.raw, self.rows.append
        steps = list(
            op.steps.order_by("id").values_list("created_at", "message", "output", "duration_ms")
        )
        total = (op.finished_at - op.started_at).total_seconds()
        prev, i = op.started_at, 0
        ends: dict[str, datetime] = {}
        for label, pattern in PARTS:
            for j in range(i, len(steps)):
                if re.search(pattern, steps[j][1]):
                    break
            else:
                print(f"no step matched {pattern!r}; its time goes into the next part")
                continue
            self.parts.append((label, (steps[j][0] - prev).total_seconds()))
            ends[pattern] = prev = steps[j][0]
            i = j + 1
        self.parts.append(("status, gap record", (op.finished_at - prev).total_seconds()))
        pulled = next((s for s in steps if s[1].startswith("Pulled the base backup")), None)
        size = re.search(r"Total transferred file size: ([\d,.]+)", pulled[2] if pulled else "")
        raw["restore_pulled_bytes"] = int(re.sub(r"\D", "", size.group(1))) if size else 0
        staged = next((s for s in steps if "WAL files staged" in s[1]), None)
        raw["staged_wal_files"] = int(staged[1].split()[0]) if staged else None
        stop = next((s for s in steps if s[1].startswith("Stopped the app, the WAL")), None)
        answers = ends.get(r" answers \S+ after ")
        answered = (answers - op.started_at).total_seconds() if answers else total
        downtime = None
        if stop is not None and answers is not None:
            stopping = stop[0] - timedelta(milliseconds=stop[3] or 0)
            downtime = (answers - stopping).total_seconds()
        floor = (floor_before + floor_after) / 2
        raw.update(
            restore_seconds=total,
            restore_wall=wall,
            answered_seconds=answered,
            downtime_seconds=downtime,
            floor_seconds=[floor_before, floor_after],
            floor_no_wal_seconds=floor_no_wal,
            ratio=total / floor,
            ratio_answered=answered / floor,
        )
        # The shipper (cron, every minute) makes passes for ~50 s and exits: a marker written
        # in a minute's last seconds waits for the next minute's first pass.
        marker_end = ends.get(PARTS[0][1])
        self.marker_note = (
            f"The operation started at {op.started_at:%H:%M:%S} UTC; its marker commit was "
            "shipped after "
            + (f"{(marker_end - op.started_at).total_seconds():.1f} s" if marker_end else "?")
            + f" (the shipper passes every {settings.PANEL_WAL_SHIP_INTERVAL} s; the wait also "
            "covers the panel's polling of the shipped mark)."
        )
        for step in steps:
            print(f"  {(step[0] - op.started_at).total_seconds():7.1f} s  {step[1][:110]}")
        floor_bytes, wal_bytes = raw["floor_bytes"], raw["floor_pg_wal_bytes"]
        row((
            f"restore in place to {target:%H:%M:%S} UTC, whole operation",
            f"{total:.1f} s",
            f"**{total / floor:.2f}x the floor** (target <= 1.3x); operation runner, "
            f"{wall:.1f} s wall; the base backup on the new timeline is its own operation "
            "after it",
        ))  # fmt: skip
        row((
            "  of it: until the instance answers again",
            f"{answered:.1f} s",
            f"{answered / floor:.2f}x the floor; downtime (stop to RUNNING) "
            + (f"{downtime:.1f} s" if downtime is not None else "?"),
        ))  # fmt: skip
        row((
            "  then: the base backup on the new timeline (its own operation)",
            f"{raw['base_after_seconds']:.1f} s",
            "started by the restore's end (backups.services.base_after_restore); no downtime",
        ))  # fmt: skip
        row((
            "floor: plain rsync -a of data directory + home, backup1 -> app1",
            f"{floor:.1f} s",
            f"{floor_bytes / MB:.0f} MB; {floor_before:.1f} s before the restore, "
            f"{floor_after:.1f} s after",
        ))  # fmt: skip
        row((
            "floor without pg_wal (data directory's files only + home)",
            f"{floor_no_wal:.1f} s",
            f"{(floor_bytes - wal_bytes) / MB:.0f} MB (pg_wal {wal_bytes / MB:.0f} MB left out); "
            f"the restore is {total / floor_no_wal:.2f}x it",
        ))  # fmt: skip
        row((
            "bytes the restore pulled over the network (base + WAL)",
            f"{raw['restore_pulled_bytes'] / MB:.0f} MB",
            f"base + {raw['staged_wal_files']} WAL files (those from the base's first segment "
            "on); the home "
            "came as a delta from the point (1 % of its files changed)",
        ))  # fmt: skip

    # storage after 40 simulated days --------------------------------------------------------

    def storage_model(self, policy: Any) -> None:
        """40 days at the product's retention, from the bytes measured above: a scheduled point
        every day at 02:00 (7/4/12), a base backup every day an hour later (the interval of
        PANEL_WAL_BASE_INTERVAL_HOURS), and after each base the panel's own pruning rules."""
        from django.conf import settings

        from backups.models import BaseBackup
        from backups.policies import policy_retention
        from backups.retention import Point, point_name, retention_plan
        from backups.wal import bases_to_prune

        raw, put = self.raw, self.storage.append
        hours = float(settings.PANEL_WAL_BASE_INTERVAL_HOURS)
        rule = policy_retention(policy)
        home_day = max(1, self.spec["files"] // 100) * self.spec["file_bytes"]
        base_len = timedelta(seconds=float(raw["base_seconds"] or 60))
        points: list[Any] = []
        bases: list[Any] = []
        history = []
        for day in range(DAYS):
            at = START + timedelta(days=day)
            points.append(Point(name=point_name(at), taken_at=at))
            plan = retention_plan(points, rule, now=at)
            points = [p for p in points if p.name in plan.keep]
            base_at = at + timedelta(hours=1)
            bases.append(
                BaseBackup(
                    label=f"d{day}",
                    status=BaseBackup.Status.SUCCEEDED,
                    started_at=base_at,
                    finished_at=base_at + base_len,
                )
            )
            oldest = min(p.taken_at for p in points)
            doomed = bases_to_prune(bases, oldest)
            bases = [b for b in bases if b not in doomed]
            now = bases[-1].finished_at
            # One timeline: the lowest first segment of the kept bases is the oldest's.
            wal_from = min(b.started_at for b in bases)
            wal_days = (now - wal_from).total_seconds() / 86400
            span_days = (max(p.taken_at for p in points) - oldest).days
            home_unique = raw["home_bytes"] + home_day * span_days
            dumps = len(points) * raw["dump_bytes"]
            history.append({
                "points": len(points), "bases": len(bases), "wal_days": wal_days,
                "home": home_unique, "dumps": dumps,
                "bases_bytes": len(bases) * raw["base_bytes"],
                "wal_bytes": wal_days * raw["wal_day_bytes"],
            })  # fmt: skip
        end = history[-1]
        dump_points = end["home"] + end["dumps"]
        archive = end["bases_bytes"] + end["wal_bytes"]
        with_wal = dump_points + archive
        peak = max(h["home"] + h["dumps"] + h["bases_bytes"] + h["wal_bytes"] for h in history)
        raw.update(storage_end=end, storage_with_wal=with_wal, storage_dump_points=dump_points)
        put((
            "one base backup (pg_basebackup, tar + gzip)",
            f"{raw['base_bytes'] / MB:.1f} MB",
            f"on the backup host {raw['base_on_backup_host'] / MB:.1f} MB; of a "
            f"{raw['pgdata_bytes'] / MB:.0f} MB data directory; {raw['base_seconds']} s "
            f"(the daily base operation {raw['base_op_seconds']:.1f} s, no downtime)",
        ))  # fmt: skip
        put((
            "WAL of one day: 1 % of the rows updated + that day's base backup",
            f"{raw['wal_day_bytes'] / MB:.1f} MB",
            f"WAL position moved (the archive grew {raw['archived_day_bytes'] / MB:.0f} MB of "
            f"16 MB segments, stored uncompressed); the 1 % change before the restore alone: "
            f"{raw['wal_change_bytes'] / MB:.1f} MB",
        ))  # fmt: skip
        put((
            f"dump points after {DAYS} days ({end['points']} points, model)",
            f"{dump_points / MB:.0f} MB",
            f"home {end['home'] / MB:.0f} MB unique + {end['points']} dumps of "
            f"{raw['dump_bytes'] / MB:.0f} MB"
            + (
                f"; backup_bench.py measured {MEASURED_FULL['panel_points'] / MB:.0f} MB for "
                f"the same data ({MEASURED_FULL_WHEN})"
                if self.size == "full"
                else ""
            ),
        ))  # fmt: skip
        no_dumps = end["home"] + archive
        raw["storage_no_dumps"] = no_dumps
        put((
            f"WAL archiving after {DAYS} days (points without dumps + {end['bases']} bases + "
            f"{end['wal_days']:.1f} days of WAL)",
            f"{no_dumps / MB:.0f} MB",
            f"**{no_dumps / dump_points:.2f}x the dump points**: the points' home "
            f"{end['home'] / MB:.0f} MB + bases {end['bases_bytes'] / MB:.0f} MB + WAL "
            f"{end['wal_bytes'] / MB:.0f} MB (the panel's points of an archiving instance carry "
            "no dump)",
        ))  # fmt: skip
        put((
            "  the same if the points carried a pg_dump (PANEL_BACKUP_WAL_POINTS off)",
            f"{with_wal / MB:.0f} MB",
            f"{with_wal / dump_points:.2f}x the dump points; peak over the {DAYS} days "
            f"{peak / MB:.0f} MB",
        ))  # fmt: skip
        heavy = end["home"] + end["bases_bytes"] + end["wal_days"] * raw["wal_change_bytes"]
        put((
            "  the same with the first change's WAL as each day's",
            f"{heavy / MB:.0f} MB",
            f"{heavy / dump_points:.2f}x the dump points: "
            f"{raw['wal_change_bytes'] / MB:.1f} MB a day (the first update of freshly loaded, "
            "full pages: no HOT updates, new index entries) instead of "
            f"{raw['wal_day_bytes'] / MB:.1f} MB",
        ))  # fmt: skip
        put((
            "WAL before the newest base, which a restore from it no longer pulls",
            f"{raw['bytes_before_newest_base'] / MB:.0f} MB now",
            f"{raw['files_before_newest_base']} of the archive's {raw['archive_files']} files "
            "lie before the newest base's first segment; a restore stages only the WAL from "
            f"its base's first segment on, so at day {DAYS} it leaves out about "
            f"{max(0.0, end['wal_bytes'] - raw['wal_day_bytes']) / MB:.0f} MB "
            "(the model's retained WAL less a day)",
        ))  # fmt: skip
        if self.size == "full":
            put((
                f"seed's method after {DAYS} days (rsync + rsnapshot 7/4/12)",
                f"{MEASURED_FULL['seed'] / MB:.0f} MB",
                f"measured by backup_bench.py ({MEASURED_FULL_WHEN}), same data; WAL "
                f"archiving is {no_dumps / MEASURED_FULL['seed']:.2f}x it",
            ))  # fmt: skip
        self.assumptions += [
            f"One scheduled point a day at 02:00 UTC from {START:%Y-%m-%d} for {DAYS} days, "
            f"retention {rule.daily}/{rule.weekly}/{rule.monthly} (daily/weekly/monthly), the "
            "instance's tier-3 policy; points are hot and carry no dump (their database is the "
            "archive), except in the row that says otherwise.",
            f"A base backup every {hours:g} h, an hour after the point; after each one the "
            "panel's rule (backups.wal.bases_to_prune): every base newer than the oldest "
            "retained point stays, plus the newest before it, and WAL from that base's first "
            "segment on. At day 40 that is "
            f"{end['bases']} bases and {end['wal_days']:.1f} days of WAL.",
            "Each day's change is the 1 % measured here (UPDATE of 1 % of the rows in one burst "
            "after a base backup's checkpoint, plus the base's own checkpoint and segment "
            "switch): a workload spreading the same change over many checkpoints writes more "
            "WAL (a full-page image per page per checkpoint); an idle Jira writes some more. "
            "Base and dump sizes are taken as constant over the 40 days.",
            "Home: 1 % of the files rewritten a day, never the same file twice in 40 days, so "
            "the points' unique home is one home + 1 % a day between the oldest and newest "
            "retained point (backup_bench.py's measured unique content checks this model).",
            "Compressed partial segments are not counted (the periodic check keeps only the "
            "newest); history files and catalogue rows are negligible.",
        ]

    # clean-up and report --------------------------------------------------------------------

    def cleanup(self) -> None:
        from tests.support.lab import lab_key_remove

        if hasattr(self, "instance"):
            from provisioning.compose import project_name

            project = project_name(self.instance)
            sh("docker", "compose", "-p", project, "down", "-v", "-t", "3", check=False)
            sh("docker", "network", "rm", f"panel-edge-{project}", check=False)
            name = self.instance.name
            sh("rm", "-rf", f"{self.app.data_root}/instances/{name}", self.floor_dest, check=False)
            sh(
                "docker", "exec", self.specs["backup1"]["container"], "rm", "-rf",
                f"{self.backup.data_root}/hosts/{self.app.name}/{name}",
                f"{self.backup.data_root}/incoming/{self.app.name}/{name}",
                f"{self.backup.data_root}/incoming/{self.app.name}/{name}-seed",
                f"{self.wal_area}/wal/{name}", f"{self.wal_area}/wal-partial/{name}",
                check=False,
            )  # fmt: skip
        for spec_name, attr in (("app1", "app"), ("backup1", "backup")):
            host = getattr(self, attr, None)
            if host is not None:
                lab_key_remove(self.state, spec_name, host.ssh_public_key)

    def report(self) -> str:
        load = os.getloadavg()[0]
        spec = self.spec

        def table(rows: list[tuple[str, str, str]]) -> list[str]:
            width = max(len(r[0]) for r in rows)
            out = [
                f"| {'measure'.ljust(width)} | result | note |",
                f"| {'-' * width} | --- | --- |",
            ]
            return out + [f"| {a.ljust(width)} | {b} | {c} |" for a, b, c in rows]

        total = sum(s for _, s in self.parts) or 1.0
        parts = [f"| {'part'.ljust(66)} | seconds | share |", f"| {'-' * 66} | ---: | ---: |"]
        parts += [f"| {lbl.ljust(66)} | {s:.1f} | {s / total:.0%} |" for lbl, s in self.parts]
        lines = [
            f"Point-in-time recovery benchmark ({self.size}: {spec['files']} home files of "
            f"{spec['file_bytes'] // 1024} KiB, {spec['db_rows']:,} database rows; one Jira "
            f"stand-in on lab app1 archiving its WAL to lab backup1), "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"Machine: {machine()}; the lab's hosts are containers on it. Load average "
            f"{self.load_start[0]:.1f} at the start, {load:.1f} at the end.",
            "",
            "## Restore in place to a time vs a plain rsync",
            "",
            *table(self.rows),
            "",
            "Where the restore's time goes (from its steps' timestamps):",
            "",
            *parts,
            "",
            self.marker_note,
            "",
            f"## Storage after {DAYS} simulated days",
            "",
            *table(self.storage),
            "",
            "Assumptions:",
            "",
            *[f"- {a}" for a in self.assumptions],
        ]
        return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="~50 MB instead of ~1.3 GB")
    args = parser.parse_args()
    size = "small" if args.small else "full"
    database("create")
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
            database("drop")
    text = bench.report()
    print(text)
    print(json.dumps(bench.raw, default=str))
    out = REPO / "bench" / "results" / ("pitr.md" if size == "full" else "pitr_small.md")
    out.write_text(text)
    print(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
