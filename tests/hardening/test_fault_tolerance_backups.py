"""A worker killed in the middle of a backup and of a restore (real worker, lab hosts):
the operation ends with a reason, the instance is running or clearly failed (never silently
half-restored), every earlier point stays intact and restorable, and a second run succeeds."""

from __future__ import annotations

import pytest
from django.db import transaction

from backups.models import Backup, BackupStatus
from backups.services import backup_start, restore_start
from panel import operations
from panel.access import access_for_user
from panel.operations import wait_for
from provisioning.models import InstanceStatus, Operation, OperationStep
from tests.support.backup_lab import TableLock as _TableLock
from tests.support.lab import step_text

pytestmark = [pytest.mark.worker, pytest.mark.lab]


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
