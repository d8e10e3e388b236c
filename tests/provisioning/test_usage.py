"""Resource use: ``docker stats`` and ``du`` read over the health check's connection (a fake
one here), samples stored per instance, disk measured less often and bounded, a failing sample
never a failing health check, samples pruned after their retention."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from provisioning import usage
from provisioning.models import AtlassianInstance, InstanceHealthCheck, InstanceUsage
from provisioning.monitoring import instances_health_check
from provisioning.remote import CommandFailed, HostUnreachable
from provisioning.remote.ssh import CommandResult
from provisioning.usage import (
    DU_TIMEOUT,
    ContainerStats,
    docker_stats_parse,
    du_parse,
    host_usage_sample,
    percent_parse,
    size_parse,
    usage_prune,
)
from tests.support.factories import make_instance

MIB, GIB = 1024**2, 1024**3


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MiB", 512 * MIB),
        ("1.5GiB", int(1.5 * GIB)),
        ("0B", 0),
        ("  3.25KiB ", 3328),
        ("12kB", 12_000),
        ("2GB", 2_000_000_000),
        ("1TiB", 1024**4),
        ("--", None),
        ("", None),
        ("12 parsecs", None),
        ("-5MiB", None),
    ],
)
def test_sizes_are_read_in_the_units_docker_prints(text, expected):
    assert size_parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12.34%", 12.34), ("0.00%", 0.0), ("250.5%", 250.5), ("--", None), ("12", None)],
)
def test_percentages_are_read_and_anything_else_is_none(text, expected):
    assert percent_parse(text) == expected


def _stats_line(name: str, cpu: str, mem: str) -> str:
    return json.dumps(
        {
            "BlockIO": "10.5MB / 2.1GB",
            "CPUPerc": cpu,
            "Container": name,
            "ID": "0123456789ab",
            "MemPerc": "40.00%",
            "MemUsage": mem,
            "Name": name,
            "NetIO": "1.2kB / 0B",
            "PIDs": "87",
        }
    )


def test_docker_stats_lines_give_cpu_memory_and_limit_by_container_name():
    out = "\n".join(
        [
            _stats_line("acme-jira-app-1", "37.52%", "1.25GiB / 2.5GiB"),
            _stats_line("acme-jira-db-1", "0.41%", "96.3MiB / 1GiB"),
            "WARNING: something the CLI printed",
            _stats_line("stopped-app-1", "--", "-- / --"),
            "",
        ]
    )
    stats = docker_stats_parse(out)
    assert stats["acme-jira-app-1"] == ContainerStats(37.52, int(1.25 * GIB), int(2.5 * GIB))
    assert stats["acme-jira-db-1"] == ContainerStats(0.41, round(96.3 * MIB), GIB)
    assert stats["stopped-app-1"] == ContainerStats(None, None, None)
    assert len(stats) == 3


def test_du_lines_give_bytes_by_path_and_skip_its_complaints():
    out = (
        "123456789\t/srv/atlassian/instances/acme-jira/home\n"
        "du: cannot read directory '/srv/x/db/base': Permission denied\n"
        "4096\t/srv/atlassian/instances/acme-jira/db\n"
    )
    assert du_parse(out) == {
        "/srv/atlassian/instances/acme-jira/home": 123456789,
        "/srv/atlassian/instances/acme-jira/db": 4096,
    }


# --- sampling over a fake connection --------------------------------------------------------


class FakeTarget:
    label = "app-one"


class FakeConnection:
    """Answers ``docker ps``, ``docker stats`` and ``du`` as a host would; records every argv.

    ``stats`` maps running container names to (cpu, memory) texts; ``disk`` maps a path to its
    bytes (a path not in it is missing); ``du_exit`` the exit code of du; ``fail`` the first
    word of commands that raise (``"docker"``, ``"timeout"``) and with what."""

    target = FakeTarget()

    def __init__(
        self,
        stats: dict[str, tuple[str, str]] | None = None,
        disk: dict[str, int] | None = None,
        du_exit: int = 0,
        fail: dict[str, Exception] | None = None,
        on_du: Callable[[], None] | None = None,
    ) -> None:
        self.stats = stats or {}
        self.disk = disk or {}
        self.du_exit = du_exit
        self.fail = fail or {}
        self.on_du = on_du
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], **kwargs: Any) -> CommandResult:
        self.calls.append(list(argv))
        if argv[0] in self.fail:
            raise self.fail[argv[0]]
        if argv[:2] == ["docker", "ps"]:
            return CommandResult("\n".join([*self.stats, "panel-proxy"]) + "\n", "", 0, 5)
        if argv[:2] == ["docker", "stats"]:
            names = argv[5:]
            assert set(names) <= set(self.stats), "stats asked for a container not running"
            lines = [_stats_line(n, *self.stats[n]) for n in names]
            return CommandResult("\n".join(lines) + "\n", "", 0, 1500)
        if argv[0] == "timeout":
            if self.on_du is not None:
                self.on_du()
            paths = argv[argv.index("--") + 1 :]
            lines = [f"{self.disk[p]}\t{p}" for p in paths if p in self.disk]
            return CommandResult("\n".join(lines), "du: cannot access", self.du_exit, 300)
        raise AssertionError(f"unexpected command {argv}")

    def ran(self, word: str) -> list[list[str]]:
        return [c for c in self.calls if word in c[:3]]


@pytest.fixture
def placed(acme, app_host) -> AtlassianInstance:
    return make_instance(acme, "acme-jira", host=app_host, heap_max_mb=2048)


HOME = "/srv/atlassian/instances/acme-jira/home"
DB = "/srv/atlassian/instances/acme-jira/db"


def _running(name: str = "acme-jira") -> dict[str, tuple[str, str]]:
    return {
        f"{name}-app-1": ("37.52%", "1.25GiB / 2.5GiB"),
        f"{name}-db-1": ("0.41%", "96MiB / 1GiB"),
    }


@pytest.mark.django_db
def test_a_sample_holds_both_containers_and_both_directories(placed):
    conn = FakeConnection(stats=_running(), disk={HOME: 3 * GIB, DB: 200 * MIB})
    [sample] = host_usage_sample(conn, [placed])
    sample = InstanceUsage.objects.get(pk=sample.pk)
    assert (sample.app_cpu_percent, sample.db_cpu_percent) == (37.52, 0.41)
    assert sample.app_memory_bytes == int(1.25 * GIB)
    assert sample.app_memory_limit_bytes == int(2.5 * GIB)
    assert (sample.db_memory_bytes, sample.db_memory_limit_bytes) == (96 * MIB, GIB)
    assert (sample.home_bytes, sample.db_disk_bytes) == (3 * GIB, 200 * MIB)
    assert sample.disk_sampled_at == sample.sampled_at and sample.disk_error == ""
    # one argument per word, each path whole; du stops itself after DU_TIMEOUT seconds
    assert conn.ran("stats") == [
        ["docker", "stats", "--no-stream", "--format", "{{json .}}"]
        + ["acme-jira-app-1", "acme-jira-db-1"]
    ]
    assert conn.ran("du") == [["timeout", str(DU_TIMEOUT), "du", "-sx", "-B1", "--", HOME, DB]]


@pytest.mark.django_db
def test_an_evacuated_copy_is_sampled_under_its_own_compose_project(acme, app_host):
    inst = make_instance(acme, "acme-wiki", host=app_host, compose_project="acme-wiki_e1")
    conn = FakeConnection(stats=_running("acme-wiki_e1") | _running("acme-wiki"))
    [sample] = host_usage_sample(conn, [inst])
    assert conn.ran("stats")[0][5:] == ["acme-wiki_e1-app-1", "acme-wiki_e1-db-1"]
    assert sample.app_cpu_percent == 37.52


@pytest.mark.django_db
def test_disk_is_measured_every_quarter_hour_and_carried_forward_between(placed):
    start = timezone.now()
    conn = FakeConnection(stats=_running(), disk={HOME: GIB, DB: MIB})
    host_usage_sample(conn, [placed], now=start)
    conn.disk = {HOME: 2 * GIB, DB: 2 * MIB}
    [later] = host_usage_sample(conn, [placed], now=start + timedelta(minutes=14))
    assert len(conn.ran("du")) == 1  # not measured again yet
    assert (later.home_bytes, later.disk_sampled_at) == (GIB, start)
    [due] = host_usage_sample(conn, [placed], now=start + timedelta(minutes=15))
    assert len(conn.ran("du")) == 2
    assert (due.home_bytes, due.db_disk_bytes) == (2 * GIB, 2 * MIB)
    assert due.disk_sampled_at == start + timedelta(minutes=15)


@pytest.mark.django_db
def test_a_du_that_times_out_records_why_without_host_paths(placed):
    conn = FakeConnection(stats=_running(), disk={}, du_exit=124)
    [sample] = host_usage_sample(conn, [placed])
    assert sample.home_bytes is None and sample.db_disk_bytes is None
    assert sample.disk_error == (
        f"The home and database directories could not be measured (du did not finish "
        f"within {DU_TIMEOUT} s)."
    )
    assert "/srv" not in sample.disk_error
    assert sample.app_cpu_percent == 37.52  # CPU and memory are still there


@pytest.mark.django_db
def test_a_du_that_ends_with_1_after_measuring_both_keeps_its_sizes(placed):
    conn = FakeConnection(stats=_running(), disk={HOME: GIB, DB: MIB}, du_exit=1)
    [sample] = host_usage_sample(conn, [placed])
    assert (sample.home_bytes, sample.db_disk_bytes, sample.disk_error) == (GIB, MIB, "")


@pytest.mark.django_db
def test_a_missing_database_directory_is_named(placed):
    conn = FakeConnection(stats=_running(), disk={HOME: GIB}, du_exit=1)
    [sample] = host_usage_sample(conn, [placed])
    assert (sample.home_bytes, sample.db_disk_bytes) == (GIB, None)
    assert sample.disk_error == (
        "The database directory could not be measured (du ended with exit code 1)."
    )


@pytest.mark.django_db
def test_one_pass_spends_a_bounded_time_on_du_and_the_rest_wait_oldest_first(
    acme, app_host, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(usage.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(usage, "DISK_BUDGET", 30.0)
    instances = [make_instance(acme, f"acme-i{i}", host=app_host) for i in range(3)]

    def slow_du() -> None:
        clock[0] += 20  # each du takes 20 s

    stats = {k: v for i in instances for k, v in _running(i.name).items()}
    disk = {
        f"/srv/atlassian/instances/{i.name}/{d}": GIB for i in instances for d in ("home", "db")
    }
    conn = FakeConnection(stats=stats, disk=disk, on_du=slow_du)
    start = timezone.now()
    rows = host_usage_sample(conn, instances, now=start)
    measured = [r.instance.name for r in rows if r.disk_sampled_at is not None]
    assert measured == ["acme-i0", "acme-i1"]  # 20 s, then 40 s >= 30 s: no third run
    assert len(rows) == 3 and all(r.app_cpu_percent == 37.52 for r in rows)
    conn.calls.clear()
    host_usage_sample(conn, instances, now=start + timedelta(minutes=1))
    # the one never measured goes first; the others are not due for 15 minutes
    assert [c[-1] for c in conn.ran("du")] == ["/srv/atlassian/instances/acme-i2/db"]


@pytest.mark.django_db
def test_a_failed_docker_stats_still_stores_the_disk_and_a_stopped_app_leaves_its_fields_empty(
    placed,
):
    failed = CommandFailed("docker stats failed", command="docker stats", exit_code=1)
    conn = FakeConnection(stats=_running(), disk={HOME: GIB, DB: MIB}, fail={"docker": failed})
    [sample] = host_usage_sample(conn, [placed])
    assert sample.app_cpu_percent is None and sample.home_bytes == GIB
    only_db = {"acme-jira-db-1": ("1.00%", "50MiB / 1GiB")}
    [sample] = host_usage_sample(FakeConnection(stats=only_db), [placed])
    assert sample.app_cpu_percent is None and sample.app_memory_bytes is None
    assert sample.db_memory_bytes == 50 * MIB
    assert sample.home_bytes == GIB  # carried forward


@pytest.mark.django_db
def test_nothing_readable_stores_no_sample(placed):
    InstanceUsage.objects.create(instance=placed, disk_sampled_at=timezone.now(), home_bytes=1)
    assert host_usage_sample(FakeConnection(stats={}), [placed]) == []
    assert InstanceUsage.objects.count() == 1


# --- inside the health check ----------------------------------------------------------------


class FakeHostConnection:
    """Stands in for HostConnection(target, ...) as a context manager around ``conn``."""

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    def __call__(self, *args: Any, **kwargs: Any) -> FakeHostConnection:
        return self

    def __enter__(self) -> FakeConnection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def healthy(monkeypatch) -> Callable[[FakeConnection], None]:
    monkeypatch.setattr(
        "provisioning.rollout.instance_probe", lambda conn, inst: (True, "RUNNING", "{}")
    )

    def use(conn: FakeConnection) -> None:
        monkeypatch.setattr("provisioning.monitoring.HostConnection", FakeHostConnection(conn))

    return use


@pytest.mark.django_db
def test_the_health_check_samples_each_instance_over_its_connection(placed, healthy):
    conn = FakeConnection(stats=_running(), disk={HOME: GIB, DB: MIB})
    healthy(conn)
    assert instances_health_check() == 1
    assert InstanceHealthCheck.objects.get(instance=placed).ok
    sample = InstanceUsage.objects.get(instance=placed)
    assert sample.app_memory_bytes == int(1.25 * GIB) and sample.home_bytes == GIB


@pytest.mark.django_db
def test_a_host_lost_while_sampling_is_not_a_failed_health_check(placed, healthy):
    lost = HostUnreachable("The SSH connection to app-one closed while `docker ps` was running.")
    healthy(FakeConnection(stats=_running(), fail={"docker": lost, "timeout": lost}))
    assert instances_health_check() == 1
    check = InstanceHealthCheck.objects.get(instance=placed)
    assert check.ok and check.state == "RUNNING" and check.detail == "{}"
    placed.refresh_from_db()
    assert placed.health == "healthy"
    [sample] = InstanceUsage.objects.filter(instance=placed)
    assert sample.app_cpu_percent is None and sample.home_bytes is None
    assert sample.disk_error == "The disk use could not be measured."


@pytest.mark.django_db
def test_a_sample_that_fails_outright_is_logged_and_the_health_check_goes_on(
    acme, app_host, healthy, monkeypatch, caplog
):
    placed = make_instance(acme, "acme-jira", host=app_host)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("a value the sampler did not expect")

    monkeypatch.setattr("provisioning.monitoring.host_usage_sample", broken)
    healthy(FakeConnection(stats=_running()))
    assert instances_health_check() == 1
    assert InstanceHealthCheck.objects.get(instance=placed).ok
    assert InstanceUsage.objects.count() == 0
    assert "resource use of the instances on app-one not sampled" in caplog.text


@pytest.mark.django_db
def test_samples_older_than_the_retention_are_pruned_by_the_health_check(placed, healthy):
    now = timezone.now()
    old = InstanceUsage.objects.create(
        instance=placed, sampled_at=now - usage.USAGE_RETENTION - timedelta(minutes=1)
    )
    kept = InstanceUsage.objects.create(
        instance=placed, sampled_at=now - usage.USAGE_RETENTION + timedelta(minutes=5)
    )
    assert usage_prune(now=now) == 1
    assert list(InstanceUsage.objects.values_list("pk", flat=True)) == [kept.pk]
    old.pk = None
    old.save()
    healthy(FakeConnection(stats=_running()))
    instances_health_check()
    assert not InstanceUsage.objects.filter(pk=old.pk).exists()
    assert InstanceUsage.objects.filter(pk=kept.pk).exists()
