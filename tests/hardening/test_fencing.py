"""Fencing a zombie handler (real worker, real lab hosts): the heartbeat of a running backup is
broken by the database itself, the reaper ends the operation, and the old handler, which is
still running, runs no further remote command and does not overwrite the reaper's outcome."""

from __future__ import annotations

import subprocess
import time

import pytest
from django.db import connection, transaction

from backups.models import Backup, BackupStatus
from backups.services import backup_start
from backups.store import store_for
from panel import operations
from panel.access import access_for_user
from panel.operations import wait_for
from provisioning.models import Operation, OperationStep
from tests.support.backup_lab import TableLock, backup1
from tests.support.lab import step_text

pytestmark = [pytest.mark.worker, pytest.mark.lab]


def _break_heartbeat(op: Operation) -> None:
    """Every heartbeat update of ``op`` now fails with a database error (the heartbeat keeps
    retrying); the reaper's update, which does not touch ``heartbeat_at``, still works."""
    with connection.cursor() as cur:
        cur.execute(
            f"""
            CREATE OR REPLACE FUNCTION panel_test_break_heartbeat() RETURNS trigger AS $$
            BEGIN
              IF NEW.id = '{op.pk}'::uuid AND NEW.heartbeat_at IS DISTINCT FROM OLD.heartbeat_at
              THEN RAISE EXCEPTION 'heartbeat broken by the test';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            DROP TRIGGER IF EXISTS panel_test_break_heartbeat ON provisioning_operation;
            CREATE TRIGGER panel_test_break_heartbeat BEFORE UPDATE ON provisioning_operation
              FOR EACH ROW EXECUTE FUNCTION panel_test_break_heartbeat();
            """  # a UUID from the database
        )


def _repair_heartbeat() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "DROP TRIGGER IF EXISTS panel_test_break_heartbeat ON provisioning_operation;"
            "DROP FUNCTION IF EXISTS panel_test_break_heartbeat();"
        )


def test_a_reaped_handler_runs_no_further_remote_command(backed_up, worker, pat):
    instance = backed_up
    lock = TableLock(instance)  # the hot backup's pg_dump waits for it
    try:
        with transaction.atomic():
            op = backup_start(actor=access_for_user(pat), instance=instance, mode="hot")
        assert wait_for(
            lambda: OperationStep.objects.filter(
                operation=op, message__startswith="Backup point"
            ).exists(),
            timeout=120,
            interval=0.1,
        ), step_text(op)
        time.sleep(2)  # pg_dump is now blocked on the table lock
        assert Operation.objects.get(pk=op.pk).status == "running"
        _break_heartbeat(op)
        assert wait_for(lambda: str(op.pk) in operations.operations_reap(), timeout=60, interval=1)
        reaped = Operation.objects.get(pk=op.pk)
        assert reaped.status == "failed" and "stopped responding" in reaped.error
        reaper_step = (
            OperationStep.objects.filter(operation=op, message__startswith="The worker running")
            .order_by("id")
            .last()
        )
        assert reaper_step is not None
    finally:
        lock.release()
        _repair_heartbeat()
    # The old handler is still alive: its dump finishes now. It must notice it lost the lease.
    assert wait_for(
        lambda: OperationStep.objects.filter(
            operation=op, message__startswith="This worker no longer owns the operation"
        ).exists(),
        timeout=120,
        interval=0.5,
    ), step_text(op)
    later = OperationStep.objects.filter(operation=op, id__gt=reaper_step.id).exclude(command="")
    commands = [s.command for s in later]
    # At most the pg_dump that was already running when the reaper struck; nothing after it
    # (no "stop db", no rsync push, no "rm -f db.dump").
    assert len(commands) <= 1 and all("pg_dump" in c for c in commands), commands
    final = Operation.objects.get(pk=op.pk)
    assert final.status == "failed" and final.error == reaped.error
    assert final.fence_token == ""
    assert Backup.objects.get(operation=op).status == BackupStatus.FAILED
    # Nothing was pushed by the zombie, and the dump it left is evidence it stopped right after
    # the command in flight (the clean-up command was fenced too).
    store = store_for(instance, instance.host)
    pushed = backup1(
        "sh", "-c", f"find {store.push_area}/incoming -mindepth 1 -maxdepth 1 2>/dev/null || true"
    )
    assert pushed.strip() == "", pushed
    dump = f"{instance.host.data_root}/instances/{instance.name}/db.dump"
    assert subprocess.run(["test", "-e", dump]).returncode == 0
    subprocess.run(["rm", "-f", dump], check=True)
