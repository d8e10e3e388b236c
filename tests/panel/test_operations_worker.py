"""The operation lifecycle through a real Celery worker, real Redis and real PostgreSQL."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from panel import operations
from panel.access import access_for_user
from panel.operations import operation_start, wait_for
from provisioning.models import Operation, OperationStep
from provisioning.tasks import operation_run

pytestmark = pytest.mark.worker


def _status(op) -> str:
    return Operation.objects.values_list("status", flat=True).get(id=op.id)


def _start(user, **params):
    with transaction.atomic():  # enqueued on commit, like a request
        return operation_start(
            kind="diagnostic", actor=access_for_user(user), lock_key="diag:1", params=params
        )


def test_enqueue_claim_live_steps_and_success(worker, alice):
    op = _start(alice, steps=6, sleep=0.7)
    seen_while_running = wait_for(
        lambda: (
            _status(op) == "running" and OperationStep.objects.filter(operation=op).count() >= 2
        ),
        timeout=30,
        interval=0.1,
    )
    assert seen_while_running, "steps were not visible while the operation ran"
    partial = OperationStep.objects.filter(operation=op).count()
    assert partial < 6
    assert wait_for(lambda: _status(op) == "succeeded", timeout=30)
    op.refresh_from_db()
    assert op.steps.count() == 6 and op.progress_percent == 100 and op.attempts == 1


def test_a_duplicate_delivery_is_ignored_by_the_worker(worker, alice):
    op = _start(alice, steps=2, sleep=0.3)
    operation_run.delay(str(op.id))  # the broker delivers the same operation twice
    assert wait_for(lambda: _status(op) == "succeeded", timeout=30)
    time.sleep(1.5)  # give the duplicate time to be processed
    op.refresh_from_db()
    assert op.attempts == 1
    assert op.steps.filter(message="step 1 of 2").count() == 1


def test_a_step_logged_inside_a_rolled_back_transaction_survives(worker, alice):
    op = _start(alice, steps=1, sleep=0, fail_inside_transaction=True)
    assert wait_for(lambda: _status(op) == "failed", timeout=30)
    op.refresh_from_db()
    assert op.error == "failed inside a transaction"
    assert op.steps.filter(message="logged inside a transaction that rolls back").exists()


def test_a_killed_worker_is_reaped_and_the_target_freed(worker, alice, settings):
    from datetime import timedelta

    settings.PANEL_OPERATION_HEARTBEAT_TIMEOUT = timedelta(seconds=worker.heartbeat_timeout)
    op = _start(alice, steps=60, sleep=0.5)
    assert wait_for(
        lambda: OperationStep.objects.filter(operation=op).count() >= 1, timeout=30, interval=0.1
    )
    worker.kill()
    assert _status(op) == "running"
    # the killed worker's heartbeat stops; after the deadline the reaper ends the operation
    with pytest.raises(operations.OperationConflict):
        _start(alice)
    deadline_passed = wait_for(lambda: bool(operations.operations_reap()), timeout=30, interval=1)
    assert deadline_passed
    op.refresh_from_db()
    assert op.status == "failed" and "stopped responding" in op.error
    worker.start()
    again = _start(alice, steps=1, sleep=0)
    assert wait_for(lambda: _status(again) == "succeeded", timeout=30)
