"""The backup lab world and its helpers (plain functions: no fixtures are defined here).

``lab_world()`` enrols the lab's backup host and app1 through the panel and provisions them
(app1 pushes to backup1 with its rrsync-restricted key), creates a tenant with an admin,
support staff and one running Jira stand-in, and commits those rows outside the tests'
transactions. ``LabWorld.app2_host()`` enrols app2 as a second app host of backup1 on first
use (from a fixture, so its rows are committed too), for restores onto another host.
``tests/backups/lab/conftest.py`` wraps it in its package-scoped ``lab`` fixture; a module
elsewhere builds its own with a fixture of its own scope.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from backups.wal import ship_mark_parse
from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP, access_for_user
from panel.registry import registry
from provisioning.compose import instance_dir, project_name
from provisioning.models import AtlassianInstance, Host, Operation
from provisioning.products import spec_for
from tenants.models import Membership, Tenant
from tests.support.lab import LAB_STATE, container_ip, lab_key_remove, run_operation, step_text

FAST = {"STANDIN_STARTUP_SECONDS": "2", "STANDIN_ACCESS_LOG": "0"}


def sh(*argv: str, check: bool = True, timeout: float = 120) -> str:
    """Run a command on this machine (the lab's data roots have the same paths here)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} failed: {done.stdout}{done.stderr}")
    return done.stdout


def wal_shipped_after(instance: AtlassianInstance, moment: Any, timeout: float = 150) -> None:
    """Wait until the app host's WAL shipper (cron, every few seconds) finished a pass that
    started after ``moment``: every WAL written before it is then on the backup host."""
    ok = f"{instance_dir(instance)}/wal-ship.ok"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shipped = ship_mark_parse(sh("sh", "-c", f"cat {ok} 2>/dev/null || true"))
        if shipped is not None and shipped > moment:
            return
        time.sleep(2)
    pytest.fail(f"the shipper did not pass after {moment} within {timeout} s")


def backup1(*argv: str, check: bool = True) -> str:
    """Run a command in the lab's backup host container."""
    return sh("docker", "exec", "panel-lab-backup1", *argv, check=check)


@dataclass
class LabWorld:
    """The backup tests' world: people, the enrolled hosts and one running instance."""

    tenant: Tenant
    admin: User
    support: User
    platform: User
    app_host: Host
    backup_host: Host
    instance: AtlassianInstance
    suffix: str
    extra_projects: list[str] = field(default_factory=list)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    app2: Host | None = None

    def app2_host(self) -> Host:
        """Lab host app2, enrolled and provisioned as an app host of backup1 on first use.

        Call it from a module- or package-scoped fixture (under ``django_db_blocker``): from a
        test its rows would be rolled back while its key stays on the host."""
        if self.app2 is None:
            self.app2 = enrol_and_provision(
                access_for_user(self.platform), self.specs["app2"], backup_host=self.backup_host
            )
        return self.app2

    @property
    def idir(self) -> str:
        return f"{self.app_host.data_root}/instances/{self.instance.name}"

    def instance_dir(self, instance: AtlassianInstance) -> str:
        """The instance's project directory on its host (the same path on this machine)."""
        host = instance.host or self.app_host
        return f"{host.data_root}/instances/{instance.name}"

    def area(self, instance: AtlassianInstance | None = None, host: Host | None = None) -> str:
        name = (instance or self.instance).name
        return f"{self.backup_host.data_root}/hosts/{(host or self.app_host).name}/{name}"

    def projects_remove(self, names: list[str]) -> None:
        """Remove these instances' containers, volumes, directories and backup areas (on app1
        and, when enrolled, app2). Their rows stay; it never fails (clean-up)."""
        app_hosts = [self.app_host, *([self.app2] if self.app2 is not None else [])]
        for name in names:
            sh(
                "docker",
                "compose",
                "-p",
                name,
                "down",
                "-v",
                "-t",
                "3",
                "--remove-orphans",
                check=False,
                timeout=180,
            )
            for host in app_hosts:
                sh("rm", "-rf", f"{host.data_root}/instances/{name}", check=False)
                backup1("rm", "-rf", self.area(AtlassianInstance(name=name), host), check=False)

    def fresh_area(self, instance: AtlassianInstance | None = None) -> None:
        backup1("rm", "-rf", self.area(instance))

    def points_on_disk(self, instance: AtlassianInstance | None = None) -> list[str]:
        out = backup1("sh", "-c", f"ls -1 {self.area(instance)}/points 2>/dev/null || true")
        return sorted(out.split())

    def refresh(self) -> AtlassianInstance:
        self.instance = AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
            pk=self.instance.pk
        )
        return self.instance

    # the stand-in's own API, through its container's address on the proxy network

    def api(
        self,
        path: str,
        body: dict | None = None,
        *,
        method: str | None = None,
        instance: AtlassianInstance | None = None,
    ) -> Any:
        inst = instance or self.instance
        ip = container_ip(project_name(inst), "app", "panel-proxy")
        port = spec_for(inst.product).http_port
        url = f"http://{ip}:{port}{inst.context_path}/rest/standin/1.0/{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url,
            data=data,
            method=method or ("POST" if body is not None else "GET"),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - lab
            return json.loads(response.read() or b"null")

    def titles(self, instance: AtlassianInstance | None = None) -> list[str]:
        return [row["title"] for row in self.api("items", instance=instance)["items"]]

    def point_copy(
        self, point: Any, name: str, host: Host | None = None
    ) -> tuple[Operation, AtlassianInstance]:
        """Restore ``point`` into a new instance ``name`` (on ``host``, default the source's)
        as support staff, inline; its operation and the copy (removed with the lab's)."""
        from backups.services import restore_start

        self.extra_projects.append(name)
        op = wait_ok(
            restore_start(
                actor=access_for_user(self.support),
                backup=point,
                mode="new_instance",
                name=name,
                hostname=f"{name}.staging.example",
                host=host,
            )
        )
        return op, AtlassianInstance.objects.get(name=name)

    def psql(self, sql: str, instance: AtlassianInstance | None = None) -> str:
        inst = instance or self.instance
        return sh(
            "docker",
            "compose",
            "-p",
            project_name(inst),
            "exec",
            "-T",
            "db",
            "psql",
            "-At",
            "-U",
            inst.db_user,
            "-d",
            inst.db_name,
            "-c",
            sql,
        )

    def as_app(self, *argv: str, instance: AtlassianInstance | None = None) -> str:
        """Run a command as root inside the app container (to set owners and modes)."""
        inst = instance or self.instance
        return sh(
            "docker", "compose", "-p", project_name(inst), "exec", "-T", "-u", "0", "app", *argv
        )  # fmt: skip


def home_listing(home: str, *, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """{relative path: (type, mode, uid, gid, sha256 or link target)} of a home directory."""
    out = sh("find", home, "-mindepth", "1", "-printf", "%P\\0%y\\0%#m\\0%U\\0%G\\0%l\\0")
    fields = out.split("\0")
    listing: dict[str, tuple] = {}
    for i in range(0, len(fields) - 1, 6):
        path, kind, mode, uid, gid, target = fields[i : i + 6]
        if path.startswith(skip):
            continue
        digest = target
        if kind == "f":
            digest = sh("sha256sum", f"{home}/{path}").split()[0]
        listing[path] = (kind, mode, int(uid), int(gid), digest)
    return listing


def enrol_and_provision(actor: Any, spec: dict[str, Any], **extra: Any) -> Host:
    """Enrol the lab host of ``spec`` and provision it, both inline; fails on a failed step."""
    from provisioning.hosts import host_enrol, host_provision

    op = run_operation(
        host_enrol(
            actor=actor,
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
    assert op.status == "succeeded", step_text(op)
    host = Host.objects.get(pk=op.host_id)
    op = run_operation(host_provision(actor=actor, host=host))
    assert op.status == "succeeded", step_text(op)
    return Host.objects.select_related("backup_host").get(pk=host.pk)


def create_instance(
    world_actor: Any, tenant: Tenant, host: Host, name: str, **fields: Any
) -> AtlassianInstance:
    """Create a running stand-in ``name`` of ``tenant`` on ``host`` (tier 3; Jira unless
    ``product`` says otherwise), inline."""
    from provisioning.services import instance_create

    op = instance_create(
        actor=world_actor,
        tenant=tenant,
        name=name,
        product=fields.pop("product", "jira-software"),
        version=fields.pop("version", "9.12.0"),
        hostname=f"{name}.lab.example",
        host=host,
        heap_min_mb=fields.pop("heap_min_mb", 512),
        heap_max_mb=fields.pop("heap_max_mb", 1024),
        extra_env=FAST,
        tier=fields.pop("tier", "tier3"),
        **fields,
    )
    op = run_operation(op)
    assert op.status == "succeeded", step_text(op)
    return AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
        pk=op.instance_id
    )


@contextlib.contextmanager
def lab_world(django_db_blocker: Any) -> Iterator[LabWorld]:
    """A lab world whose rows are committed and removed (with a flush) when the block ends.

    Modules outside this package build their own with a fixture of their own scope: an
    imported package-scoped ``lab`` would outlive them, keeping its rows and patches alive
    for every later test of the session."""
    if not LAB_STATE.exists():
        pytest.fail(
            f"The lab is not up ({LAB_STATE} missing): run `scripts/lab up`.", pytrace=False
        )
    state = json.loads(LAB_STATE.read_text())
    specs = {h["name"]: h for h in state["hosts"]}
    suffix = secrets.token_hex(3)
    with pytest.MonkeyPatch.context() as mp, django_db_blocker.unblock():
        mp.setattr("panel.operations.operation_enqueue", lambda op_id: None)
        # DNS, certificates and the proxy have their own tests; here they would only add
        # minutes (and images the lab may not have).
        mp.setitem(registry["instance_hooks"], "publish", [])
        mp.setitem(registry["instance_hooks"], "unpublish", [])
        platform = User.objects.create_user(f"lab-pat-{suffix}", "pat@lab.example", "x")
        platform.groups.add(Group.objects.get_or_create(name=PLATFORM_ADMIN_GROUP)[0])
        support = User.objects.create_user(f"lab-sam-{suffix}", "sam@lab.example", "x")
        support.groups.add(Group.objects.get_or_create(name=SUPPORT_GROUP)[0])
        admin = User.objects.create_user(f"lab-alice-{suffix}", "alice@lab.example", "x")
        tenant = Tenant.objects.create(
            name=f"Lab {suffix}",
            slug=f"lab-{suffix}",
            contact_email="ops@lab.example",
            default_tier="tier3",
        )
        Membership.objects.create(user=admin, tenant=tenant, role=Membership.Role.ADMIN)
        actor = access_for_user(platform)
        backup_host = enrol_and_provision(actor, specs["backup1"])
        app_host = enrol_and_provision(actor, specs["app1"], backup_host=backup_host)
        instance = create_instance(actor, tenant, app_host, f"b{suffix}-jira")
        world = LabWorld(
            tenant=tenant,
            admin=admin,
            support=support,
            platform=platform,
            app_host=app_host,
            backup_host=backup_host,
            instance=instance,
            suffix=suffix,
            specs=specs,
        )
        try:
            yield world
        finally:
            _teardown(state, world)


def _teardown(state: dict[str, Any], world: LabWorld) -> None:
    from django.core.management import call_command

    world.projects_remove([world.instance.name, *world.extra_projects])
    enrolled = [("app1", world.app_host), ("backup1", world.backup_host)]
    if world.app2 is not None:
        enrolled.append(("app2", world.app2))
    for name, host in enrolled:
        lab_key_remove(state, name, host.ssh_public_key)
    # The world's rows were committed outside any test transaction: remove them the way a
    # transactional test case does after each test.
    call_command("flush", interactive=False, verbosity=0)


def wait_ok(op: Operation) -> Operation:
    """Run ``op`` inline and fail the test unless it succeeded."""
    op = run_operation(op)
    assert op.status == "succeeded", f"{op.error}\n{step_text(op)}"
    return op


class TableLock:
    """Holds an exclusive lock on a table of the instance's database, so that a pg_dump taken
    meanwhile waits: the operation is reliably in the middle of its work when the worker dies."""

    def __init__(self, instance: AtlassianInstance) -> None:
        self.instance = instance
        self.proc = subprocess.Popen(
            [
                "docker",
                "compose",
                "-p",
                instance.name,
                "exec",
                "-T",
                "db",
                "psql",
                "-U",
                instance.db_user,
                "-d",
                instance.db_name,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "BEGIN; LOCK TABLE standin_item IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def release(self) -> None:
        # Killing the local client leaves psql running in the container: end its session.
        i = self.instance
        subprocess.run(
            [
                "docker",
                "compose",
                "-p",
                i.name,
                "exec",
                "-T",
                "db",
                "psql",
                "-U",
                i.db_user,
                "-d",
                i.db_name,
                "-c",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid();",
            ],
            capture_output=True,
            timeout=60,
        )
        self.proc.kill()
        self.proc.wait(timeout=30)
