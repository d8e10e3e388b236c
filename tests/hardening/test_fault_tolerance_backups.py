"""A worker killed in the middle of a backup and of a restore (real worker, lab hosts):
the operation ends with a reason, the instance is running or clearly failed (never silently
half-restored), every earlier point stays intact and restorable, and a second run succeeds."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import transaction

from backups.models import Backup, BackupStatus
from backups.services import backup_start, restore_start
from panel import operations
from panel.access import access_for_user
from panel.operations import wait_for
from provisioning.models import AtlassianInstance, InstanceStatus, Operation, OperationStep
from tests.backups.lab.conftest import _enrol, backup1, create_instance
from tests.provisioning.conftest import run_operation, step_text

pytestmark = [pytest.mark.worker, pytest.mark.lab]


@pytest.fixture
def backed_up(worker, pat, acme, lab_state, monkeypatch, settings) -> Iterator[AtlassianInstance]:
    """A running lab instance with one good backup point, set up inline (not by the worker)."""
    settings.PANEL_OPERATION_HEARTBEAT_TIMEOUT = timedelta(seconds=worker.heartbeat_timeout)
    specs = {h["name"]: h for h in lab_state["hosts"]}
    name = f"k{secrets.token_hex(3)}-jira"
    with monkeypatch.context() as mp:
        mp.setattr("panel.operations.operation_enqueue", lambda op_id: None)
        mp.setattr("provisioning.operations.PUBLISH_HOOKS", [])
        actor = access_for_user(pat)
        backup_host = _enrol(actor, specs["backup1"])
        app_host = _enrol(actor, specs["app1"], backup_host=backup_host)
        instance = create_instance(actor, acme, app_host, name)
        first = run_operation(backup_start(actor=actor, instance=instance))
        assert first.status == "succeeded", step_text(first)
    try:
        yield instance
    finally:
        subprocess.run(
            ["docker", "compose", "-p", name, "down", "-v", "-t", "2"],
            capture_output=True,
            timeout=180,
        )
        subprocess.run(["rm", "-rf", f"{app_host.data_root}/instances/{name}"])
        backup1("rm", "-rf", f"{backup_host.data_root}/hosts/{app_host.name}/{name}", check=False)


class _TableLock:
    """Holds an exclusive lock on a table of the instance's database, so that a pg_dump taken
    meanwhile waits: the operation is reliably in the middle of its work when the worker dies."""

    def __init__(self, instance: AtlassianInstance) -> None:
        self.instance = instance
        self.proc = subprocess.Popen(
            [
                "docker",
                "compose",
                "-p",
                instance.name,
                "exec",
                "-T",
                "db",
                "psql",
                "-U",
                instance.db_user,
                "-d",
                instance.db_name,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "BEGIN; LOCK TABLE standin_item IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def release(self) -> None:
        # Killing the local client leaves psql running in the container: end its session.
        i = self.instance
        subprocess.run(
            [
                "docker",
                "compose",
                "-p",
                i.name,
                "exec",
                "-T",
                "db",
                "psql",
                "-U",
                i.db_user,
                "-d",
                i.db_name,
                "-c",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid();",
            ],
            capture_output=True,
            timeout=60,
        )
        self.proc.kill()
        self.proc.wait(timeout=30)


def _kill_when(worker, op: Operation, message_prefix: str) -> None:
    assert wait_for(
        lambda: OperationStep.objects.filter(
            operation=op, message__startswith=message_prefix
        ).exists(),
        timeout=180,
        interval=0.1,
    ), f"never reached {message_prefix!r}:\n{step_text(op)}"
    import time

    time.sleep(2)  # the dump is now waiting for the lock
    assert not Operation.objects.get(id=op.id).is_terminal, step_text(op)
    worker.kill()
    assert wait_for(lambda: bool(operations.operations_reap()), timeout=30, interval=1)
    op.refresh_from_db()
    assert op.status == "failed" and "stopped responding" in op.error
    worker.start()


def _good_points(instance) -> list[str]:
    return sorted(
        Backup.objects.filter(instance=instance, status=BackupStatus.SUCCEEDED).values_list(
            "point_name", flat=True
        )
    )


def test_a_worker_killed_mid_backup_keeps_every_earlier_point_and_a_retry_succeeds(
    backed_up, worker, pat
):
    instance = backed_up
    before = _good_points(instance)
    assert len(before) == 1
    lock = _TableLock(instance)
    try:
        with transaction.atomic():
            op = backup_start(actor=access_for_user(pat), instance=instance)
        _kill_when(worker, op, "Connected to lab-backup1")
    finally:
        lock.release()
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING  # a hot backup never stopped it
    assert _good_points(instance) == before
    # the point on the backup host still verifies, and the next backup goes through
    with transaction.atomic():
        again = backup_start(actor=access_for_user(pat), instance=instance)
    assert wait_for(lambda: Operation.objects.get(id=again.id).is_terminal, timeout=300)
    again.refresh_from_db()
    assert again.status == "succeeded", again.error + step_text(again)
    assert set(before) < set(_good_points(instance))


def test_a_worker_killed_mid_restore_leaves_the_instance_clearly_failed_then_restorable(
    backed_up, worker, sam
):
    instance = backed_up
    point = Backup.objects.get(instance=instance, status=BackupStatus.SUCCEEDED)
    actor = access_for_user(sam)
    lock = _TableLock(instance)
    try:
        with transaction.atomic():
            op = restore_start(
                actor=actor, backup=point, mode="in_place", confirm_name=instance.name
            )
        _kill_when(worker, op, "Taking a safety backup")
    finally:
        lock.release()
    instance.refresh_from_db()
    # never silently half-restored: it is running untouched, or says it failed and why
    assert instance.status in (InstanceStatus.RUNNING, InstanceStatus.FAILED)
    if instance.status == InstanceStatus.FAILED:
        assert "stopped responding" in instance.status_reason
    point.refresh_from_db()
    assert point.status == BackupStatus.SUCCEEDED  # the chosen point is intact
    with transaction.atomic():
        again = restore_start(
            actor=actor, backup=point, mode="in_place", confirm_name=instance.name
        )
    assert wait_for(lambda: Operation.objects.get(id=again.id).is_terminal, timeout=400)
    again.refresh_from_db()
    assert again.status == "succeeded", again.error + step_text(again)
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING
