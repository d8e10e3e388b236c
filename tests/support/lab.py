"""Lab fixtures shared by every lab test package (a pytest plugin, see ``tests/conftest.py``).

The lab's real hosts come from ``.lab/state.json``; helpers enrol and provision them through
the panel, run operations inline and clean up the compose projects a test leaves on the
machine's Docker engine. Nothing here is autouse: packages whose operations must not reach a
broker turn ``no_broker`` on in their own conftest.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from panel.access import access_for_user
from panel.operations import operation_execute
from provisioning.models import AtlassianInstance, Host, Operation
from provisioning.remote import HostConnection, SSHTarget

REPO = Path(__file__).resolve().parents[2]
LAB_STATE = Path(os.environ.get("PANEL_LAB_STATE") or REPO / ".lab" / "state.json")


# --- the lab's state ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lab_state() -> dict[str, Any]:
    """The lab's hosts. Fails (never skips): CI must not pass without its integration tests."""
    if not LAB_STATE.exists():
        pytest.fail(
            f"The lab is not up: {LAB_STATE} does not exist. Run `scripts/lab up` (as root) "
            "first; tests marked `lab` need its real SSH hosts.",
            pytrace=False,
        )
    state = json.loads(LAB_STATE.read_text())
    names = {h["name"] for h in state.get("hosts", [])}
    missing = {"app1", "app2", "backup1"} - names
    if missing:
        pytest.fail(
            f"The lab state {LAB_STATE} lacks hosts {sorted(missing)}; run `scripts/lab up` again.",
            pytrace=False,
        )
    return state


@pytest.fixture(scope="session")
def lab_hosts(lab_state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The lab's hosts by name (``app1``, ``app2``, ``backup1``)."""
    return {h["name"]: h for h in lab_state["hosts"]}


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Operations are run inline by the tests; nothing is sent to a broker (no stray worker may
    run them behind the test's back). Returns the ids that would have been enqueued."""
    sent: list[str] = []
    monkeypatch.setattr("panel.operations.operation_enqueue", lambda op_id: sent.append(op_id))
    return sent


def lab_admin_connection(lab_state: dict[str, Any], name: str) -> HostConnection:
    """A connection with the lab's own admin key, to look at a host behind the panel's back."""
    spec = next(h for h in lab_state["hosts"] if h["name"] == name)
    key = Path(lab_state["admin_ssh_key"]).read_text()
    return HostConnection(
        SSHTarget(
            label=f"lab {name}",
            address=spec["address"],
            port=int(spec["ssh_port"]),
            user=spec["ssh_user"],
            fingerprint=spec["host_key_fingerprint"],
            private_key=key,
        )
    )


def lab_key_remove(lab_state: dict[str, Any], name: str, public_key: str) -> None:
    """Remove the panel key ``public_key`` from lab host ``name`` (test cleanup: a failure is
    printed, never raised, so it cannot hide the test's own result)."""
    try:
        with lab_admin_connection(lab_state, name) as conn:
            conn.run(
                [
                    "sh",
                    "-c",
                    'f="$HOME/.ssh/authorized_keys"; grep -vxF "$1" "$f" '
                    '> "$f.panel-test" || true; cat "$f.panel-test" > "$f"; '
                    'rm -f "$f.panel-test"',
                    "sh",
                    public_key,
                ]
            )
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's result
        print(f"could not remove the test key from {name}: {exc}")


# --- operations -----------------------------------------------------------------------------


def run_operation(op: Operation) -> Operation:
    """Run a pending operation in this process, as the worker would, and reload it."""
    operation_execute(op.id)
    op.refresh_from_db()
    return op


def step_text(op: Operation) -> str:
    """The operation's steps, one line each, for assertion messages."""
    return "\n".join(
        f"{s.message} | {s.command} | {s.exit_code} | {s.output}" for s in op.steps.order_by("id")
    )


def op_for(instance: AtlassianInstance) -> Operation | None:
    """The instance's latest operation."""
    return Operation.objects.filter(instance=instance).order_by("-created_at").first()


# --- hosts ----------------------------------------------------------------------------------


@pytest.fixture
def enrol_lab_host(
    pat: User, lab_state: dict[str, Any], lab_hosts: dict[str, dict[str, Any]]
) -> Iterator[Callable[..., Host]]:
    """``enrol_lab_host("app1", **overrides)`` enrols a lab host as Pat, runs first contact
    inline and returns the host. The panel keys it installed are removed afterwards."""
    from provisioning.hosts import host_enrol

    enrolled: list[tuple[str, str]] = []

    def enrol(name: str, *, trust: bool = True, password: bool = True, **overrides: Any) -> Host:
        spec = lab_hosts[name]
        fields: dict[str, Any] = {
            "name": f"lab-{name}",
            "role": spec["role"],
            "address": spec["address"],
            "ssh_port": int(spec["ssh_port"]),
            "ssh_user": spec["ssh_user"],
            "data_root": spec["data_root"],
            "private_address": spec["private_address"],
            # Inside the lab's Docker network the hosts' sshd listens on port 22.
            "peer_ssh_port": 22,
            "host_key_fingerprint": spec["host_key_fingerprint"] if trust else "",
            "root_password": spec["root_password"] if password else "",
        }
        fields.update(overrides)
        op = host_enrol(actor=access_for_user(pat), **fields)
        op = run_operation(op)
        host = Host.objects.get(pk=op.host_id)
        enrolled.append((name, host.ssh_public_key))
        return host

    yield enrol
    for name, public_key in enrolled:
        lab_key_remove(lab_state, name, public_key)


@pytest.fixture
def ready_app_host(enrol_lab_host: Callable[..., Host], pat: User) -> Host:
    """Lab host app1, enrolled and provisioned through the panel."""
    from provisioning.hosts import host_provision

    host = enrol_lab_host("app1")
    op = run_operation(host_provision(actor=access_for_user(pat), host=host))
    assert op.status == "succeeded", step_text(op)
    host.refresh_from_db()
    assert host.status == Host.Status.READY
    return host


# --- instances on the machine's Docker engine -----------------------------------------------


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
        from provisioning.compose import edge_network, project_name

        subprocess.run(
            ["docker", "compose", "-p", project_name(inst), "down", "-t", "5", "--remove-orphans"],
            capture_output=True,
            timeout=120,
        )
        network_remove(edge_network(inst))
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


def standin_info(inst: AtlassianInstance, port: int) -> dict:
    """The stand-in's own ``info`` answer (state, version, environment), from its container."""
    import urllib.request

    ip = container_ip(inst.name, "app", "panel-proxy")
    url = f"http://{ip}:{port}{inst.context_path}/rest/standin/1.0/info"
    with urllib.request.urlopen(url, timeout=10) as resp:  # lab container
        return json.loads(resp.read())


def containers_under(root: str) -> list[str]:
    """Ids of the containers (running or not) whose compose project directory is under
    ``root`` (a lab host's data root: what dies with that host)."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--format",
            '{{.ID}} {{.Label "com.docker.compose.project.working_dir"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ids = []
    for line in out.splitlines():
        cid, _, workdir = line.partition(" ")
        if workdir.startswith(f"{root}/"):
            ids.append(cid)
    return ids


def wait_ssh(address: str, port: int, seconds: float = 90) -> None:
    """Wait until an sshd answers at ``address:port`` (a lab host started again)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["ssh-keyscan", "-T", "2", "-p", str(port), address], capture_output=True, text=True
        )
        if "ssh-" in done.stdout:
            return
        time.sleep(0.5)
    raise AssertionError(f"sshd at {address}:{port} did not come back")
