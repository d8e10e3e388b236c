"""The operation runner: locking, idempotency, claiming, terminal states, reaping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from panel import operations
from panel.access import access_for_user
from panel.operations import OperationConflict, operation_execute, operation_start
from provisioning.models import InstanceStatus, Operation, OperationStep
from tenants.models import AuditEvent


def start(actor_user, instance=None, lock="t:1", **params):
    return operation_start(
        kind="diagnostic",
        actor=access_for_user(actor_user),
        instance=instance,
        lock_key=lock,
        params={"sleep": 0, **params},
    )


@pytest.mark.django_db
def test_it_refuses_a_second_operation_on_the_same_target_naming_the_running_one(alice):
    first = start(alice)
    with pytest.raises(OperationConflict) as err:
        start(alice)
    assert str(first.id) in str(err.value)
    assert err.value.running == first
    # another target is fine
    assert start(alice, lock="t:2").status == "pending"


@pytest.mark.django_db
def test_it_allows_a_new_operation_once_the_previous_one_ended(alice):
    first = start(alice)
    assert operation_execute(first.id) == "succeeded"
    assert start(alice).status == "pending"


@pytest.mark.django_db
def test_it_returns_the_same_operation_for_a_repeated_idempotency_key(alice):
    a = operation_start(
        kind="diagnostic", actor=access_for_user(alice), lock_key="x", idempotency_key="key-1"
    )
    b = operation_start(
        kind="diagnostic", actor=access_for_user(alice), lock_key="x", idempotency_key="key-1"
    )
    assert a.id == b.id
    assert Operation.objects.count() == 1


@pytest.mark.django_db
def test_it_runs_steps_and_ends_succeeded_with_full_progress(alice):
    op = start(alice, steps=3)
    assert operation_execute(op.id) == "succeeded"
    op.refresh_from_db()
    assert op.status == "succeeded" and op.result == {"steps": 3}
    assert op.progress_percent == 100 and op.finished_at and op.started_at
    assert [s.message for s in op.steps.all()] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert op.steps.first().command == "echo 1" and op.steps.first().exit_code == 0


@pytest.mark.django_db
def test_a_duplicate_delivery_does_nothing(alice):
    op = start(alice, steps=1)
    assert operation_execute(op.id) == "succeeded"
    assert operation_execute(op.id) == "skipped"
    op.refresh_from_db()
    assert op.attempts == 1 and op.steps.count() == 1


@pytest.mark.django_db
def test_a_failure_ends_failed_with_the_handlers_reason(alice):
    op = start(alice, steps=1, fail="the disk is full on app-one")
    assert operation_execute(op.id) == "failed"
    op.refresh_from_db()
    assert op.error == "the disk is full on app-one"
    assert op.steps.last().level == "error"


@pytest.mark.django_db
def test_a_crash_ends_failed_with_a_readable_reason(alice):
    op = start(alice, steps=1, crash=True)
    assert operation_execute(op.id) == "failed"
    op.refresh_from_db()
    assert op.error == "Unexpected error (RuntimeError): boom"
    assert "Traceback" in op.steps.get(message="Internal error").output


@pytest.mark.django_db
def test_secrets_never_reach_steps_or_errors(alice, acme_jira):
    pw = acme_jira.db_password
    op = start(
        alice,
        instance=acme_jira,
        steps=1,
        output=f"connecting with password={pw} and -----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"
        "-----END OPENSSH PRIVATE KEY-----",
        fail=f"psql: auth failed for {pw}",
    )
    operation_execute(op.id)
    op.refresh_from_db()
    texts = [s.output + s.message for s in op.steps.all()] + [op.error]
    assert not any(pw in t for t in texts)
    assert "[redacted]" in op.error
    assert all("PRIVATE KEY-----\nabc" not in t for t in texts)


@pytest.mark.django_db
def test_cancelling_a_pending_operation_ends_it_and_frees_the_target(alice, pat):
    op = start(alice)
    # an operation of no tenant: a platform admin's to cancel
    operations.operation_cancel(op, actor=access_for_user(pat))
    op.refresh_from_db()
    assert op.status == "cancelled"
    assert operation_execute(op.id) == "skipped"
    assert start(alice).status == "pending"
    assert AuditEvent.objects.filter(action="operation.cancel").exists()


@pytest.mark.django_db
def test_cancelling_a_running_operation_stops_it_at_the_next_step(alice):
    op = start(alice, steps=3)
    Operation.objects.filter(id=op.id).update(cancel_requested=True)
    # a running operation sees the flag at its next check (claim refuses a flagged pending one,
    # so flip it to running first as if a worker had just claimed it)
    Operation.objects.filter(id=op.id).update(status="pending", cancel_requested=False)
    original = operations.OperationContext.check_cancelled

    def flagged(self):
        Operation.objects.filter(id=self.operation.id).update(cancel_requested=True)
        return original(self)

    operations.OperationContext.check_cancelled = flagged
    try:
        assert operation_execute(op.id) == "cancelled"
    finally:
        operations.OperationContext.check_cancelled = original
    assert OperationStep.objects.filter(operation=op, message__startswith="step").count() == 0


@pytest.mark.django_db
def test_the_reaper_ends_operations_whose_worker_died_and_marks_the_instance_failed(
    alice, acme_jira
):
    from provisioning.services import instance_lock_key

    acme_jira.status = InstanceStatus.PROVISIONING
    acme_jira.save()
    op = operation_start(
        kind="instance.create",
        actor=access_for_user(alice),
        instance=acme_jira,
        lock_key=instance_lock_key(acme_jira),
    )
    stale = timezone.now() - timedelta(minutes=10)
    Operation.objects.filter(id=op.id).update(
        status="running", started_at=stale, heartbeat_at=stale
    )
    assert operations.operations_reap() == [str(op.id)]
    op.refresh_from_db()
    acme_jira.refresh_from_db()
    assert op.status == "failed" and "stopped responding" in op.error
    assert acme_jira.status == InstanceStatus.FAILED
    # the target is free again
    again = operation_start(
        kind="instance.create",
        actor=access_for_user(alice),
        instance=acme_jira,
        lock_key=instance_lock_key(acme_jira),
    )
    assert again.status == "pending"


@pytest.mark.django_db
def test_the_reaper_leaves_operations_with_a_fresh_heartbeat_alone(alice):
    op = start(alice)
    Operation.objects.filter(id=op.id).update(status="running", heartbeat_at=timezone.now())
    assert operations.operations_reap() == []


@pytest.mark.django_db
def test_the_sweeper_requeues_pending_operations_whose_message_was_lost(alice, monkeypatch):
    sent = []
    monkeypatch.setattr("provisioning.tasks.operation_run.delay", lambda i: sent.append(i))
    old = start(alice, lock="a")
    fresh = start(alice, lock="b")
    long_ago = timezone.now() - timedelta(hours=1)
    Operation.objects.filter(id=old.id).update(created_at=long_ago, enqueued_at=long_ago)
    assert operations.operations_requeue_pending() == [str(old.id)]
    assert sent == [str(old.id)]
    assert fresh.id not in sent
