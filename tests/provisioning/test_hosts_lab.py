"""Enrol, trust, provision and health-check the lab's real hosts through the panel."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from panel.access import access_for_user
from panel.operations import OperationConflict, wait_for
from provisioning.hosts import (
    PASSWORD_PARAM,
    PROXY_NETWORK,
    host_backup_dir,
    host_backup_push_dir,
    host_backup_rsync_destination,
    host_backup_ssh_argv,
    host_connection,
    host_enrol,
    host_health_check,
    host_health_probe_by_id,
    host_provision,
    host_trust_key,
)
from provisioning.models import Host
from tenants.models import AuditEvent
from tests.support.lab import lab_admin_connection, run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def provision(pat, host: Host):
    op = run_operation(host_provision(actor=access_for_user(pat), host=host))
    host.refresh_from_db()
    return op


def test_it_enrols_and_provisions_a_backup_host_and_an_app_host_and_a_second_run_changes_nothing(
    pat, enrol_lab_host, lab_hosts, client
):
    backup = enrol_lab_host("backup1")
    assert backup.status == Host.Status.TRUSTED
    connect = backup.operations.get()
    assert connect.status == "succeeded", connect.error
    assert connect.result["key_installed"] is True
    # The one-time password is gone from the operation and was never audited.
    assert PASSWORD_PARAM not in connect.params
    password = lab_hosts["backup1"]["root_password"]
    assert password not in str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert password not in step_text(connect)

    op = provision(pat, backup)
    assert op.status == "succeeded", op.error + step_text(op)
    assert backup.status == Host.Status.READY
    # rsync only: the panel's points are its own rsync --link-dest copies (no rsnapshot)
    assert backup.facts["rsync_version"] and "rsnapshot_version" not in backup.facts
    assert backup.facts["rrsync"] == "/usr/bin/rrsync"
    assert Path(backup.data_root, "hosts").is_dir()

    app = enrol_lab_host("app1", backup_host=backup)
    op = provision(pat, app)
    assert op.status == "succeeded", op.error + step_text(op)
    assert app.status == Host.Status.READY and app.status_reason == ""
    facts = app.facts
    assert facts["docker_version"] and facts["compose_version"].startswith("2.")
    assert facts["arch"] == "x86_64" and facts["os_id"] == "debian" and facts["kernel"]
    assert app.cpu_count >= 1 and app.memory_mb > 256
    assert app.disk_total_bytes > app.disk_free_bytes > 0
    for sub in ("instances", "proxy", "proxy/conf.d", ".ssh"):
        assert Path(app.data_root, sub).is_dir()
    assert facts["backup_target"] == f"lab-backup1:{backup.data_root}/hosts/lab-app1"
    with host_connection(app) as conn:
        networks = conn.docker().networks.list(names=[PROXY_NETWORK])
        assert PROXY_NETWORK in [n.name for n in networks]
    # Every command is a step with its exit code and duration.
    uname = op.steps.get(command="uname -m")
    assert uname.exit_code == 0 and uname.duration_ms is not None and "x86_64" in uname.output
    assert op.steps.filter(command__startswith="docker-api GET").exists()

    again = provision(pat, app)
    assert again.status == "succeeded", again.error
    assert again.result["changed"] == []
    assert again.steps.last().message == "lab-app1 is already provisioned, nothing changed"
    # The admin's page shows what was recorded and the operations that did it.
    client.force_login(pat)
    page = client.get(f"/hosts/{app.pk}/").content.decode()
    assert facts["docker_version"] in page and app.ssh_public_key in page
    assert f"/operations/{again.pk}/" in page and "lab-backup1" in page

    again_backup = provision(pat, backup)
    assert again_backup.result["changed"] == []
    assert "nothing changed" in again_backup.steps.last().message


def test_an_admin_confirms_the_fingerprint_seen_on_first_contact(pat, enrol_lab_host, lab_hosts):
    host = enrol_lab_host("app2", trust=False)
    first = host.operations.get()
    assert first.status == "succeeded"
    assert host.status == Host.Status.ENROLLED and host.host_key_fingerprint == ""
    assert host.seen_host_key_fingerprint == lab_hosts["app2"]["host_key_fingerprint"]
    assert "confirm host key" in host.status_reason
    # The password was not used before the key was trusted, and is not kept for later.
    assert PASSWORD_PARAM not in first.params

    op = run_operation(
        host_trust_key(
            actor=access_for_user(pat),
            host=host,
            fingerprint=host.seen_host_key_fingerprint,
            root_password=lab_hosts["app2"]["root_password"],
        )
    )
    host.refresh_from_db()
    assert op.status == "succeeded", op.error
    assert op.result == {
        "trusted": True,
        "key_installed": True,
        "host_key_fingerprint": lab_hosts["app2"]["host_key_fingerprint"],
    }
    assert host.status == Host.Status.TRUSTED
    assert host.host_key.startswith("ssh-ed25519 ")


def test_a_changed_host_key_is_refused_and_no_command_runs(pat, enrol_lab_host, lab_hosts):
    host = enrol_lab_host("app2")
    real = lab_hosts["app2"]["host_key_fingerprint"]
    wrong = "SHA256:" + "Q" * 43
    marker_root = f"{lab_hosts['app2']['data_root']}/mismatch-{secrets.token_hex(4)}"
    Host.objects.filter(pk=host.pk).update(host_key_fingerprint=wrong, data_root=marker_root)
    host.refresh_from_db()

    op = provision(pat, host)
    assert op.status == "failed"
    assert wrong in op.error and real in op.error and "Nothing was run" in op.error
    assert not op.steps.exclude(command="").exists()
    assert not Path(marker_root).exists()
    assert host.status == Host.Status.ERROR and real in host.status_reason
    # The admin sees the key the host presented and may trust it deliberately.
    assert host.seen_host_key_fingerprint == real


def test_a_wrong_fingerprint_given_at_enrolment_is_refused_before_any_login(
    enrol_lab_host, lab_hosts
):
    wrong = "SHA256:" + "Z" * 43
    host = enrol_lab_host("app2", host_key_fingerprint=wrong)
    op = host.operations.get()
    assert op.status == "failed"
    assert wrong in op.error and lab_hosts["app2"]["host_key_fingerprint"] in op.error
    assert host.status == Host.Status.ERROR
    assert not op.steps.exclude(command="").exists()
    assert PASSWORD_PARAM not in op.params


def test_an_unreachable_host_fails_with_a_readable_reason_and_shows_unreachable(pat, settings):
    settings.PANEL_SSH_RETRY_BACKOFF = 0.1
    op = host_enrol(
        actor=access_for_user(pat),
        name="ghost",
        role="app",
        address="127.0.0.99",
        ssh_port=2222,
        data_root="/srv/ghost",
        root_password="not-used-123",
    )
    op = run_operation(op)
    host = Host.objects.get(pk=op.host_id)
    assert op.status == "failed"
    assert op.error == (
        "Cannot reach ghost at 127.0.0.99:2222 over SSH: connection refused (tried 3 times)."
    )
    assert host.status == Host.Status.UNREACHABLE and host.status_reason == op.error
    assert PASSWORD_PARAM not in op.params

    # A pinned host that went away: provisioning fails the same readable way.
    Host.objects.filter(pk=host.pk).update(
        host_key_fingerprint="SHA256:" + "A" * 43, status=Host.Status.READY
    )
    host.refresh_from_db()
    op = provision(pat, host)
    assert op.status == "failed" and "connection refused" in op.error
    assert host.status == Host.Status.UNREACHABLE


def test_two_provision_operations_on_one_host_are_refused(pat, enrol_lab_host):
    host = enrol_lab_host("app2")
    first = host_provision(actor=access_for_user(pat), host=host)
    with pytest.raises(OperationConflict) as err:
        host_provision(actor=access_for_user(pat), host=host)
    assert str(first.id) in str(err.value)
    assert run_operation(first).status == "succeeded"


def test_health_records_reachability_docker_and_disk(pat, enrol_lab_host, settings):
    host = enrol_lab_host("app2")
    assert provision(pat, host).status == "succeeded"
    Host.objects.filter(pk=host.pk).update(disk_free_bytes=None, last_health_at=None)

    op = run_operation(host_health_check(actor=access_for_user(pat), host=host))
    host.refresh_from_db()
    assert op.status == "succeeded", op.error
    assert op.result["reachable"] is True and op.result["docker"]
    assert host.last_health_at and host.last_seen_at and host.disk_free_bytes
    assert host.status == Host.Status.READY and host.disk_warning is False

    settings.PANEL_HOST_DISK_WARNING_PERCENT = 1
    op = run_operation(host_health_check(actor=access_for_user(pat), host=host))
    host.refresh_from_db()
    assert host.disk_warning is True
    assert op.steps.filter(level="warning", message__contains="above 1% used").exists()

    # The periodic check (no operation) marks a host that stops answering, then recovers it.
    settings.PANEL_SSH_RETRY_BACKOFF = 0.1
    Host.objects.filter(pk=host.pk).update(ssh_port=2299)
    result = host_health_probe_by_id(host.pk)
    host.refresh_from_db()
    assert result["reachable"] is False
    assert host.status == Host.Status.UNREACHABLE and "127.0.0.12:2299" in host.status_reason
    Host.objects.filter(pk=host.pk).update(ssh_port=2222)
    host_health_probe_by_id(host.pk)
    host.refresh_from_db()
    assert host.status == Host.Status.READY and host.status_reason == ""


def test_the_app_host_rsyncs_to_its_backup_host_and_cannot_run_anything_else_there(
    pat, enrol_lab_host, lab_state
):
    backup = enrol_lab_host("backup1")
    assert provision(pat, backup).status == "succeeded"
    app = enrol_lab_host("app1", backup_host=backup)
    op = provision(pat, app)
    assert op.status == "succeeded", op.error + step_text(op)
    app = Host.objects.select_related("backup_host").get(pk=app.pk)
    name = f"probe-{secrets.token_hex(4)}"
    ssh_e = " ".join(host_backup_ssh_argv(app))
    with host_connection(app) as conn:
        conn.upload(f"/tmp/{name}", b"backup bytes\n", mode=0o600)
        # rrsync lets one transfer at a time into the directory: wait out a running backup.
        assert wait_for(
            lambda: (
                conn.run(
                    [
                        "rsync",
                        "-a",
                        "-e",
                        ssh_e,
                        f"/tmp/{name}",
                        host_backup_rsync_destination(app, name),
                    ],
                    ok_codes=range(256),
                ).exit_code
                == 0
            ),
            timeout=60,
            interval=2,
        )
        # rrsync confines the key: no shell, no path outside the app host's directory.
        shell = conn.run(
            [*host_backup_ssh_argv(app), f"root@{backup.peer_address}", f"touch /tmp/{name}-pwned"],
            ok_codes=range(1, 256),
        )
        escape = conn.run(
            [
                "rsync",
                "-a",
                "-e",
                ssh_e,
                f"/tmp/{name}",
                host_backup_rsync_destination(app, f"../../{name}-escaped"),
            ],
            ok_codes=range(256),
        )
        conn.run(["rm", "-f", f"/tmp/{name}"])
    # Pushes land in the app host's write-only incoming area, never among committed points.
    landed = Path(host_backup_push_dir(app), name)
    assert landed.read_bytes() == b"backup bytes\n"
    assert not Path(host_backup_dir(app), name).exists()
    landed.unlink()
    assert shell.exit_code != 0
    assert escape.exit_code != 0 or not Path(backup.data_root, f"{name}-escaped").exists()
    assert not Path(backup.data_root, "hosts", f"{name}-escaped").exists()
    with lab_admin_connection(lab_state, "backup1") as conn:
        assert not conn.exists(f"/tmp/{name}-pwned")
