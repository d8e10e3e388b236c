"""Small pieces of host handling that need no lab: keys, the pinning policy, state changes."""

from __future__ import annotations

import io
import subprocess

import paramiko
import pytest

from panel.access import access_for_user
from panel.operations import operation_cancel, operation_execute
from provisioning import host_tasks
from provisioning.hosts import (
    PASSWORD_PARAM,
    _parse_os_release,
    host_abort,
    host_enrol,
    host_provision,
    hosts_due_for_health,
)
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
        " panel@app-one")
    loaded = paramiko.Ed25519Key.from_private_key(io.StringIO(keys.private_openssh))
    assert fingerprint_of_key(loaded) == keys.fingerprint
    openssh = subprocess.run(["ssh-keygen", "-lf", "-"], input=keys.public_openssh,
                             capture_output=True, text=True, check=True)
    assert openssh.stdout.split()[1] == keys.fingerprint == fingerprint_of_line(
        keys.public_openssh)


def test_the_policy_accepts_only_the_pinned_fingerprint():
    server_key = paramiko.Ed25519Key.from_private_key(
        io.StringIO(keypair_generate("x").private_openssh))
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
    offenders = [
        str(path) for path in root.glob("*/**/*.py")
        if ".venv" not in path.parts and "tests" not in path.parts
        and ("AutoAddPolicy" in path.read_text() or "WarningPolicy" in path.read_text())
    ]
    assert offenders == []


def test_commands_must_be_argv_lists():
    conn = HostConnection(SSHTarget(label="x", address="127.0.0.1", port=22, user="root",
                                    fingerprint="SHA256:" + "A" * 43))
    with pytest.raises(TypeError):
        conn.run("rm -rf /")  # type: ignore[arg-type]


def test_a_host_without_a_trusted_key_is_never_logged_in_to():
    conn = HostConnection(SSHTarget(label="x", address="127.0.0.1", port=22, user="root",
                                    fingerprint="", password="pw"))
    with pytest.raises(HostKeyMismatch, match="no key trusted yet"):
        conn.open()


def test_os_release_is_parsed_like_a_shell_would():
    parsed = _parse_os_release('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
                               "# comment\nID_LIKE='ubuntu debian'\n")
    assert parsed == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian",
                      "ID_LIKE": "ubuntu debian"}


@pytest.mark.django_db
def test_a_cancelled_enrolment_forgets_the_password(pat):
    op = host_enrol(actor=access_for_user(pat), name="app-x", role="app", address="10.0.0.9",
                    data_root="/srv/atlassian", root_password="s3cret-once")
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
    monkeypatch.setattr(host_tasks.host_health, "delay", sent.append)
    assert [h.name for h in hosts_due_for_health()] == ["app-one"]
    assert host_tasks.host_health_sweep() == [str(app_host.pk)] == sent
    assert not Operation.objects.exists()
