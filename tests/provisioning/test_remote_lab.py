"""The remote layer against the lab's real sshd: pinning, argv quoting, files, Docker over SSH."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import pytest

from provisioning.remote import (
    CommandFailed,
    CommandTimeout,
    HostConnection,
    HostKeyMismatch,
    HostUnreachable,
    RemoteFileNotFound,
    host_key_scan,
)
from provisioning.remote.docker_api import PinnedSSHAdapter
from tests.support.lab import lab_admin_connection

pytestmark = pytest.mark.lab

HOSTILE = [
    "; rm -rf /",
    "$(touch /tmp/{m}-a)",
    "`touch /tmp/{m}-b`",
    "x\ntouch /tmp/{m}-c",
    "../../etc/passwd",
    "' \" \\ | & > /tmp/{m}-d",
]


class RecordingContext:
    """Stands in for an OperationContext: keeps the steps the connection records."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.secrets: list[str] = []

    def step(self, message: str, **fields) -> None:
        self.steps.append({"message": message, **fields})

    def check_cancelled(self) -> None:
        pass

    def add_secrets(self, values) -> None:
        self.secrets.extend(values)


def test_first_contact_sees_the_host_key_without_logging_in(lab_hosts):
    app1 = lab_hosts["app1"]
    scanned = host_key_scan(app1["address"], app1["ssh_port"])
    assert scanned.fingerprint == app1["host_key_fingerprint"]
    assert scanned.openssh.startswith(f"{scanned.key_type} AAAA")


def test_hostile_arguments_reach_the_program_as_plain_words(lab_state):
    marker = f"pwned-{secrets.token_hex(4)}"
    words = [w.format(m=marker) for w in HOSTILE]
    with lab_admin_connection(lab_state, "app1") as conn:
        result = conn.run(["printf", "%s\\0", *words])
        assert result.stdout.split("\0")[:-1] == words
        leftovers = conn.run(["sh", "-c", 'ls /tmp | grep -c "$1" || true', "sh", marker])
    assert leftovers.stdout.strip() == "0"


def test_every_command_is_recorded_with_exit_code_duration_and_output(lab_state):
    ctx = RecordingContext()
    with lab_admin_connection(lab_state, "app1") as conn:
        conn.ctx = ctx
        conn.run(["echo", "hello"], message="Say hello")
        with pytest.raises(CommandFailed) as err:
            conn.run(["sh", "-c", "echo broken >&2; exit 3"])
    assert "exit code 3" in str(err.value) and "broken" in str(err.value)
    hello, failed = ctx.steps
    assert hello == {
        "message": "Say hello",
        "level": "info",
        "command": "echo hello",
        "exit_code": 0,
        "duration_ms": hello["duration_ms"],
        "output": "hello\n",
    }
    assert failed["exit_code"] == 3 and failed["level"] == "error"
    assert failed["command"] == "sh -c 'echo broken >&2; exit 3'"


def test_a_command_past_its_timeout_is_stopped(lab_state):
    with lab_admin_connection(lab_state, "app1") as conn:
        with pytest.raises(CommandTimeout, match="did not finish within 1 s"):
            conn.run(["sleep", "30"], timeout=1)
        # The connection is still usable afterwards.
        assert conn.run(["true"]).exit_code == 0


def test_uploads_are_atomic_with_mode_and_owner(lab_state):
    path = f"/tmp/panel-upload-{secrets.token_hex(4)}"
    with lab_admin_connection(lab_state, "app1") as conn:
        conn.upload(path, b"first", mode=0o640, owner=(2001, 2001))
        stat = conn.run(["stat", "-c", "%a %u %g", path]).stdout.split()
        assert stat == ["640", "2001", "2001"]
        assert conn.read(path) == b"first"
        assert conn.upload_if_changed(path, b"first", mode=0o640, owner=(2001, 2001)) is False
        assert conn.upload_if_changed(path, b"second", mode=0o600) is True
        assert conn.read(path) == b"second"
        # No temporary file is left next to it.
        listing = conn.run(["ls", "-a", "/tmp"]).stdout
        assert ".panel-" not in listing.replace(path.rsplit("/", 1)[1], "")
        conn.run(["rm", "-f", path])
        with pytest.raises(RemoteFileNotFound):
            conn.read(path)
        assert conn.read(path, missing_ok=True) is None
        with pytest.raises(ValueError):
            conn.upload("/tmp/../etc/x", b"no")


def test_the_docker_api_goes_over_the_pinned_ssh_connection(lab_state):
    with lab_admin_connection(lab_state, "app1") as conn:
        client = conn.docker(record=False)
        version = client.version()
        names = [c.name for c in client.containers.list()]
        adapter = client.api.get_adapter("http+docker://ssh/v1.41/version")
        # The SDK's requests travel as `docker system dial-stdio` channels of our transport.
        assert isinstance(adapter, PinnedSSHAdapter)
        assert adapter.ssh_client.get_transport() is conn.transport
        assert conn.docker_requests >= 3
        assert not {"http://", "https://"} & set(client.api.adapters)
    assert version["ApiVersion"] and "panel-lab-app1" in names


def test_a_wrong_pin_refuses_commands_files_and_docker_alike(lab_state):
    good = lab_admin_connection(lab_state, "app1").target
    wrong = dataclasses.replace(good, fingerprint="SHA256:" + "B" * 43)
    conn = HostConnection(wrong)
    with pytest.raises(HostKeyMismatch) as err:
        conn.open()
    assert good.fingerprint in str(err.value) and wrong.fingerprint in str(err.value)
    assert err.value.presented_openssh.startswith("ssh-")
    # Nothing was opened: every later call fails instead of reaching the host.
    for call in (
        lambda: conn.run(["true"]),
        lambda: conn.read("/etc/hostname"),
        lambda: conn.docker(),
    ):
        with pytest.raises(HostUnreachable):
            call()


def test_an_unreachable_address_is_retried_then_reported_readably(settings):
    settings.PANEL_SSH_RETRY_BACKOFF = 0.05
    with pytest.raises(HostUnreachable) as err:
        host_key_scan("127.0.0.99", 2222, label="ghost")
    assert str(err.value) == (
        "Cannot reach ghost at 127.0.0.99:2222 over SSH: connection refused (tried 3 times)."
    )


def test_compose_runs_the_v2_plugin_in_a_project_directory(lab_state, lab_hosts):
    root = Path(lab_hosts["app1"]["data_root"])
    with lab_admin_connection(lab_state, "app1") as conn:
        project = f"{root}/compose-probe-{secrets.token_hex(3)}"
        conn.run(["mkdir", "-p", project])
        conn.upload(f"{project}/compose.yaml", b"services:\n  probe:\n    image: scratch\n")
        result = conn.compose(project, "config", "--services", project_name="probe")
        conn.run(["rm", "-rf", project])
    assert result.stdout.strip() == "probe"
