"""Tenant isolation on a shared app host (review M3): two tenants' instances on one real lab
host, through the real Docker engine and the host's real nginx proxy. From inside one tenant's
app container (as the product's own user, what code execution through an installed app gives),
the other tenant's app and database cannot be reached by address or by name, while the proxy
still serves both hostnames; the containers run with the memory, CPU and pid limits and the
reduced capabilities the compose file asks for."""

from __future__ import annotations

import json
import subprocess

import pytest

from certificates.proxy import ProxyLayout
from panel.access import access_for_user
from provisioning.compose import edge_network, instance_alias
from provisioning.models import AtlassianInstance, InstanceStatus
from provisioning.services import instance_create, instance_delete
from tests.support.lab import container_ip, step_text
from tests.support.lab import run_operation as run
from tests.support.lab_edge import https_get, standin_json

# Operations are run inline here: nothing goes to a broker (``no_broker``, tests/support/lab.py).
pytestmark = [
    pytest.mark.lab,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_broker"),
]

FAST = {"STANDIN_STARTUP_SECONDS": "1"}

# Tries each (label, host, port) from inside a container; prints what happened to each.
_PROBE = r"""
import json, socket, sys
result = {}
for label, host, port in json.loads(sys.argv[1]):
    try:
        with socket.create_connection((host, port), timeout=3):
            result[label] = "open"
    except OSError as exc:
        result[label] = f"{type(exc).__name__}: {exc}"
print(json.dumps(result))
"""


def _create(actor, tenant, host, name, product, version, cleanup, sites) -> AtlassianInstance:
    op = instance_create(
        actor=access_for_user(actor),
        tenant=tenant,
        name=name,
        product=product,
        version=version,
        hostname=f"{name}.{tenant.slug}.example",
        host=host,
        heap_min_mb=512,
        heap_max_mb=1024,
        tier="tier3",
        extra_env=FAST,
    )
    inst = AtlassianInstance.objects.get(pk=op.instance_id)
    cleanup.append(inst)
    sites.append(inst)
    op = run(op)
    assert op.status == "succeeded", step_text(op)
    inst.refresh_from_db()
    assert inst.status == InstanceStatus.RUNNING
    return inst


def _container(inst: AtlassianInstance, service: str) -> str:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={inst.name}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out, f"no {service} container for {inst.name}"
    return out[0]


def _inspect(container: str) -> dict:
    out = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]


def _probe_from(container: str, uid: int, targets: list[tuple[str, str, int]]) -> dict:
    """Connect from inside ``container`` as ``uid`` (the product's user) to each target."""
    out = subprocess.run(
        ["docker", "exec", "-u", str(uid), container, "python3", "-c", _PROBE, json.dumps(targets)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_one_tenants_app_cannot_reach_another_tenants_app_or_database(
    alice,
    charlie,
    acme,
    globex,
    ready_app_host,
    unique_name,
    cleanup_projects,
    cleanup_sites,
):
    host = ready_app_host
    mine = _create(
        alice,
        acme,
        host,
        unique_name("acme"),
        "jira-software",
        "9.12.0",
        cleanup_projects,
        cleanup_sites,
    )
    theirs = _create(
        charlie,
        globex,
        host,
        unique_name("globex"),
        "bitbucket",
        "8.19.0",
        cleanup_projects,
        cleanup_sites,
    )
    assert mine.host_id == theirs.host_id  # the same app host, the same Docker engine

    their_app, their_db = _container(theirs, "app"), _container(theirs, "db")
    their_app_ip = container_ip(theirs.name, "app", edge_network(theirs))
    their_db_ip = container_ip(theirs.name, "db", f"{theirs.name}_private")
    assert their_app_ip and their_db_ip
    targets = [
        ("their app by address", their_app_ip, 7990),
        ("their ssh port by address", their_app_ip, 7999),
        ("their database by address", their_db_ip, 5432),
        ("their app by alias", instance_alias(theirs), 7990),
        ("their app by instance name", theirs.name, 7990),
        ("their app by container name", _inspect(their_app)["Name"].lstrip("/"), 7990),
        ("their database by container name", _inspect(their_db)["Name"].lstrip("/"), 5432),
        # controls: the probe works, and the own database is where it always was
        ("own database", "db", 5432),
    ]
    my_app = _container(mine, "app")
    result = _probe_from(my_app, 2001, targets)
    assert result.pop("own database") == "open", result
    for label, outcome in result.items():
        assert outcome != "open", f"{label} is reachable from another tenant: {result}"

    # the other way round as well, from Bitbucket's user
    my_app_ip = container_ip(mine.name, "app", edge_network(mine))
    my_db_ip = container_ip(mine.name, "db", f"{mine.name}_private")
    back = _probe_from(
        their_app,
        2003,
        [
            ("app", my_app_ip, 8080),
            ("database", my_db_ip, 5432),
            ("alias", instance_alias(mine), 8080),
        ],
    )
    assert all(outcome != "open" for outcome in back.values()), back

    # the addresses are real: the machine itself reaches both apps on them
    from tests.support.lab import standin_info as _info

    assert _info(theirs, 7990)["state"] == "RUNNING"

    # each app is on its own two networks only; the proxy is on both edge networks
    for inst, app in ((mine, my_app), (theirs, their_app)):
        networks = set(_inspect(app)["NetworkSettings"]["Networks"])
        assert networks == {edge_network(inst), f"{inst.name}_private"}, networks
    proxy = ProxyLayout.for_host(host).container
    proxy_networks = set(_inspect(proxy)["NetworkSettings"]["Networks"])
    assert {edge_network(mine), edge_network(theirs)} <= proxy_networks

    # and the proxy still serves both hostnames (placeholder certificates: no CA configured)
    for inst, path in ((mine, "/status"), (theirs, "/status")):
        answer = https_get(host.address, inst.hostname, path, cafile=None)
        assert answer.status == 200, answer.body[:300]
        assert standin_json(answer)["state"] == "RUNNING"

    # deleting an instance takes the proxy off its network, and the network is gone
    delete = run(
        instance_delete(actor=access_for_user(charlie), instance=theirs, confirm=theirs.name)
    )
    assert delete.status == "succeeded", step_text(delete)
    gone = subprocess.run(
        ["docker", "network", "inspect", edge_network(theirs)], capture_output=True, text=True
    )
    assert gone.returncode != 0, gone.stdout
    assert edge_network(theirs) not in set(_inspect(proxy)["NetworkSettings"]["Networks"])
    answer = https_get(host.address, mine.hostname, "/status", cafile=None)
    assert answer.status == 200 and standin_json(answer)["state"] == "RUNNING"


def test_instance_containers_run_with_the_limits_and_capabilities_of_their_compose_file(
    alice, acme, ready_app_host, unique_name, cleanup_projects, cleanup_sites
):
    inst = _create(
        alice,
        acme,
        ready_app_host,
        unique_name("limits"),
        "jira-software",
        "9.12.0",
        cleanup_projects,
        cleanup_sites,
    )
    app = _inspect(_container(inst, "app"))["HostConfig"]
    # heap 1024 MB + Jira's 768 MB non-heap floor; tier 3: one CPU
    assert app["Memory"] == (1024 + 768) * 1024**2 and app["MemorySwap"] == app["Memory"]
    assert app["NanoCpus"] == 1_000_000_000 and app["PidsLimit"] == 2048
    assert app["CapDrop"] == ["ALL"] and "no-new-privileges:true" in app["SecurityOpt"]
    db = _inspect(_container(inst, "db"))["HostConfig"]
    assert db["Memory"] == 512 * 1024**2 and db["PidsLimit"] == 512 and db["CapDrop"] == ["ALL"]
    # the kernel enforces it: a process of the product's user cannot gain privileges through
    # a setuid binary (no-new-privileges)
    app_id = _container(inst, "app")
    status = subprocess.run(
        ["docker", "exec", "-u", "2001", app_id, "grep", "NoNewPrivs", "/proc/self/status"],
        capture_output=True,
        text=True,
    )
    assert status.stdout.split() == ["NoNewPrivs:", "1"], status.stdout + status.stderr
    # the stand-in started as root, chowned its home and dropped to uid 2001 with these caps
    assert _inspect(app_id)["State"]["Running"] is True
