"""Small pieces of host handling that need no lab: keys, the pinning policy, state changes."""

from __future__ import annotations

import io
import subprocess

import paramiko
import pytest

from panel.access import access_for_user
from panel.operations import operation_cancel, operation_execute
from provisioning import tasks
from provisioning.hosts import (
    PASSWORD_PARAM,
    host_abort,
    host_enrol,
    host_provision,
    hosts_due_for_health,
)
from provisioning.hosts.provision import _parse_os_release
from provisioning.models import Host, Operation
from provisioning.remote import (
    HostConnection,
    HostKeyMismatch,
    PinnedHostKeyPolicy,
    SSHTarget,
    fingerprint_of_line,
    keypair_generate,
)
from provisioning.remote.keys import fingerprint_of_key


def test_the_panel_makes_an_ed25519_key_pair_that_paramiko_and_openssh_read():
    keys = keypair_generate("panel@app-one")
    assert keys.public_openssh.startswith("ssh-ed25519 ") and keys.public_openssh.endswith(
        " panel@app-one"
    )
    loaded = paramiko.Ed25519Key.from_private_key(io.StringIO(keys.private_openssh))
    assert fingerprint_of_key(loaded) == keys.fingerprint
    openssh = subprocess.run(
        ["ssh-keygen", "-lf", "-"],
        input=keys.public_openssh,
        capture_output=True,
        text=True,
        check=True,
    )
    assert openssh.stdout.split()[1] == keys.fingerprint == fingerprint_of_line(keys.public_openssh)


def test_the_policy_accepts_only_the_pinned_fingerprint():
    server_key = paramiko.Ed25519Key.from_private_key(
        io.StringIO(keypair_generate("x").private_openssh)
    )
    actual = fingerprint_of_key(server_key)
    PinnedHostKeyPolicy(actual, "app-one").missing_host_key(None, "h", server_key)
    pinned = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyMismatch) as err:
        PinnedHostKeyPolicy(pinned, "app-one").missing_host_key(None, "h", server_key)
    assert pinned in str(err.value) and actual in str(err.value)
    assert err.value.presented_openssh == f"ssh-ed25519 {server_key.get_base64()}"


def test_the_code_never_trusts_unknown_host_keys():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    # Spelled in pieces so that a CI grep for the names does not find this test itself.
    lax = ("AutoAdd" + "Policy", "Warning" + "Policy")
    offenders = [
        str(path)
        for path in root.glob("*/**/*.py")
        if ".venv" not in path.parts
        and any(name in path.read_text(errors="replace") for name in lax)
    ]
    assert offenders == []


def test_commands_must_be_argv_lists():
    conn = HostConnection(
        SSHTarget(
            label="x", address="127.0.0.1", port=22, user="root", fingerprint="SHA256:" + "A" * 43
        )
    )
    with pytest.raises(TypeError):
        conn.run("rm -rf /")  # type: ignore[arg-type]


def test_a_host_without_a_trusted_key_is_never_logged_in_to():
    conn = HostConnection(
        SSHTarget(
            label="x", address="127.0.0.1", port=22, user="root", fingerprint="", password="pw"
        )
    )
    with pytest.raises(HostKeyMismatch, match="no key trusted yet"):
        conn.open()


def test_os_release_is_parsed_like_a_shell_would():
    parsed = _parse_os_release(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
        "# comment\nID_LIKE='ubuntu debian'\n"
    )
    assert parsed == {
        "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)",
        "ID": "debian",
        "ID_LIKE": "ubuntu debian",
    }


@pytest.mark.django_db
def test_a_cancelled_enrolment_forgets_the_password(pat):
    op = host_enrol(
        actor=access_for_user(pat),
        name="app-x",
        role="app",
        address="10.0.0.9",
        data_root="/srv/atlassian",
        root_password="s3cret-once",
    )
    assert PASSWORD_PARAM in op.params
    operation_cancel(op, actor=access_for_user(pat))
    op.refresh_from_db()
    assert op.status == "cancelled" and PASSWORD_PARAM not in op.params


@pytest.mark.django_db
def test_a_provision_that_dies_leaves_the_host_in_error_not_provisioning(pat, app_host):
    app_host.host_key_fingerprint = "SHA256:" + "A" * 43
    app_host.save()
    op = host_provision(actor=access_for_user(pat), host=app_host)
    Host.objects.filter(pk=app_host.pk).update(status=Host.Status.PROVISIONING)
    host_abort(op, "The worker running this operation stopped responding.")
    app_host.refresh_from_db()
    assert app_host.status == Host.Status.ERROR
    assert "stopped responding" in app_host.status_reason


@pytest.mark.django_db
def test_the_operation_ends_failed_with_a_readable_reason_when_auth_is_impossible(pat, app_host):
    # Pinned but the panel has no key for it (made by hand): nothing is attempted remotely.
    app_host.host_key_fingerprint = "SHA256:" + "A" * 43
    app_host.save()
    op = host_provision(actor=access_for_user(pat), host=app_host)
    assert operation_execute(op.id) == "failed"
    op.refresh_from_db()
    app_host.refresh_from_db()
    assert "no key or password" in op.error
    assert app_host.status == Host.Status.ERROR and app_host.status_reason == op.error


@pytest.mark.django_db
def test_the_periodic_sweep_checks_trusted_hosts_only(monkeypatch, app_host):
    Host.objects.create(name="new-one", role="app", address="10.0.0.7")  # enrolled, no key
    app_host.host_key_fingerprint = "SHA256:" + "A" * 43
    app_host.save()
    sent: list[str] = []
    monkeypatch.setattr(tasks.host_health, "delay", sent.append)
    assert [h.name for h in hosts_due_for_health()] == ["app-one"]
    assert tasks.host_health_sweep() == [str(app_host.pk)] == sent
    assert not Operation.objects.exists()


class FakeConnection:
    """Answers commands from a script (first matching argv prefix wins) and logs them."""

    def __init__(self, script: list[tuple[list[str], int, str]]) -> None:
        self.script = script
        self.ran: list[list[str]] = []
        self.docker_version = {"Version": "26.1.5", "ApiVersion": "1.45"}

    def run(self, argv, *, ok_codes=(0,), **kwargs):
        from provisioning.remote import CommandFailed, CommandResult

        self.ran.append(list(argv))
        for prefix, code, out in self.script:
            if list(argv[: len(prefix)]) == prefix:
                self.script.remove((prefix, code, out))
                if code not in tuple(ok_codes):
                    raise CommandFailed(f"{argv[0]} failed", exit_code=code)
                return CommandResult(out, "", code, 1)
        raise AssertionError(f"unexpected command {argv}")

    def docker(self):
        return object()


class RecordingContext:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def step(self, message: str, **fields) -> None:
        self.messages.append(message)


def _provisioner(conn, os_family="debian"):
    from provisioning.hosts.provision import Provisioner

    p = Provisioner(
        ctx=RecordingContext(), host=Host(name="app-new", role="app", address="10.0.0.5"), conn=conn
    )
    p.facts.update(os_family=os_family, os="Debian GNU/Linux 13 (trixie)")
    return p


def test_docker_and_compose_are_installed_from_distribution_packages_when_absent():
    conn = FakeConnection(
        [
            (["docker", "version"], 127, ""),
            (["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update"], 0, ""),
            (["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install"], 0, ""),
            (["docker", "version"], 0, "26.1.5\n"),
            (["docker", "compose", "version"], 1, ""),
            (["apt-cache", "policy", "docker-compose-plugin"], 0, "Candidate: (none)\n"),
            (["apt-cache", "policy", "docker-compose-v2"], 0, ""),
            (["apt-cache", "policy", "docker-compose"], 0, "  Candidate: 2.26.1-4\n"),
            (["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install"], 0, ""),
            (["docker", "compose", "version"], 0, "2.26.1\n"),
        ]
    )
    p = _provisioner(conn)
    p.ensure_docker()
    p.ensure_compose()
    installs = [argv[-1] for argv in conn.ran if "install" in argv]
    assert installs == ["docker.io", "docker-compose"]
    assert sum("update" in argv for argv in conn.ran) == 1
    assert p.changes == ["installed docker.io", "installed docker-compose"]
    assert p.facts["docker_version"] == "26.1.5" and p.facts["compose_version"] == "2.26.1"


def test_a_missing_compose_v2_without_a_package_fails_readably():
    from panel.operations import OperationFailed

    conn = FakeConnection(
        [
            (["docker", "compose", "version"], 125, "docker: 'compose' is not a docker command."),
            (["apt-cache", "policy", "docker-compose-plugin"], 0, ""),
            (["apt-cache", "policy", "docker-compose-v2"], 0, ""),
            (["apt-cache", "policy", "docker-compose"], 0, "  Candidate: 1.29.2-3\n"),
        ]
    )
    with pytest.raises(OperationFailed, match="Compose v2 plugin is missing on app-new"):
        _provisioner(conn).ensure_compose()
    assert not any("install" in argv for argv in conn.ran)


def test_packages_are_installed_only_on_debian_and_ubuntu():
    from panel.operations import OperationFailed

    conn = FakeConnection([(["docker", "version"], 127, "")])
    with pytest.raises(OperationFailed, match="only on Debian and Ubuntu"):
        _provisioner(conn, os_family="rhel").ensure_docker()
