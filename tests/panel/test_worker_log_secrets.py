"""The real Celery worker's log passes through the secret filter: Celery replaces the root
logger's handlers in a worker, so without panel.celery.sanitize_handlers a message's arguments
(which Celery prints for a task it does not know) reached the log as they were."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from panel.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_secret_in_a_tasks_arguments_never_reaches_the_workers_log(worker):
    log = worker.operations.log_path
    start = log.stat().st_size
    app.send_task(
        "panel.no_such_task_for_the_log_test",
        args=["password=hunter2-sekrit-value", "pnl_" + "a" * 30],
        queue=settings.PANEL_CELERY_QUEUE_OPERATIONS,
    )
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = log.read_bytes()[start:].decode(errors="replace")
        if "no_such_task_for_the_log_test" in text and "body" in text:
            break
        time.sleep(0.3)
    assert "no_such_task_for_the_log_test" in text, text[-2000:]
    assert "hunter2-sekrit-value" not in text
    assert "pnl_" + "a" * 30 not in text
    assert "[redacted]" in text
