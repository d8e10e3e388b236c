"""Fixtures for host tests: the lab's real hosts (from ``.lab/state.json``) and helpers to enrol
them through the panel and run their operations inline."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from panel.access import access_for_user
from panel.operations import operation_execute
from provisioning.models import Host, Operation
from provisioning.remote import HostConnection, SSHTarget

REPO = Path(__file__).resolve().parents[2]
LAB_STATE = Path(os.environ.get("PANEL_LAB_STATE") or REPO / ".lab" / "state.json")


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
        pytest.fail(f"The lab state {LAB_STATE} lacks hosts {sorted(missing)}; run "
                    "`scripts/lab up` again.", pytrace=False)
    return state


@pytest.fixture(scope="session")
def lab_hosts(lab_state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in lab_state["hosts"]}


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Operations are run inline by the tests; nothing is sent to a broker (no stray worker may
    run them behind the test's back)."""
    sent: list[str] = []
    monkeypatch.setattr("panel.operations.operation_enqueue", lambda op_id: sent.append(op_id))
    return sent


def lab_admin_connection(lab_state: dict[str, Any], name: str) -> HostConnection:
    """A connection with the lab's own admin key, to look at a host behind the panel's back."""
    spec = next(h for h in lab_state["hosts"] if h["name"] == name)
    key = Path(lab_state["admin_ssh_key"]).read_text()
    return HostConnection(SSHTarget(
        label=f"lab {name}", address=spec["address"], port=int(spec["ssh_port"]),
        user=spec["ssh_user"], fingerprint=spec["host_key_fingerprint"], private_key=key,
    ))


def run_operation(op: Operation) -> Operation:
    """Run a pending operation in this process, as the worker would, and reload it."""
    operation_execute(op.id)
    op.refresh_from_db()
    return op


def step_text(op: Operation) -> str:
    return "\n".join(f"{s.message} | {s.command} | {s.exit_code} | {s.output}"
                     for s in op.steps.order_by("id"))


@pytest.fixture
def enrol_lab_host(pat, lab_state, lab_hosts) -> Iterator[Callable[..., Host]]:
    """``enrol_lab_host("app1", **overrides)`` enrols a lab host as Pat, runs first contact
    inline and returns the host. The panel keys it installed are removed afterwards."""
    from provisioning.hosts import host_enrol

    enrolled: list[tuple[str, str]] = []

    def enrol(name: str, *, trust: bool = True, password: bool = True, **overrides: Any) -> Host:
        spec = lab_hosts[name]
        fields: dict[str, Any] = {
            "name": f"lab-{name}", "role": spec["role"], "address": spec["address"],
            "ssh_port": int(spec["ssh_port"]), "ssh_user": spec["ssh_user"],
            "data_root": spec["data_root"], "private_address": spec["private_address"],
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
        try:
            with lab_admin_connection(lab_state, name) as conn:
                conn.run(["sh", "-c", 'f="$HOME/.ssh/authorized_keys"; grep -vxF "$1" "$f" '
                          '> "$f.panel-test" || true; cat "$f.panel-test" > "$f"; '
                          'rm -f "$f.panel-test"', "sh", public_key])
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's result
            print(f"could not remove the test key from {name}: {exc}")
