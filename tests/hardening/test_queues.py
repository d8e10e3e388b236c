"""Worker starvation (issue 11 item 10): long operations have their own queue and worker pool,
so the reaper and the other housekeeping tasks run on time even when every operation slot is
held by a long backup or upgrade. Through the real Celery workers and the real Redis."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from panel.access import access_for_user
from panel.celery import app
from panel.operations import operation_cancel, operation_start, wait_for
from panel.registry import beat_schedule
from provisioning.models import Operation
from provisioning.tasks import operations_reap


def _queue_of(task_name: str) -> str:
    route = app.amqp.router.route({}, task_name)
    return route["queue"].name


def test_operations_go_to_their_own_queue_and_everything_else_to_housekeeping():
    assert _queue_of("provisioning.tasks.operation_run") == settings.PANEL_CELERY_QUEUE_OPERATIONS
    periodic = {entry["task"] for entry in beat_schedule().values()}
    assert "provisioning.tasks.operations_reap" in periodic
    assert {_queue_of(name) for name in periodic} == {settings.PANEL_CELERY_QUEUE_HOUSEKEEPING}
    for name in ("notifications.tasks.notification_deliver", "provisioning.host_tasks.host_health"):
        assert _queue_of(name) == settings.PANEL_CELERY_QUEUE_HOUSEKEEPING
    # this run's queues are its own (derived from the per-run prefix), not production's
    prefix = os.environ["PANEL_TEST_QUEUE"]
    assert settings.PANEL_CELERY_QUEUE_OPERATIONS == f"{prefix}-operations"
    assert settings.PANEL_CELERY_QUEUE_HOUSEKEEPING == f"{prefix}-housekeeping"


def _status(op: Operation) -> str:
    return Operation.objects.values_list("status", flat=True).get(id=op.id)


@pytest.mark.worker
def test_the_reaper_runs_promptly_while_every_operation_slot_is_busy(worker, alice):
    slots = worker.operation_slots
    blockers = []
    for i in range(slots + 1):
        with transaction.atomic():  # enqueued on commit, like a request
            blockers.append(
                operation_start(
                    kind="diagnostic.block",
                    actor=access_for_user(alice),
                    lock_key=f"starve:{i}",
                    params={"seconds": 120},
                )
            )
    try:
        # every operation slot is taken and one more operation waits for a slot
        assert wait_for(
            lambda: [_status(op) for op in blockers].count("running") == slots,
            timeout=30,
            interval=0.2,
        ), [_status(op) for op in blockers]
        time.sleep(1)
        assert sorted(_status(op) for op in blockers) == ["pending"] + ["running"] * slots

        # an operation whose worker died an hour ago, which only the reaper ends
        zombie = Operation.objects.create(
            kind="diagnostic",
            status="running",
            started_at=timezone.now() - timedelta(hours=1),
            heartbeat_at=timezone.now() - timedelta(hours=1),
            lock_key="starve:zombie",
        )
        sent = time.monotonic()
        operations_reap.delay()  # as beat sends it: to the housekeeping queue
        assert wait_for(lambda: _status(zombie) == "failed", timeout=20, interval=0.2), (
            "the reaper did not run while the operation slots were busy"
        )
        took = time.monotonic() - sent
        assert took < 10, f"the reaper ran only after {took:.1f} s"
        zombie.refresh_from_db()
        assert "stopped responding" in zombie.error
        # ... and it did not wait for an operation to end: they all still hold their slots
        assert sorted(_status(op) for op in blockers) == ["pending"] + ["running"] * slots
    finally:
        for op in blockers:
            operation_cancel(op, actor=None)
        assert wait_for(
            lambda: all(Operation.objects.get(id=op.id).is_terminal for op in blockers),
            timeout=60,
        )


def test_production_compose_runs_one_worker_pool_per_queue():
    import yaml

    compose = yaml.safe_load((Path(settings.BASE_DIR) / "docker-compose.yml").read_text())
    services = compose["services"]

    def queues(service: str) -> str:
        command = services[service]["command"]
        return command[command.index("-Q") + 1]

    # production's queue names are panel.settings' defaults (the test settings rename them)
    assert queues("worker") == "operations"
    assert queues("worker-housekeeping") == "housekeeping"
    assert services["worker"]["stop_grace_period"]
