"""API and page latency at fleet size (run ``bench/fleet_seed.py`` first).

    .venv/bin/python bench/api_bench.py [--requests 200] [--concurrency 4] [--workers N]

For every list and detail endpoint and the main pages, as a tenant admin (one tenant: 100
instances, 1,000 operations, 2,000 backup points) and as a platform admin (everything):

1. **queries per request**, counted in-process with Django's test client and
   ``CaptureQueriesContext``, on the first page and on a deep page (page 100 for the staff
   lists): equal counts mean the number of queries does not grow with the data;
2. **p50 / p95 latency** over loopback against gunicorn (``bench.settings``), a fixed number of
   requests from a small thread pool, and the number of errors (anything but 200);
3. **the raw SQL for the same request**: the SELECTs Django ran, replayed through psycopg (the
   median of several runs each), split into the page's own queries and the per-request
   overhead (session, user, token, memberships); the difference between the endpoint's p50 and
   its SQL is what Django, DRF and the templates cost.

Writes the table to ``bench/results/api.md`` with the machine described.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
os.environ.setdefault(
    "DATABASE_URL",
    os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/panel_bench"),
)
RESULTS = REPO / "bench" / "results" / "api.md"
# Tables every authenticated request reads, whatever the page shows.
OVERHEAD_TABLES = (
    "django_session",
    "auth_user",
    "auth_group",
    "tenants_apitoken",
    "tenants_membership",
    "otp_totp_totpdevice",
    "otp_static",
    "axes_",
)
SQL_REPEATS = 7
WHO = ("customer", "staff")
PAGE_SIZE = 50


@dataclass
class Endpoint:
    label: str
    kind: str  # "list", "detail" or "page"
    path: str
    who: str  # "customer" or "staff"
    deep: str = ""  # the same list further down (same query count expected)


@dataclass
class Result:
    endpoint: Endpoint
    queries: int = 0
    deep_queries: int | None = None
    rows: int | None = None
    p50: float = 0.0
    p95: float = 0.0
    errors: int = 0
    page_sql: float = 0.0
    overhead_sql: float = 0.0
    notes: list[str] = field(default_factory=list)


# --- fixtures in the bench database ----------------------------------------------------------


def callers() -> dict[str, dict[str, str]]:
    """A write token and a logged-in session for the tenant admin and the platform admin.

    The staff session goes through the real login: password, then a TOTP code (staff must use
    two-factor), so the pages see exactly the per-request work production does.
    """
    from django.contrib.auth.models import User
    from django.test import Client
    from django_otp.oath import TOTP

    from bench.fleet_seed import PASSWORD
    from tenants.models import ApiToken
    from tenants.models import SealedTOTPDevice as TOTPDevice

    found: dict[str, dict[str, str]] = {}
    for who, username in (("customer", "c000-admin0"), ("staff", "bench-admin")):
        user = User.objects.get(username=username)
        membership = user.memberships.first()
        secret, prefix, key_hash = ApiToken.generate()
        ApiToken.objects.create(
            user=user,
            tenant=membership.tenant if membership else None,
            name=f"bench {datetime.now(UTC):%H%M%S}",
            scope="write",
            prefix=prefix,
            key_hash=key_hash,
        )
        client = Client()
        response = client.post("/login/", {"username": username, "password": PASSWORD})
        assert response.status_code == 302, f"login of {username} failed"
        if who == "staff":
            device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
            if device is None:
                device = TOTPDevice.objects.create(user=user, name="bench", confirmed=True)
            code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
            device.last_t = -1  # the same 30 s window may be used by an earlier run
            device.save(update_fields=["last_t"])
            response = client.post("/login/verify/", {"token": f"{code.token():06d}"})
            assert response.status_code == 302, "two-factor step of the staff login failed"
        found[who] = {"token": secret, "session": client.cookies["sessionid"].value}
    return found


def endpoints() -> list[Endpoint]:
    from backups.models import Backup
    from provisioning.models import AtlassianInstance, Host, License, Operation
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="customer-000")
    instance = AtlassianInstance.objects.filter(tenant=tenant).order_by("name").first()
    operation = Operation.objects.filter(instance=instance).order_by("-created_at").first()
    point = Backup.objects.filter(instance=instance).order_by("-taken_at").first()
    lic = License.objects.filter(instance=instance).first()
    host = instance.host
    backup_host = Host.objects.filter(role="backup").first()
    lists = [
        "instances",
        "licenses",
        "operations",
        "backups",
        "backup-policies",
        "audit-events",
        "memberships",
        "tenants",
    ]
    # A list's deep page is chosen from its row count once page 1 is read (see main()).
    out = [Endpoint(f"GET /api/{n}/", "list", f"/api/{n}/", w) for w in WHO for n in lists]
    out += [
        Endpoint("GET /api/hosts/", "list", "/api/hosts/", "staff"),
        Endpoint(
            "GET /api/operations/?instance=",
            "list",
            f"/api/operations/?instance={instance.id}",
            "customer",
        ),
        Endpoint(
            "GET /api/backups/?instance=",
            "list",
            f"/api/backups/?instance={instance.id}",
            "customer",
        ),
    ]
    for who in WHO:
        out += [
            Endpoint("GET /api/me/", "detail", "/api/me/", who),
            Endpoint("GET /api/instances/{id}/", "detail", f"/api/instances/{instance.id}/", who),
            Endpoint(
                "GET /api/operations/{id}/", "detail", f"/api/operations/{operation.id}/", who
            ),
            Endpoint(
                "GET /api/operations/{id}/steps/",
                "detail",
                f"/api/operations/{operation.id}/steps/",
                who,
            ),
            Endpoint("GET /api/backups/{id}/", "detail", f"/api/backups/{point.id}/", who),
            Endpoint("GET /api/licenses/{id}/", "detail", f"/api/licenses/{lic.id}/", who),
            Endpoint("GET /api/tenants/{id}/", "detail", f"/api/tenants/{tenant.id}/", who),
        ]
    out += [
        Endpoint("GET /api/hosts/{id}/", "detail", f"/api/hosts/{host.id}/", "staff"),
        Endpoint(
            "GET /api/hosts/{id}/ (backup host)", "detail", f"/api/hosts/{backup_host.id}/", "staff"
        ),
    ]
    for who in WHO:
        # Pages show 25 rows: the customer's 100 instances end on page 4.
        last = {"customer": 4, "staff": 100}[who]
        out += [
            Endpoint("dashboard /", "page", "/", who),
            Endpoint("/instances/", "page", "/instances/", who, f"/instances/?page={last}"),
            Endpoint("/instances/{id}/", "page", f"/instances/{instance.id}/", who),
            Endpoint("/instances/{id}/backups/", "page", f"/instances/{instance.id}/backups/", who),
            Endpoint("/operations/", "page", "/operations/", who, f"/operations/?page={last}"),
            Endpoint("/operations/{id}/", "page", f"/operations/{operation.id}/", who),
            Endpoint("/audit/", "page", "/audit/", who),
        ]
    out += [
        Endpoint(
            "/staff/instances/?q=jira",
            "page",
            "/staff/instances/?q=jira",
            "staff",
            "/staff/instances/?q=jira&page=20",
        ),
        # 25 hosts a page: the fleet's 520 end on page 21.
        Endpoint("/hosts/", "page", "/hosts/", "staff", "/hosts/?page=21"),
        Endpoint("/hosts/{id}/", "page", f"/hosts/{host.id}/", "staff"),
        Endpoint("/staff/dr/", "page", "/staff/dr/", "staff"),
    ]
    return out


# --- 1. queries per request -----------------------------------------------------------------


def queries_of(path: str, headers: dict[str, str]) -> tuple[int, list[str], int, Any]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(**headers)
    client.get(path)  # warm: the first call may record a token's last use, fill caches
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    rows = None
    if response.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and "count" in body:
            rows = body["count"]
    return len(captured), [q["sql"] for q in captured.captured_queries], response.status_code, rows


def client_headers(kind: str, caller: dict[str, str]) -> dict[str, str]:
    if kind == "page":
        return {"HTTP_COOKIE": f"sessionid={caller['session']}"}
    return {"HTTP_AUTHORIZATION": f"Bearer {caller['token']}"}


def http_headers(kind: str, caller: dict[str, str]) -> dict[str, str]:
    if kind == "page":
        return {"Cookie": f"sessionid={caller['session']}"}
    return {"Authorization": f"Bearer {caller['token']}"}


# --- 2. latency under a bounded loopback load ----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_start(port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DJANGO_SETTINGS_MODULE": "bench.settings"}
    (REPO / "var").mkdir(exist_ok=True)
    log = open(REPO / "var" / "bench-gunicorn.log", "w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "panel.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--access-logfile",
            "-",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/login/")
            if conn.getresponse().status == 200:
                # One worker answers; the others may still be importing the panel (each does
                # after the fork): let every one of them serve before anything is measured.
                load(port, "/login/", {}, 4 * workers, workers)
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("gunicorn did not start; see var/bench-gunicorn.log")


def load(port: int, path: str, headers: dict[str, str], n: int, concurrency: int) -> tuple:
    """``n`` GETs of ``path`` from ``concurrency`` threads; returns (timings ms, errors)."""

    def one(_: int) -> tuple[float, int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.perf_counter()
        conn.request("GET", path, headers={**headers, "Host": "127.0.0.1"})
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - start) * 1000
        conn.close()
        return elapsed, response.status

    with ThreadPoolExecutor(concurrency) as pool:
        # Warm up from the pool, so that the requests spread over the workers (three in a row
        # could all land on one of them, leaving another to pay its first request of the
        # path, its URL resolver and templates, inside the measured ones).
        list(pool.map(one, range(2 * concurrency)))
        results = list(pool.map(one, range(n)))
    timings = sorted(t for t, _ in results)
    errors = sum(1 for _, status in results if status != 200)
    return timings, errors


def percentile(values: list[float], p: float) -> float:
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


# --- 3. the raw SQL of the same request ----------------------------------------------------


def sql_time(statements: list[str]) -> tuple[float, float]:
    """Replay the SELECTs through psycopg; (page ms, per-request overhead ms), medians."""
    import psycopg

    page = overhead = 0.0
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        for sql in statements:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            runs = []
            for _ in range(SQL_REPEATS):
                start = time.perf_counter()
                conn.execute(sql).fetchall()
                runs.append((time.perf_counter() - start) * 1000)
            cost = statistics.median(runs)
            if any(f'"{t}' in sql or f" {t}" in sql for t in OVERHEAD_TABLES) and not any(
                f'FROM "{t}' in sql for t in ("provisioning_", "backups_", "tenants_tenant")
            ):
                overhead += cost
            else:
                page += cost
    return page, overhead


# --- report ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from django.db import connection

    mem_kb = 0
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    return {
        "cpu": f"{os.cpu_count()} × {cpu}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": pg,
        "os": platform.platform(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def fleet() -> dict[str, int]:
    from backups.models import Backup
    from provisioning.models import AtlassianInstance, Operation, OperationStep
    from tenants.models import AuditEvent, Tenant

    return {
        "tenants": Tenant.objects.count(),
        "instances": AtlassianInstance.objects.count(),
        "backup points": Backup.objects.count(),
        "operations": Operation.objects.count(),
        "operation steps": OperationStep.objects.count(),
        "audit events": AuditEvent.objects.count(),
    }


def report(results: list[Result], info: dict[str, str], sizes: dict[str, int], args: Any) -> str:
    lines = [
        "# API and page latency at fleet size",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/api_bench.py` "
        f"({args.requests} requests per row, {args.concurrency} at a time, gunicorn with "
        f"{args.workers} sync workers on 127.0.0.1; load average at start {info['load']}).",
        "",
        f"- Machine: {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- Python {info['python']}, PostgreSQL {info['postgresql']} (same machine)",
        "- Fleet: " + ", ".join(f"{n:,} {name}" for name, n in sizes.items()),
        "- Callers: *customer* = tenant admin of one tenant (100 instances, ~1,000 operations, "
        "2,000 backup points) with a write token (API) or a session (pages); *staff* = platform "
        "admin (sees all), session after password + TOTP.",
        "",
        "Queries: per request at page 1 / a deep page (the same number means it does not grow "
        "with the data). SQL page / overhead: the request's own SELECTs replayed through "
        "psycopg (median of 7), split into the page's queries and the per-request session, "
        "user, token and membership reads. p50 - SQL is what Django, DRF and templates cost.",
        "",
        "| endpoint | who | rows | queries | p50 ms | p95 ms | errors | SQL page ms "
        "| SQL overhead ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        queries = str(r.queries)
        if r.deep_queries is not None:
            queries += f" / {r.deep_queries}"
        lines.append(
            f"| `{r.endpoint.label}` ({r.endpoint.kind}) | {r.endpoint.who} | "
            f"{'' if r.rows is None else f'{r.rows:,}'} | {queries} | {r.p50:.1f} | "
            f"{r.p95:.1f} | {r.errors} | {r.page_sql:.2f} | {r.overhead_sql:.2f} |"
        )
    errors = sum(r.errors for r in results)
    grown = [
        f"{r.endpoint.label} ({r.endpoint.who})"
        for r in results
        if r.deep_queries not in (None, r.queries)
    ]
    lines += [
        "",
        f"Total errors: {errors}. Lists whose query count differs on a deep page: "
        f"{', '.join(grown) if grown else 'none'}.",
    ]
    notes = [f"- `{r.endpoint.label}` ({r.endpoint.who}): {n}" for r in results for n in r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--only", default="", help="run only endpoints whose label has this")
    args = parser.parse_args()

    import django

    django.setup()
    info = machine()
    sizes = fleet()
    if sizes["instances"] < 10_000:
        raise SystemExit("panel_bench is not seeded: run bench/fleet_seed.py first")
    who = callers()
    todo = [e for e in endpoints() if args.only in e.label]

    results = []
    for e in todo:
        r = Result(e)
        count, statements, status, rows = queries_of(e.path, client_headers(e.kind, who[e.who]))
        if status != 200:
            r.notes.append(f"in-process answer {status}")
        r.queries, r.rows = count, rows
        if e.kind == "list" and rows and rows > PAGE_SIZE:
            e.deep = (
                f"{e.path}{'&' if '?' in e.path else '?'}page={min(100, -(-rows // PAGE_SIZE))}"
            )
        if e.deep:
            r.deep_queries = queries_of(e.deep, client_headers(e.kind, who[e.who]))[0]
        r.page_sql, r.overhead_sql = sql_time(statements)
        results.append(r)
        print(f"queries {count:>3} {e.who:>8} {e.label}", flush=True)

    port = free_port()
    server = gunicorn_start(port, args.workers)
    try:
        for r in results:
            e = r.endpoint
            timings, r.errors = load(
                port, e.path, http_headers(e.kind, who[e.who]), args.requests, args.concurrency
            )
            r.p50, r.p95 = percentile(timings, 50), percentile(timings, 95)
            print(
                f"p50 {r.p50:7.1f} p95 {r.p95:7.1f} err {r.errors} sql {r.page_sql:6.2f}"
                f"+{r.overhead_sql:5.2f} {e.who:>8} {e.label}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)

    text = report(results, info, sizes, args)
    if not args.only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"\nwritten to {RESULTS.relative_to(REPO)}")
    else:
        print(text)


if __name__ == "__main__":
    main()
