"""Cancelling and fencing in the runner (in process): compensation cannot be cancelled, a
reaped handler is fenced everywhere, the heartbeat survives database errors, and only staff
may cancel restores and drills (UI and API)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from backups.models import BackupOperationKind
from panel import operations
from panel.access import access_for_user
from panel.operations import (
    OperationCancelled,
    OperationContext,
    OperationFenced,
    operation_cancel_allowed,
)
from panel.registry import registry
from provisioning.models import Operation, OperationKind

pytestmark = pytest.mark.django_db


def _claimed(**fields) -> tuple[Operation, OperationContext]:
    """A running operation as a worker's claim leaves it, and its handler's context."""
    op = Operation.objects.create(
        kind="diagnostic",
        status="running",
        fence_token="lease-1",
        heartbeat_at=timezone.now(),
        started_at=timezone.now(),
        **fields,
    )
    return op, OperationContext(op)


def test_a_cancel_is_held_back_inside_an_uncancellable_block_and_honoured_after_it():
    op, ctx = _claimed()
    Operation.objects.filter(pk=op.pk).update(cancel_requested=True)
    with ctx.uncancellable():
        ctx.check_cancelled()  # compensation goes on
        with ctx.uncancellable():
            ctx.check_cancelled()
        ctx.check_cancelled()  # still inside the outer block
    with pytest.raises(OperationCancelled):
        ctx.check_cancelled()


def test_a_reaped_handler_is_fenced_even_inside_an_uncancellable_block(settings):
    op, ctx = _claimed()
    Operation.objects.filter(pk=op.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert operations.operations_reap() == [str(op.pk)]
    op.refresh_from_db()
    assert op.status == "failed" and op.fence_token == ""
    with ctx.uncancellable(), pytest.raises(OperationFenced):
        ctx.check_cancelled()
    with pytest.raises(OperationFenced):
        ctx.progress(3)
    with pytest.raises(OperationFenced), ctx.owned():
        pytest.fail("the block must not run once the lease is gone")
    op.refresh_from_db()
    assert op.progress_current == 0 and op.status == "failed"


def test_a_new_claim_fences_the_previous_lease():
    op, ctx = _claimed()
    Operation.objects.filter(pk=op.pk).update(fence_token="lease-2")
    with pytest.raises(OperationFenced):
        ctx.check_owner()
    fresh = OperationContext(Operation.objects.get(pk=op.pk))
    fresh.check_cancelled()
    fresh.progress(1, 2)
    assert Operation.objects.get(pk=op.pk).progress_total == 2


def test_the_runner_does_not_overwrite_the_reapers_outcome(alice, monkeypatch):
    """A handler that is reaped while it runs ends 'reaped' and leaves the row failed."""

    op = operations.operation_start(
        kind="diagnostic", actor=access_for_user(alice), params={"steps": 3, "sleep": 0}
    )

    def handler(ctx: OperationContext) -> dict:
        Operation.objects.filter(pk=ctx.operation.pk).update(
            heartbeat_at=timezone.now() - timedelta(hours=1)
        )
        operations.operations_reap()
        ctx.check_cancelled()  # the next command of the old handler
        raise AssertionError("a fenced handler must not get here")

    kinds = registry["operation_kinds"]
    spec = kinds["diagnostic"]
    monkeypatch.setitem(kinds, "diagnostic", operations.OperationKindSpec("diagnostic", handler))
    try:
        assert operations.operation_execute(op.id) == "reaped"
    finally:
        kinds["diagnostic"] = spec
    op.refresh_from_db()
    assert op.status == "failed" and "stopped responding" in op.error


def test_the_heartbeat_survives_database_errors_and_stops_when_the_lease_is_gone():
    op, ctx = _claimed()
    answers = [OperationalError("server closed the connection"), OperationalError("again"), True]
    calls: list[str] = []

    class Flaky(operations._Heartbeat):
        def beat(self) -> bool:
            answer = answers.pop(0) if answers else False
            calls.append(repr(answer))
            if isinstance(answer, Exception):
                raise answer
            return answer

    beat = Flaky(ctx, interval=0.05)
    beat.start()
    beat.join(timeout=10)
    assert not beat.is_alive()
    # two failures, one good beat, then the update found no row: the context is marked lost
    assert len(calls) == 4, calls
    assert ctx.lost.is_set()
    with pytest.raises(OperationFenced):
        ctx.check_cancelled()


def test_a_stopped_heartbeat_does_not_mark_the_context_lost():
    op, ctx = _claimed()
    beat = operations._Heartbeat(ctx, interval=0.05)
    beat.stopped.set()
    beat.start()
    beat.join(timeout=5)
    assert not ctx.lost.is_set()
    assert isinstance(beat, threading.Thread)


# --- who may cancel ---------------------------------------------------------------------------


@pytest.fixture
def restore_op(acme_jira) -> Operation:
    return Operation.objects.create(
        kind=BackupOperationKind.BACKUP_RESTORE,
        tenant=acme_jira.tenant,
        instance=acme_jira,
        status="running",
        lock_key=f"instance:{acme_jira.pk}",
    )


def test_only_staff_may_cancel_restores_and_drills_by_rule(alice, sam, pat, acme_jira):
    for kind in (BackupOperationKind.BACKUP_RESTORE, BackupOperationKind.BACKUP_DRILL):
        op = Operation(kind=kind, tenant=acme_jira.tenant, instance=acme_jira)
        assert not operation_cancel_allowed(access_for_user(alice), op)
        assert operation_cancel_allowed(access_for_user(sam), op)
        assert operation_cancel_allowed(access_for_user(pat), op)
    other = Operation(kind=OperationKind.INSTANCE_RESTART, tenant=acme_jira.tenant)
    assert operation_cancel_allowed(access_for_user(alice), other)


def test_a_tenant_admin_gets_403_cancelling_a_restore_through_the_api(
    restore_op, alice, sam, charlie
):
    def api(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    response = api(alice).post(f"/api/operations/{restore_op.pk}/cancel/")
    assert response.status_code == 403, response.content
    assert "support staff" in response.json()["detail"]
    restore_op.refresh_from_db()
    assert not restore_op.cancel_requested
    # another tenant's admin does not even see it
    assert api(charlie).post(f"/api/operations/{restore_op.pk}/cancel/").status_code == 404
    response = api(sam).post(f"/api/operations/{restore_op.pk}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"]


def test_a_tenant_admin_gets_403_cancelling_a_restore_in_the_ui(restore_op, alice, sam, charlie):
    def browser(user):
        client = Client()
        client.force_login(user)
        return client

    page = browser(alice).get(reverse("provisioning:operation_detail", args=[restore_op.pk]))
    assert page.status_code == 200 and b'id="operation-cancel"' not in page.content
    url = reverse("provisioning:operation_cancel", args=[restore_op.pk])
    assert browser(alice).post(url).status_code == 403
    assert browser(charlie).post(url).status_code == 404
    restore_op.refresh_from_db()
    assert not restore_op.cancel_requested
    page = browser(sam).get(reverse("provisioning:operation_detail", args=[restore_op.pk]))
    assert b'id="operation-cancel"' in page.content
    browser(sam).post(url)
    restore_op.refresh_from_db()
    assert restore_op.cancel_requested


def test_the_service_refuses_a_tenant_admins_cancel_of_a_drill(acme_jira, alice):
    from django.core.exceptions import PermissionDenied

    op = Operation.objects.create(
        kind=BackupOperationKind.BACKUP_DRILL, tenant=acme_jira.tenant, instance=acme_jira
    )
    with pytest.raises(PermissionDenied):
        operations.operation_cancel(op, actor=access_for_user(alice))
    op.refresh_from_db()
    assert op.status == "pending" and not op.cancel_requested


def test_a_fenced_handler_makes_no_docker_api_call_either():
    """Docker API requests are safe points like SSH commands: nothing is sent once fenced."""
    from types import SimpleNamespace

    import requests

    from provisioning.remote.docker_api import PinnedSSHAdapter

    op, ctx = _claimed()
    Operation.objects.filter(pk=op.pk).update(fence_token="someone-else")
    sent: list = []
    connection = SimpleNamespace(
        ctx=ctx,
        docker_requests=0,
        target=SimpleNamespace(address="127.0.0.11"),
        command_timeout=5,
        label="lab",
        _client_or_raise=lambda: object(),
    )
    adapter = PinnedSSHAdapter(connection)  # type: ignore[arg-type]
    adapter.get_connection = lambda *a, **k: sent.append(a)  # would open a channel
    request = requests.Request("GET", "http+docker://ssh/v1.41/containers/json").prepare()
    with pytest.raises(OperationFenced):
        adapter.send(request)
    assert sent == [] and connection.docker_requests == 0


def test_a_heartbeat_that_cannot_see_its_row_keeps_the_lease():
    """An operation claimed inside an uncommitted transaction (as in-process runs are) is
    invisible to the heartbeat's own connection: that is no lost lease."""
    op, ctx = _claimed()
    beat = operations._Heartbeat(ctx, interval=0.05)
    beat.start()
    time.sleep(0.5)
    beat.stopped.set()
    beat.join(timeout=5)
    assert not ctx.lost.is_set()
    ctx.check_cancelled()  # the handler goes on


@pytest.mark.django_db(transaction=True)
def test_a_real_heartbeat_marks_the_lease_lost_once_the_row_names_another_owner():
    op, ctx = _claimed()
    beat = operations._Heartbeat(ctx, interval=0.05)
    beat.start()
    time.sleep(0.3)
    assert not ctx.lost.is_set() and beat.is_alive()
    Operation.objects.filter(pk=op.pk).update(fence_token="another-worker")
    beat.join(timeout=5)
    assert not beat.is_alive() and ctx.lost.is_set()
