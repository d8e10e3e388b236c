"""Operations made of parts (an evacuation's per-instance restores): the parent runs its
children by the normal runner, in order, at most ``parallel`` at once; a cancel of the parent
cancels the parts not started; the sweeper leaves a pending part alone while its parent is
active and enqueues it once the parent ended without running it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from panel import operations
from panel.operations import (
    OperationCancelled,
    OperationContext,
    operation_children_run,
    operations_requeue_pending,
)
from panel.registry import registry
from provisioning.models import Operation


def _running_parent() -> tuple[Operation, OperationContext]:
    """A parent as a worker's claim leaves it, and its handler's context."""
    parent = Operation.objects.create(
        kind="diagnostic",
        status="running",
        fence_token="lease-1",
        heartbeat_at=timezone.now(),
        started_at=timezone.now(),
        lock_key="parent:1",
    )
    return parent, OperationContext(parent)


def _children(parent: Operation, count: int, **params) -> list[Operation]:
    children = []
    for i in range(count):
        children.append(
            Operation.objects.create(
                kind="diagnostic",
                parent=parent,
                params={"part": i, **params},
                lock_key=f"part:{i}",
                created_at=timezone.now() + timedelta(microseconds=i),
            )
        )
    return children


class _Recorder:
    """A handler for the parts that notes the order they start in and how many run at once."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.now = 0
        self.most = 0

    def __call__(self, ctx: OperationContext) -> dict:
        with self.lock:
            self.started.append(ctx.operation.params["part"])
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.seconds)
        finally:
            with self.lock:
                self.now -= 1
        return {"part": ctx.operation.params["part"]}


@pytest.fixture
def handler(monkeypatch):
    recorder = _Recorder()
    kinds = registry["operation_kinds"]
    monkeypatch.setitem(kinds, "diagnostic", operations.OperationKindSpec("diagnostic", recorder))
    return recorder


@pytest.mark.django_db(transaction=True)
def test_the_parts_run_in_their_order_at_most_parallel_at_once(handler):
    parent, ctx = _running_parent()
    children = _children(parent, 5)
    ended = []
    operation_children_run(ctx, children, parallel=2, on_end=ended.append)
    # In order, two by two (the two started together race for the first step).
    started = handler.started
    assert [sorted(started[:2]), sorted(started[2:4]), started[4:]] == [[0, 1], [2, 3], [4]]
    assert handler.most == 2
    assert sorted(c.params["part"] for c in ended) == [0, 1, 2, 3, 4]
    assert all(c.status == "succeeded" for c in ended)
    assert [c.result for c in Operation.objects.filter(parent=parent).order_by("created_at")] == [
        {"part": i} for i in range(5)
    ]


@pytest.mark.django_db(transaction=True)
def test_one_at_a_time_means_one_at_a_time(handler):
    parent, ctx = _running_parent()
    operation_children_run(ctx, _children(parent, 3), parallel=1, on_end=lambda c: None)
    assert handler.most == 1 and handler.started == [0, 1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_cancel_of_the_parent_cancels_the_parts_not_started_and_stops_the_running_one(
    monkeypatch,
):
    parent, ctx = _running_parent()

    def first_part_asks_to_cancel(part_ctx: OperationContext) -> dict:
        Operation.objects.filter(pk=parent.pk).update(cancel_requested=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            part_ctx.check_cancelled()  # the parent passes the cancel on to its running part
            time.sleep(0.1)
        return {"not": "cancelled"}

    kinds = registry["operation_kinds"]
    monkeypatch.setitem(
        kinds, "diagnostic", operations.OperationKindSpec("diagnostic", first_part_asks_to_cancel)
    )
    children = _children(parent, 3)
    ended = []
    with pytest.raises(OperationCancelled):
        operation_children_run(ctx, children, parallel=1, on_end=ended.append)
    first, second, third = Operation.objects.filter(parent=parent).order_by("created_at")
    assert first.status == "cancelled" and first.started_at is not None
    for part in (second, third):
        assert part.status == "cancelled" and part.started_at is None
        assert part.error == "Cancelled before it started."
    # The parent waited for its running part: it never ends with a part running.
    assert [c.pk for c in ended] == [first.pk]


@pytest.mark.django_db
def test_the_sweeper_leaves_a_part_of_an_active_parent_alone_then_enqueues_it(no_broker):
    now = timezone.now()
    long_ago = now - timedelta(hours=1)
    parent = Operation.objects.create(kind="diagnostic", status="running", lock_key="parent:1")
    part = Operation.objects.create(
        kind="diagnostic", parent=parent, created_at=long_ago, lock_key="part:0"
    )
    lost = Operation.objects.create(
        kind="diagnostic", parent=parent, created_at=long_ago, enqueued_at=long_ago
    )
    alone = Operation.objects.create(kind="diagnostic", created_at=long_ago)
    assert operations_requeue_pending(now) == [str(alone.pk)]
    Operation.objects.filter(pk=parent.pk).update(status="failed", lock_key=None)
    requeued = operations_requeue_pending(now)
    assert set(requeued) == {str(part.pk), str(lost.pk), str(alone.pk)}
