"""Crashes and lost messages: a killed worker, a restarted broker, a host that vanishes
mid-command, and tasks delivered twice. Real worker, real Redis, real lab hosts."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from panel import operations
from panel.access import access_for_user
from panel.operations import operation_execute, operation_start, wait_for
from panel.registry import beat_schedule
from provisioning.hosts import host_health_check, host_provision
from provisioning.models import AtlassianInstance, Host, InstanceStatus, Operation, OperationStep
from provisioning.services import instance_create, instance_retry
from tests.support.worker import Worker

pytestmark = [pytest.mark.worker]


def _status(op) -> str:
    return Operation.objects.values_list("status", flat=True).get(id=op.id)


def _run_somewhere(op) -> Operation:
    """Run an operation here unless the worker already claimed it; wait until it ends."""
    operation_execute(op.id)
    assert wait_for(lambda: Operation.objects.get(id=op.id).is_terminal, timeout=300)
    return Operation.objects.get(id=op.id)


@pytest.fixture
def ready_host(worker, enrol_lab_host, pat) -> Host:
    host = enrol_lab_host("app1")
    with transaction.atomic():
        op = host_provision(actor=access_for_user(pat), host=host)
    op = _run_somewhere(op)
    assert op.status == "succeeded", op.error
    host.refresh_from_db()
    return host


@pytest.mark.lab
def test_a_worker_killed_mid_rollout_leaves_the_instance_failed_and_a_retry_succeeds(
    worker, ready_host, alice, acme, settings
):
    settings.PANEL_OPERATION_HEARTBEAT_TIMEOUT = timedelta(seconds=worker.heartbeat_timeout)
    name = f"ft{int(time.time()) % 100000}-jira"
    with transaction.atomic():
        op = instance_create(
            actor=access_for_user(alice),
            tenant=acme,
            name=name,
            product="jira-software",
            version="9.12.0",
            hostname=f"{name}.acme.example",
            host=ready_host,
            heap_min_mb=512,
            heap_max_mb=1024,
            extra_env={"STANDIN_STARTUP_SECONDS": "2"},
        )
    instance = AtlassianInstance.objects.get(pk=op.instance_id)
    try:
        # kill the worker once the new compose project is being started
        assert wait_for(
            lambda: OperationStep.objects.filter(
                operation=op, message__startswith="Uploaded the new compose"
            ).exists(),
            timeout=120,
            interval=0.1,
        ), "the rollout never got going"
        worker.kill()
        assert _status(op) == "running"
        assert wait_for(lambda: bool(operations.operations_reap()), timeout=30, interval=1)
        op.refresh_from_db()
        instance.refresh_from_db()
        assert op.status == "failed" and "stopped responding" in op.error
        assert instance.status == InstanceStatus.FAILED  # clearly failed, not "provisioning"
        worker.start()
        with transaction.atomic():
            retry = instance_retry(actor=access_for_user(alice), instance=instance)
        assert wait_for(lambda: Operation.objects.get(id=retry.id).is_terminal, timeout=240)
        retry.refresh_from_db()
        assert retry.status == "succeeded", retry.error
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.RUNNING and instance.health == "healthy"
    finally:
        subprocess.run(["docker", "compose", "-p", name, "down", "-t", "2"], capture_output=True)
        subprocess.run(["rm", "-rf", f"{ready_host.data_root}/instances/{name}"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Redis:
    """A Redis server of this test's own (real redis-server, no persistence)."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for(
            lambda: (
                subprocess.run(
                    ["redis-cli", "-p", str(self.port), "ping"], capture_output=True
                ).returncode
                == 0
            ),
            timeout=10,
            interval=0.1,
        )

    def restart(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.start()

    def queued(self, queue: str) -> int:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), "llen", queue], capture_output=True, text=True
        ).stdout.strip()
        return int(out or 0)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_broker_restart_loses_no_operation_and_runs_none_twice(
    celery_worker_proc, alice, tmp_path, settings, monkeypatch
):
    from celery import Celery
    from django.db import connection
    from kombu import Connection

    from provisioning.tasks import operation_run

    redis = _Redis(tmp_path)
    redis.start()
    queue = django_settings.CELERY_TASK_DEFAULT_QUEUE
    # This test's operations travel through its own Redis (which it restarts) to its own worker.
    # (An explicit connection: Celery prefers the CELERY_BROKER_URL environment variable.)
    sender = Celery(set_as_current=False)
    connection_ = Connection(redis.url)

    def send(op_id: str) -> None:
        with connection_.clone() as conn:
            sender.send_task(
                "provisioning.tasks.operation_run", args=[op_id], queue=queue, connection=conn
            )

    monkeypatch.setattr(operation_run, "delay", send)
    worker = Worker(
        connection.settings_dict["NAME"],
        Path(django_settings.BASE_DIR) / "test-artifacts" / "worker-broker.log",
        broker_url=redis.url,
    )
    try:
        ops = []
        for i in range(3):
            with transaction.atomic():
                ops.append(
                    operation_start(
                        kind="diagnostic",
                        actor=access_for_user(alice),
                        lock_key=f"broker:{i}",
                        params={"steps": 1},
                    )
                )
        assert redis.queued(queue) == 3
        redis.restart()  # the queued messages are gone
        assert redis.queued(queue) == 0
        worker.start()
        time.sleep(2)
        assert {_status(op) for op in ops} == {"pending"}
        # the sweeper finds pending operations whose message is lost and enqueues them again
        later = timezone.now() + settings.PANEL_OPERATION_REQUEUE_AFTER + timedelta(seconds=1)
        assert set(operations.operations_requeue_pending(now=later)) == {str(o.id) for o in ops}
        assert wait_for(lambda: {_status(op) for op in ops} == {"succeeded"}, timeout=60)
        # sweeping again (a duplicate of each message) runs nothing twice
        for op in ops:
            operations.operation_enqueue(op.id)
        time.sleep(3)
        assert [Operation.objects.get(id=o.id).attempts for o in ops] == [1, 1, 1]
    finally:
        worker.stop()
        sender.close()
        redis.stop()


@pytest.mark.lab
@pytest.mark.django_db(transaction=True)
def test_a_host_that_vanishes_mid_command_fails_the_operation_with_a_readable_reason(
    enrol_lab_host, pat, lab_hosts, settings, monkeypatch
):
    # Run here only, with this test's short timeouts (a worker would use its own settings).
    monkeypatch.setattr("panel.operations.operation_enqueue", lambda op_id: None)
    host = enrol_lab_host("app1")
    settings.PANEL_SSH_CONNECT_TIMEOUT = 3
    settings.PANEL_SSH_RETRY_BACKOFF = 0.2
    container = lab_hosts["app1"]["container"]
    op = host_health_check(actor=access_for_user(pat), host=host)
    subprocess.run(["docker", "pause", container], check=True)
    unpause = threading.Timer(15, subprocess.run, args=(["docker", "unpause", container],))
    unpause.start()
    try:
        operation_execute(op.id)
    finally:
        unpause.cancel()
        subprocess.run(["docker", "unpause", container], capture_output=True)
    op.refresh_from_db()
    host.refresh_from_db()
    assert op.status == "failed"
    assert "lab-app1" in op.error and ("timed out" in op.error or "Cannot reach" in op.error)
    assert "Traceback" not in op.error
    assert host.status == Host.Status.UNREACHABLE
    # once it is back, the next check finds it healthy again
    again = host_health_check(actor=access_for_user(pat), host=host)
    operation_execute(again.id)
    host.refresh_from_db()
    assert Operation.objects.get(id=again.id).status == "succeeded"
    assert host.status != Host.Status.UNREACHABLE


@pytest.mark.django_db(transaction=True)
def test_every_periodic_task_delivered_twice_reaches_the_same_end_state(
    alice, acme, acme_jira, settings
):
    """Each beat task is run twice in a row; the second run changes no domain state."""
    from panel.celery import app as celery_app

    Host.objects.create(
        name="gone-host",
        role="app",
        address="127.0.0.99",
        ssh_port=2222,
        host_key_fingerprint="SHA256:" + "A" * 43,
        status=Host.Status.READY,
    )
    settings.PANEL_SSH_CONNECT_TIMEOUT = 1
    settings.PANEL_SSH_RETRY_BACKOFF = 0.1

    def snapshot() -> dict:
        return {
            "instances": sorted(AtlassianInstance.objects.values_list("name", "status", "health")),
            "hosts": sorted(Host.objects.values_list("name", "status")),
            "operations": sorted(
                (o.kind, str(o.instance_id), str(o.host_id), o.status)
                for o in Operation.objects.all()
            ),
        }

    celery_app.loader.import_default_modules()  # every app's tasks, as a worker loads them
    names = sorted({entry["task"] for entry in beat_schedule().values()})
    assert "provisioning.tasks.operations_reap" in names
    # Fan-out sub-tasks (e.g. one health probe per host) run inline, so each delivery is
    # complete before the state is compared (a live worker would apply them at random times).
    celery_app.conf.task_always_eager = True
    try:
        for name in names:
            task = celery_app.tasks[name]
            task.apply().get(disable_sync_subtasks=False)
            first = snapshot()
            task.apply().get(disable_sync_subtasks=False)
            assert snapshot() == first, f"{name} changed state when delivered a second time"
    finally:
        celery_app.conf.task_always_eager = False
