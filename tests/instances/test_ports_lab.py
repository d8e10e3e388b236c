"""Host ports on real lab hosts: Bitbucket's git over SSH and Bamboo's agent broker answer on
the instance's own host port at the host's public address, as clients outside reach them."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest

from certificates.consistency import endpoint_check
from panel.access import access_for_user
from provisioning.compose import compose_render
from provisioning.models import AtlassianInstance, InstanceStatus
from provisioning.ports import instance_host_port_allocate, public_address, ssh_banner_read
from provisioning.services import instance_create
from tests.support.factories import make_instance
from tests.support.lab import run_operation as run
from tests.support.lab import step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]

FAST = {"STANDIN_STARTUP_SECONDS": "2"}


@pytest.fixture
def port_range(settings) -> tuple[int, int]:
    """A block of the range of its own: other test runs share the lab's Docker engine, and
    their databases know nothing of the ports this run hands out."""
    first = 20000 + random.randrange(10, 100) * 100
    settings.PANEL_INSTANCE_PORT_RANGE = f"{first}-{first + 99}"
    return first, first + 99


def _app_container(inst: AtlassianInstance) -> str:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={inst.name}",
            "--filter",
            "label=com.docker.compose.service=app",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out, f"no app container of {inst.name}"
    return out[0]


def _docker_port(inst: AtlassianInstance, port: int) -> list[str]:
    out = subprocess.run(
        ["docker", "port", _app_container(inst), f"{port}/tcp"],
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def _env(inst: AtlassianInstance) -> list[str]:
    """The application container's environment (``NAME=value`` items)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Env}}", _app_container(inst)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def _port_problems(inst: AtlassianInstance) -> list[dict]:
    return [p for p in endpoint_check(inst) if p["component"] == "port"]


def test_two_bitbucket_instances_answer_git_over_ssh_on_their_own_host_ports(
    alice, acme, ready_app_host, unique_name, cleanup_projects, port_range
):
    made = []
    for base in ("git-a", "git-b"):
        name = unique_name(base)
        op = instance_create(
            actor=access_for_user(alice),
            tenant=acme,
            name=name,
            product="bitbucket",
            version="8.19.0",
            hostname=f"{name}.acme.example",
            host=ready_app_host,
            heap_min_mb=512,
            heap_max_mb=1024,
            extra_env=FAST,
        )
        inst = AtlassianInstance.objects.get(pk=op.instance_id)
        cleanup_projects.append(inst)
        op = run(op)
        assert op.status == "succeeded", step_text(op)
        inst.refresh_from_db()
        made.append(inst)
    one, two = made
    assert one.host_port != two.host_port
    assert all(port_range[0] <= i.host_port <= port_range[1] for i in made)
    address = public_address(ready_app_host)
    for inst in made:
        # Published on the host's address only, like its proxy's 80 and 443.
        assert _docker_port(inst, 7999) == [f"{ready_app_host.address}:{inst.host_port}"]
        # A git client's first read: the SSH server's banner, at the address DNS gives out.
        assert ssh_banner_read(address, inst.host_port).startswith("SSH-2.0-standin-bitbucket")
        assert f"PLUGIN_SSH_BASEURL=ssh://{inst.hostname}:{inst.host_port}/" in _env(inst)
        assert _port_problems(inst) == []
    # The check notices a port the running container does not publish (a record changed
    # without a rollout): it compares the environment, `docker port` and the banner.
    moved = port_range[1]
    AtlassianInstance.objects.filter(pk=two.pk).update(host_port=moved)
    problems = _port_problems(AtlassianInstance.objects.get(pk=two.pk))
    assert len(problems) == 1 and "PLUGIN_SSH_BASEURL" in problems[0]["problem"], problems
    assert f"ssh://{two.hostname}:{moved}/" in problems[0]["problem"]


def test_a_bamboo_instances_agent_broker_is_published_on_its_host_port(
    acme, ready_app_host, unique_name, cleanup_projects, port_range, tmp_path
):
    """The compose project the panel renders, started as the rollout starts it (the panel's
    Bamboo status probe is not this test's subject)."""
    name = unique_name("ci")
    inst = make_instance(
        acme,
        name,
        product="bamboo",
        version="9.6.0",
        hostname=f"{name}.acme.example",
        host=ready_app_host,
        status=InstanceStatus.PROVISIONING,
        heap_min_mb=512,
        heap_max_mb=1024,
        extra_env=FAST,
    )
    cleanup_projects.append(inst)
    port = instance_host_port_allocate(inst, ready_app_host)
    assert port == port_range[0]
    rendered = compose_render(inst)
    home = Path(rendered.home_dir)
    home.mkdir(parents=True)
    os.chown(home, rendered.uid, rendered.uid)
    Path(rendered.db_dir).mkdir(parents=True)
    (tmp_path / "compose.yml").write_text(rendered.compose_yaml)
    (tmp_path / ".env").write_text(rendered.env_file)
    up = subprocess.run(
        ["docker", "compose", "-p", name, "-f", "compose.yml", "--env-file", ".env", "up", "-d"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr
    assert _docker_port(inst, 54663) == [f"{ready_app_host.address}:{port}"]
    assert f"ATL_BROKER_CLIENT_URI=failover:(tcp://{inst.hostname}:{port})" in _env(inst)
    # A remote agent's connection, from outside the host's Docker networks.
    greeting = b""
    deadline = time.monotonic() + 60
    while not greeting and time.monotonic() < deadline:
        try:
            with socket.create_connection((public_address(ready_app_host), port), 5) as sock:
                sock.settimeout(5)
                greeting = sock.recv(64)
        except OSError:
            time.sleep(0.5)
    assert greeting.startswith(b"standin-bamboo-agent")
