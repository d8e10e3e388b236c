"""Fill a separate PostgreSQL database with a fleet-sized panel (for the benchmarks).

    .venv/bin/python bench/fleet_seed.py            # drops and re-creates panel_bench
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/other .venv/bin/python bench/...

What it makes: 100 tenants (one admin and two viewers each), a support and a platform-admin
user, 20 backup hosts and 500 app hosts, 10,000 instances (20 per app host, 100 per tenant)
each with a license and a daily backup policy, 200,000 backup points (20 per instance),
100,000 finished operations with 1,000,000 steps (10 each), and 100,000 audit events. Small
tables go in with ``bulk_create``; the big ones with PostgreSQL ``COPY``. Everything is
deterministic (fixed seed), so two runs build the same fleet. Takes a minute or two.

The bench users' password is ``bench-password`` (never used outside this database).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/panel_bench"
)
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

TENANTS = 100
BACKUP_HOSTS = 20
APP_HOSTS = 500
INSTANCES = 10_000
POINTS_PER_INSTANCE = 20
OPERATIONS = 100_000
STEPS_PER_OPERATION = 10
AUDIT_EVENTS = 100_000
PASSWORD = "bench-password"  # noqa: S105 - a throwaway password of the bench database
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

rng = random.Random(20261101)


def _uuid() -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def database_recreate(url: str) -> None:
    """Drop and create the database named in ``url`` (never the panel's own)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("panel_bench"):
        raise SystemExit(f"refusing to drop {name!r}: the bench database must be panel_bench*")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def copy_rows(model: Any, rows: Iterable[dict[str, Any]]) -> int:
    """``COPY`` rows (dicts keyed by attname, values ready for the database) into ``model``'s
    table; a column a row leaves out gets the field's default (computed once)."""
    from django.db import connection, models

    fields = list(model._meta.concrete_fields)
    defaults: dict[str, Any] = {}
    for field in fields:
        if isinstance(field, models.DateTimeField) and (field.auto_now or field.auto_now_add):
            defaults[field.attname] = NOW
        elif isinstance(field, models.JSONField):
            defaults[field.attname] = json.dumps(field.get_default())
        else:  # the field's default, or "" / None as Django itself would save
            defaults[field.attname] = field.get_db_prep_save(field.get_default(), connection)
    columns = ", ".join(f'"{f.column}"' for f in fields)
    names = [f.attname for f in fields]
    count = 0
    connection.ensure_connection()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[n] if n in row else defaults[n] for n in names])
                count += 1
    return count


def seed() -> dict[str, int]:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    from backups.catalogue import instances_backup_state_refresh
    from backups.models import Backup, BackupPolicy
    from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP
    from provisioning.models import AtlassianInstance, Host, License, Operation, OperationStep
    from provisioning.products import versions_for
    from tenants.models import AuditEvent, Membership, Tenant

    counts: dict[str, int] = {}
    password = make_password(PASSWORD)

    support = Group.objects.get_or_create(name=SUPPORT_GROUP)[0]
    platform = Group.objects.get_or_create(name=PLATFORM_ADMIN_GROUP)[0]
    staff = User.objects.bulk_create(
        [
            User(username="bench-support", email="support@bench.example", password=password),
            User(username="bench-admin", email="admin@bench.example", password=password),
        ]
    )
    staff[0].groups.add(support)
    staff[1].groups.add(platform)

    tenants = Tenant.objects.bulk_create(
        [
            Tenant(
                id=_uuid(),
                name=f"Customer {i:03d}",
                slug=f"customer-{i:03d}",
                contact_email=f"ops@customer-{i:03d}.example",
                default_tier=("tier1", "tier2", "tier3")[i % 3],
            )
            for i in range(TENANTS)
        ]
    )
    users = User.objects.bulk_create(
        [
            User(
                username=f"c{i:03d}-{role}{n}",
                email=f"{role}{n}@c{i:03d}.example",
                password=password,
            )
            for i in range(TENANTS)
            for role, n in (("admin", 0), ("viewer", 1), ("viewer", 2))
        ]
    )
    Membership.objects.bulk_create(
        [
            Membership(
                id=_uuid(),
                user=user,
                tenant=tenants[k // 3],
                role="admin" if k % 3 == 0 else "viewer",
            )
            for k, user in enumerate(users)
        ]
    )
    counts["tenants"], counts["users"] = len(tenants), len(users) + len(staff)

    backup_hosts = Host.objects.bulk_create(
        [
            Host(
                id=_uuid(),
                name=f"backup-{i:02d}",
                role="backup",
                address=f"10.1.0.{i + 1}",
                status="ready",
                memory_mb=32768,
                cpu_count=8,
                disk_total_bytes=40 * 1024**4,
                disk_free_bytes=25 * 1024**4,
            )
            for i in range(BACKUP_HOSTS)
        ]
    )
    app_hosts = Host.objects.bulk_create(
        [
            Host(
                id=_uuid(),
                name=f"app-{i:03d}",
                role="app",
                address=f"10.2.{i // 250}.{i % 250 + 1}",
                status="ready",
                backup_host=backup_hosts[i % BACKUP_HOSTS],
                memory_mb=131072,
                cpu_count=32,
                disk_total_bytes=4 * 1024**4,
                disk_free_bytes=2 * 1024**4,
            )
            for i in range(APP_HOSTS)
        ]
    )
    counts["hosts"] = len(backup_hosts) + len(app_hosts)

    products = [
        "jira-software",
        "confluence",
        "jira-servicemanagement",
        "bitbucket",
        "bamboo",
        "crowd",
    ]
    instances = []
    for i in range(INSTANCES):
        product = products[i % len(products)]
        tenant = tenants[i % TENANTS]
        name = f"{tenant.slug[-3:]}-{product.split('-')[0][:6]}-{i:05d}"
        instances.append(
            AtlassianInstance(
                id=_uuid(),
                tenant=tenant,
                name=f"i{name}",
                product=product,
                version=versions_for(product)[0],
                hostname=f"{name}.{tenant.slug}.example",
                host=app_hosts[i % APP_HOSTS],
                heap_min_mb=1024,
                heap_max_mb=2048,
                tier=tenant.default_tier,
                db_name=f"db{i}",
                db_user=f"u{i}",
                db_password=f"bench-db-password-{i}",
                status=rng.choices(["running", "stopped", "failed"], [96, 3, 1])[0],
                health="healthy",
                created_at=NOW - timedelta(days=rng.randint(30, 900)),
            )
        )
    AtlassianInstance.objects.bulk_create(instances, batch_size=2000)
    counts["instances"] = len(instances)
    License.objects.bulk_create(
        [
            License(
                id=_uuid(),
                instance=inst,
                product=inst.product,
                key=f"AAAB-bench-{k}",
                decode_status="decoded",
                sen=f"SEN-{k:07d}",
                organisation=inst.tenant.name,
                license_type="COMMERCIAL",
                user_tier="500",
                expiry_date=(NOW + timedelta(days=rng.randint(-30, 700))).date(),
            )
            for k, inst in enumerate(instances)
        ],
        batch_size=2000,
    )
    counts["licenses"] = len(instances)
    # Every instance backed up nightly: window 01:00 UTC, spread over the first hour.
    BackupPolicy.objects.bulk_create(
        [
            BackupPolicy(
                id=_uuid(),
                instance=inst,
                interval_minutes=1440,
                jitter_minutes=60,
                next_run_at=NOW.replace(hour=1, minute=0) + timedelta(days=1),
            )
            for inst in instances
        ],
        batch_size=2000,
    )
    counts["backup_policies"] = len(instances)

    def points() -> Iterator[dict[str, Any]]:
        labels = (
            [f"daily.{n}" for n in range(7)]
            + [f"weekly.{n}" for n in range(4)]
            + [f"monthly.{n}" for n in range(9)]
        )
        for inst in instances:
            size = int(rng.lognormvariate(23.5, 1.0))  # ~16 GB median home directory
            for n, label in enumerate(labels[:POINTS_PER_INSTANCE]):
                age = timedelta(days=n if n < 7 else (7 * (n - 6) if n < 11 else 30 * (n - 10)))
                taken = NOW.replace(hour=1, minute=rng.randint(0, 59)) - age
                yield {
                    "id": _uuid(),
                    "instance_id": inst.id,
                    "backup_host_id": inst.host.backup_host_id,
                    "app_host_id": inst.host_id,
                    "kind": "scheduled",
                    "mode": "hot",
                    "status": "succeeded",
                    "point_name": taken.strftime("%Y%m%dT%H%M%SZ"),
                    "label": label,
                    "taken_at": taken,
                    "product": inst.product,
                    "version": inst.version,
                    "started_at": taken,
                    "finished_at": taken + timedelta(seconds=150),
                    "duration_seconds": 150.0,
                    "downtime_seconds": 0.0,
                    "bytes_transferred": size // 50,
                    "logical_bytes": size,
                    "disk_bytes": size // 40,
                    "file_count": 40_000,
                    "dump_bytes": size // 8,
                    "dump_sha256": "0" * 64,
                    "manifest_sha256": "1" * 64,
                    "verified_at": taken + timedelta(seconds=160),
                }

    counts["backup_points"] = copy_rows(Backup, points())
    # COPY bypasses the catalogue's writers: summarise each instance's points as they would.
    instances_backup_state_refresh(instance_ids=[inst.id for inst in instances])

    kinds = ["backup.create"] * 6 + [
        "instance.restart",
        "instance.upgrade",
        "license.apply",
        "instance.resize",
    ]
    ops_meta: list[tuple[uuid.UUID, datetime]] = []

    def operations() -> Iterator[dict[str, Any]]:
        for k in range(OPERATIONS):
            inst = instances[k % INSTANCES]
            created = NOW - timedelta(seconds=rng.randint(60, 90 * 86400))
            op_id = _uuid()
            ops_meta.append((op_id, created))
            failed = rng.random() < 0.03
            yield {
                "id": op_id,
                "kind": kinds[k % len(kinds)],
                "tenant_id": inst.tenant_id,
                "host_id": inst.host_id,
                "instance_id": inst.id,
                "status": "failed" if failed else "succeeded",
                "params": json.dumps({"app_host": str(inst.host_id)}),
                "result": json.dumps({} if failed else {"seconds": 150}),
                "error": "The backup host ran out of disk space." if failed else "",
                "progress_current": STEPS_PER_OPERATION,
                "progress_total": STEPS_PER_OPERATION,
                "worker": "bench:1",
                "attempts": 1,
                "created_at": created,
                "enqueued_at": created,
                "started_at": created + timedelta(seconds=1),
                "heartbeat_at": created + timedelta(seconds=150),
                "finished_at": created + timedelta(seconds=151),
            }

    counts["operations"] = copy_rows(Operation, operations())

    def steps() -> Iterator[dict[str, Any]]:
        step_id = 0
        for op_id, created in ops_meta:
            for n in range(STEPS_PER_OPERATION):
                step_id += 1
                yield {
                    "id": step_id,
                    "operation_id": op_id,
                    "created_at": created + timedelta(seconds=1 + 15 * n),
                    "level": "info",
                    "message": f"Step {n + 1} of {STEPS_PER_OPERATION}: rsync --link-dest",
                    "command": "rsync -a --delete --link-dest=../daily.1 /srv/atlassian/home/ "
                    "backup@backup:/points/incoming/",
                    "exit_code": 0,
                    "duration_ms": 15000,
                    "output": "sent 412,331,002 bytes  received 9,822 bytes  27,488,721 bytes/sec",
                }

    counts["operation_steps"] = copy_rows(OperationStep, steps())

    actions = [
        "instance.restart",
        "backup.start",
        "license.add",
        "membership.create",
        "token.create",
        "instance.upgrade",
    ]

    def audit() -> Iterator[dict[str, Any]]:
        for k in range(AUDIT_EVENTS):
            inst = instances[rng.randrange(INSTANCES)]
            admin = users[(k % TENANTS) * 3]
            yield {
                "id": k + 1,
                "public_id": _uuid(),
                "created_at": NOW - timedelta(seconds=rng.randint(60, 180 * 86400)),
                "actor_id": admin.id,
                "actor_label": admin.username,
                "tenant_id": inst.tenant_id,
                "source": rng.choice(["ui", "api", "task"]),
                "source_ip": "192.0.2.10",
                "action": actions[k % len(actions)],
                "target_type": "provisioning.atlassianinstance",
                "target_id": str(inst.id),
                "target_label": inst.name,
                "changes": json.dumps({"bench": k}),
            }

    counts["audit_events"] = copy_rows(AuditEvent, audit())

    from django.db import connection
    from django.db.models import Max

    with connection.cursor() as cursor:
        for model in (Backup, Operation, OperationStep, AuditEvent):
            table = model._meta.db_table
            pk = model._meta.pk.column
            if model._meta.pk.get_internal_type() == "BigAutoField":
                top = model.objects.aggregate(top=Max("pk"))["top"]
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, %s), %s)", [f'"{table}"', pk, top]
                )
        cursor.execute("ANALYZE")
    return counts


def main() -> None:
    started = time.monotonic()
    database_recreate(DATABASE_URL)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    migrated = time.monotonic()
    counts = seed()
    done = time.monotonic()
    print(
        f"database {urlsplit(DATABASE_URL).path.lstrip('/')}: migrated in "
        f"{migrated - started:.1f} s, filled in {done - migrated:.1f} s"
    )
    for name, n in counts.items():
        print(f"  {name:>16}: {n:>9,}")


if __name__ == "__main__":
    main()
