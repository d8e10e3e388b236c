"""Fixtures for instance tests against the lab: a provisioned app host and cleanup of the
compose projects a test creates on the machine's Docker engine."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator

import pytest

from panel.access import access_for_user
from provisioning.hosts import host_provision
from provisioning.models import AtlassianInstance, Host, Operation
from tests.provisioning.conftest import (  # noqa: F401 - shared lab fixtures
    _no_broker,
    enrol_lab_host,
    lab_hosts,
    lab_state,
    run_operation,
    step_text,
)


@pytest.fixture
def ready_app_host(enrol_lab_host, pat) -> Host:  # noqa: F811
    """Lab host app1, enrolled and provisioned through the panel."""
    host = enrol_lab_host("app1")
    op = run_operation(host_provision(actor=access_for_user(pat), host=host))
    assert op.status == "succeeded", step_text(op)
    host.refresh_from_db()
    assert host.status == Host.Status.READY
    return host


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Instance names unique to this test run (the Docker engine is shared)."""
    suffix = secrets.token_hex(3)
    return lambda base: f"t{suffix}-{base}"


@pytest.fixture
def cleanup_projects() -> Iterator[list[AtlassianInstance]]:
    """Instances appended here have their compose project and data removed afterwards."""
    created: list[AtlassianInstance] = []
    yield created
    for inst in created:
        subprocess.run(
            ["docker", "compose", "-p", inst.name, "down", "-t", "5", "--remove-orphans"],
            capture_output=True,
            timeout=120,
        )
        network_remove(f"panel-edge-{inst.name}")
        if inst.host is not None:
            subprocess.run(
                ["rm", "-rf", f"{inst.host.data_root}/instances/{inst.name}"],
                capture_output=True,
                timeout=60,
            )


def network_remove(network: str) -> None:
    """Remove ``network`` even if a proxy is still attached (a test that skipped deletion)."""
    found = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", network],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        return
    for container in found.stdout.split():
        subprocess.run(
            ["docker", "network", "disconnect", "-f", network, container], capture_output=True
        )
    subprocess.run(["docker", "network", "rm", network], capture_output=True)


def container_ip(project: str, service: str, network: str) -> str:
    """The address of ``service`` of compose project ``project`` on ``network``. The app's
    network towards the proxy is its own ``panel-edge-<project>`` (``"panel-proxy"``, where
    older tests name the proxy side, means that network)."""
    if network == "panel-proxy":
        network = f"panel-edge-{project}"
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out, f"no running {service} container in {project}"
    fmt = '{{(index .NetworkSettings.Networks "' + network + '").IPAddress}}'
    return subprocess.run(
        ["docker", "inspect", "-f", fmt, out[0]], capture_output=True, text=True, check=True
    ).stdout.strip()


def op_for(instance: AtlassianInstance) -> Operation:
    return Operation.objects.filter(instance=instance).order_by("-created_at").first()


def run(op: Operation) -> Operation:
    return run_operation(op)
