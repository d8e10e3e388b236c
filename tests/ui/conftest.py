"""Helpers of the web UI tests: logged-in browsers (Django test clients) and operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from panel import operations
from provisioning.models import AtlassianInstance, Operation, OperationKind, OperationStep

LIFECYCLE_KINDS = [
    OperationKind.INSTANCE_START,
    OperationKind.INSTANCE_STOP,
    OperationKind.INSTANCE_RESTART,
    OperationKind.INSTANCE_UPGRADE,
    OperationKind.INSTANCE_RESIZE,
    OperationKind.INSTANCE_DELETE,
]


@pytest.fixture
def browser() -> Callable[[Any], Client]:
    """``browser(user)`` is a client logged in as ``user``; ``browser(None)`` is anonymous."""

    def make(user: Any = None) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return make


def make_operation(
    instance: AtlassianInstance,
    *,
    kind: str = "instance.restart",
    status: str = "running",
    **fields: Any,
) -> Operation:
    """An operation on ``instance``; active ones hold the instance's lock like real ones."""
    active = status in ("pending", "running")
    return Operation.objects.create(
        kind=kind,
        tenant=instance.tenant,
        instance=instance,
        status=status,
        lock_key=f"instance:{instance.pk}" if active else None,
        **fields,
    )


def make_step(operation: Operation, message: str, **fields: Any) -> OperationStep:
    return OperationStep.objects.create(operation=operation, message=message, **fields)


@pytest.fixture
def acme_op(acme_jira) -> Operation:
    op = make_operation(acme_jira, progress_current=1, progress_total=4)
    make_step(op, "Pulling image atlassian/jira-software:9.12.0")
    return op


@pytest.fixture
def globex_op(globex_wiki) -> Operation:
    op = make_operation(globex_wiki, kind="instance.stop", status="succeeded")
    make_step(op, "Stopped globex-wiki")
    return op


@pytest.fixture(autouse=True)
def lifecycle_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI only *starts* operations (no worker runs here), and offers only actions the
    runner has a handler for: register no-op ones for lifecycle kinds not registered yet."""
    for kind in LIFECYCLE_KINDS:
        if kind not in operations.registered_kinds():
            monkeypatch.setitem(
                operations._REGISTRY,
                kind,
                operations.OperationKindSpec(kind=kind, handler=lambda ctx: {}),
            )
