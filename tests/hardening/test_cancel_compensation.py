"""Cancelling mid-way never disables compensation (real worker, real lab hosts).

Each test starts an operation through the real worker, cancels it (as staff) once it is past
its point of no return, and checks the instance ends running in a known state: its app
container runs, the panel's status says running and matches, the app answers RUNNING on its
edge network, the version in the database is the deployed one, and nothing is left behind
(no scratch containers, no staged copies, no half-written points, no leftover databases).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from django.db import transaction

from backups.models import Backup, BackupStatus, Restore, RestoreDrill
from backups.services import backup_start, drill_start, restore_start
from backups.store import store_for
from panel.access import access_for_user
from panel.operations import operation_cancel, wait_for
from provisioning.models import AtlassianInstance, InstanceStatus, Operation, OperationStep
from provisioning.services import instance_upgrade
from tests.support.backup_lab import TableLock as _TableLock
from tests.support.backup_lab import backup1
from tests.support.lab import container_ip, step_text

pytestmark = [pytest.mark.worker, pytest.mark.lab]


def _wait_step(op: Operation, prefix: str, timeout: float = 240) -> None:
    assert wait_for(
        lambda: OperationStep.objects.filter(operation=op, message__startswith=prefix).exists(),
        timeout=timeout,
        interval=0.1,
    ), f"never reached {prefix!r}:\n{step_text(op)}"


def _cancel(op: Operation, staff) -> None:
    operation_cancel(Operation.objects.get(pk=op.pk), actor=access_for_user(staff))


def _ended(op: Operation, timeout: float = 400) -> Operation:
    assert wait_for(lambda: Operation.objects.get(pk=op.pk).is_terminal, timeout=timeout)
    return Operation.objects.get(pk=op.pk)


def _containers(project: str, *, running_only: bool = False) -> list[str]:
    argv = ["docker", "ps", "--format", "{{.Names}} {{.Image}}"]
    if not running_only:
        argv.insert(2, "-a")
    argv += ["--filter", f"label=com.docker.compose.project={project}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split("\n")[:-1]


def _status(instance: AtlassianInstance) -> dict:
    ip = container_ip(instance.name, "app", "panel-proxy")
    url = f"http://{ip}:8080{instance.context_path}/status"
    with urllib.request.urlopen(url, timeout=10) as response:  # lab address
        return json.loads(response.read())


def _assert_running_and_clean(instance: AtlassianInstance) -> AtlassianInstance:
    instance = AtlassianInstance.objects.select_related("host__backup_host").get(pk=instance.pk)
    assert instance.status == InstanceStatus.RUNNING, instance.status_reason
    running = _containers(instance.name, running_only=True)
    assert any(line.startswith(f"{instance.name}-app-") for line in running), running
    assert _status(instance)["state"] == "RUNNING"
    idir = f"{instance.host.data_root}/instances/{instance.name}"
    left = subprocess.run(
        ["sh", "-c", f"ls {idir}/db.dump {idir}/restore.dump 2>/dev/null"],
        capture_output=True,
        text=True,
    ).stdout
    assert left == "", f"dump files left behind: {left}"
    store = store_for(instance, instance.host)
    stray = backup1(
        "sh",
        "-c",
        f"find {store.push_area}/incoming {store.area}/staging {store.area}/commit "
        "-mindepth 1 -maxdepth 1 2>/dev/null || true",
    )
    assert stray.strip() == "", f"left on the backup host: {stray}"
    return instance


def _databases(instance: AtlassianInstance) -> list[str]:
    out = subprocess.run(
        [
            "docker",
            "compose",
            "-p",
            instance.name,
            "exec",
            "-T",
            "db",
            "psql",
            "-At",
            "-U",
            instance.db_user,
            "-d",
            "postgres",
            "-c",
            "SELECT datname FROM pg_database WHERE datname LIKE '%restore%'",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def test_a_cancelled_in_place_restore_is_rolled_back_and_the_instance_runs_again(
    backed_up,
    worker,
    pat,
    sam,
):
    instance = backed_up
    point = Backup.objects.filter(instance=instance, status=BackupStatus.SUCCEEDED).first()
    with transaction.atomic():
        op = restore_start(
            actor=access_for_user(pat),
            backup=point,
            mode="in_place",
            confirm_name=instance.name,
        )
    _wait_step(op, f"Stopped the app of {instance.name}")
    _cancel(op, sam)
    op = _ended(op)
    text = step_text(op)
    assert op.status == "cancelled", text
    assert "bringing" in text and "back to its state before the restore" in text, text
    assert "brought back" in op.error and "running again" in op.error
    restore = Restore.objects.get(operation=op)
    assert restore.status == Restore.Status.ROLLED_BACK
    _assert_running_and_clean(instance)
    assert _databases(instance) == []


def test_a_cancelled_cold_backup_starts_the_app_again_and_leaves_no_half_point(
    backed_up,
    worker,
    pat,
):
    instance = backed_up
    lock = _TableLock(instance)
    try:
        with transaction.atomic():
            op = backup_start(actor=access_for_user(pat), instance=instance, mode="cold")
        _wait_step(op, "Cold backup: stopped the app")
        time.sleep(2)  # the dump now waits for the table lock
        assert not Operation.objects.get(pk=op.pk).is_terminal
        _cancel(op, pat)
    finally:
        lock.release()
    op = _ended(op)
    text = step_text(op)
    assert op.status == "cancelled", text
    assert f"Started {instance.name} again" in text, text
    backup = Backup.objects.get(operation=op)
    assert backup.status == BackupStatus.FAILED
    _assert_running_and_clean(instance)


def test_a_cancelled_drill_removes_its_scratch_instance(backed_up, worker, pat, sam, settings):
    instance = backed_up
    with transaction.atomic():
        op = drill_start(actor=access_for_user(pat), instance=instance)
    _wait_step(op, "Started the new database")
    _cancel(op, sam)
    op = _ended(op)
    text = step_text(op)
    assert op.status == "cancelled", text
    drill = RestoreDrill.objects.get(operation__pk=op.pk)
    scratch = drill.scratch_name
    assert f"Removed the scratch instance {scratch}" in text, text
    assert drill.status == RestoreDrill.Status.FAILED and drill.cleaned_up
    assert _containers(scratch) == [], "scratch containers left behind"
    idir = f"{instance.host.data_root}/instances/{scratch}"
    assert subprocess.run(["test", "-e", idir]).returncode != 0, f"{idir} left behind"
    _assert_running_and_clean(instance)


def test_a_cancelled_upgrade_is_undone_by_restoring_its_point_and_names_the_deployed_version(
    backed_up,
    worker,
    pat,
    sam,
):
    instance = backed_up
    # The new version takes a while to answer RUNNING, so the cancel lands while it starts.
    AtlassianInstance.objects.filter(pk=instance.pk).update(
        extra_env={**instance.extra_env, "STANDIN_STARTUP_SECONDS": "15"}
    )
    before = instance.version
    with transaction.atomic():
        op = instance_upgrade(
            actor=access_for_user(pat),
            instance=instance,
            version="9.17.0",
        )
    _wait_step(op, "docker compose up -d")
    _cancel(op, sam)
    op = _ended(op)
    text = step_text(op)
    assert op.status == "cancelled", text
    # The new version may have upgraded the database already: the previous one comes back
    # on the point taken before the upgrade, never on that database.
    point = Backup.objects.get(pk=op.params["pre_upgrade_point"])
    assert point.kind == "pre_upgrade" and point.mode == "cold" and point.version == before
    assert op.error.startswith("Cancelled on request; Rolled back by restoring point "), op.error
    named = point.point_name + (f" ({point.label})" if point.label else "")
    assert f"{named} ({point.taken_at:%Y-%m-%d %H:%M:%S} UTC)" in op.error
    assert "Stopped the new version" in text and "Rolling back" not in text
    restore = Restore.objects.get(operation=op)
    assert restore.status == Restore.Status.SUCCEEDED and restore.backup == point
    instance = _assert_running_and_clean(instance)
    assert instance.version == before and _databases(instance) == []
    compose = open(f"{instance.host.data_root}/instances/{instance.name}/compose.yml").read()
    assert f":{before}" in compose and ":9.17.0" not in compose
    assert all(":9.17.0" not in line for line in _containers(instance.name))
