"""Forty simulated days of scheduled backups on the lab's backup host (real rsync with
--link-dest, real verification), with a controlled clock: exactly the points 7 daily /
4 weekly / 12 monthly keeps stay, unchanged files are one inode across every point, and the
catalogue says what is on disk."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

import pytest

from backups.models import Backup, BackupKind, BackupOperationKind, BackupStatus
from backups.point import point_store
from backups.services import policy_for
from backups.take import backup_record_start
from panel.operations import OperationContext
from provisioning.hosts import host_connection
from provisioning.models import AtlassianInstance, Operation
from tests.support.backup_lab import backup1, sh

pytestmark = [pytest.mark.lab, pytest.mark.django_db]

START = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)  # a Wednesday; day 39 is Sunday 9 February

# What 7 daily / 4 weekly / 12 monthly keeps after the run of 9 February 2025 (ISO weeks).
EXPECTED = {
    "20250209T020000Z": "daily.0",
    "20250208T020000Z": "daily.1",
    "20250207T020000Z": "daily.2",
    "20250206T020000Z": "daily.3",
    "20250205T020000Z": "daily.4",
    "20250204T020000Z": "daily.5",
    "20250203T020000Z": "daily.6",
    "20250202T020000Z": "weekly.0",  # week 5 (27 Jan - 2 Feb); week 6 is all daily
    "20250126T020000Z": "weekly.1",
    "20250119T020000Z": "weekly.2",
    "20250112T020000Z": "weekly.3",
    "20250131T020000Z": "monthly.0",  # newest of January; February's newest is daily.0
}


@pytest.fixture
def sim(lab):
    """An instance row without containers whose directory holds a small home and a dump."""
    inst = AtlassianInstance.objects.create(
        tenant=lab.tenant,
        name=f"b{lab.suffix}-sim",
        product="jira-software",
        version="9.12.0",
        hostname=f"b{lab.suffix}-sim.lab.example",
        host=lab.app_host,
        status="stopped",
        tier="tier3",
        db_name="sim",
        db_user="sim",
        db_password="sim-password",
    )
    lab.extra_projects.append(inst.name)
    lab.fresh_area(inst)
    idir = f"{lab.app_host.data_root}/instances/{inst.name}"
    sh("rm", "-rf", idir)
    os.makedirs(f"{idir}/home/data", mode=0o750)
    with open(f"{idir}/home/data/static.bin", "wb") as fh:
        fh.write(os.urandom(64 * 1024))
    sh("chown", "-R", "2001:2001", f"{idir}/home")
    policy_for(inst)
    return inst, idir


def _day(idir: str, day: int) -> tuple[str, int]:
    today = f"{idir}/home/data/today.txt"
    before = os.stat(today).st_mtime_ns if os.path.exists(today) else None
    with open(today, "w") as fh:
        fh.write(f"day {day}\n")
    os.chown(today, 2001, 2001)
    if day == 39 and before is not None:
        # Same size, same whole second as yesterday's copy: rsync's quick check calls it
        # unchanged, and only the verification's second pass (by content) copies it.
        same_second = before + 1 if (before + 1) % 10**9 else before - 1
        os.utime(today, ns=(same_second, same_second))
    dump = f"PGDMP simulated dump of day {day}\n".encode()
    with open(f"{idir}/db.dump", "wb") as fh:
        fh.write(dump)
    return hashlib.sha256(dump).hexdigest(), len(dump)


def test_forty_days_keep_exactly_the_points_of_7_daily_4_weekly_12_monthly(lab, sim):
    inst, idir = sim
    op = Operation.objects.create(
        kind=BackupOperationKind.BACKUP_CREATE, tenant=lab.tenant, instance=inst, status="running"
    )
    ctx = OperationContext(op)
    with host_connection(lab.app_host) as app, host_connection(lab.backup_host) as bconn:
        for day in range(40):
            sha, size = _day(idir, day)
            backup = backup_record_start(
                inst, kind=BackupKind.SCHEDULED, mode="hot", taken_at=START + timedelta(days=day)
            )
            point_store(
                ctx,
                instance=inst,
                backup=backup,
                app=app,
                bconn=bconn,
                dump_sha256=sha,
                dump_bytes=size,
            )
    assert lab.points_on_disk(inst) == sorted(EXPECTED)
    retained = Backup.objects.filter(instance=inst, status=BackupStatus.SUCCEEDED)
    assert {b.point_name: b.label for b in retained} == EXPECTED
    assert Backup.objects.filter(instance=inst, status=BackupStatus.EXPIRED).count() == 28
    area = lab.area(inst)
    static = {
        backup1("stat", "-c", "%i", f"{area}/points/{name}/home/data/static.bin").strip()
        for name in EXPECTED
    }
    today = {
        backup1("stat", "-c", "%i", f"{area}/points/{name}/home/data/today.txt").strip()
        for name in EXPECTED
    }
    assert len(static) == 1  # one copy on disk, hard-linked into every point
    assert len(today) == len(EXPECTED)  # changed every day: a file per point
    assert backup1(
        "stat", "-c", "%h", f"{area}/points/20250209T020000Z/home/data/static.bin"
    ).strip() == str(len(EXPECTED))
    assert backup1("cat", f"{area}/points/20250209T020000Z/home/data/today.txt") == "day 39\n"
    # every kept point still verifies against its own manifest
    for name in EXPECTED:
        backup1("sh", "-c", f"cd {area}/points/{name} && sha256sum --check --quiet manifest.sha256")
    # the newest point took only the changed file's space
    newest = retained.get(point_name="20250209T020000Z")
    assert newest.disk_bytes < 64 * 1024 < newest.logical_bytes
