"""Fixtures of the web UI tests: an operation of Acme's and one of Globex's. Logged-in
clients come from ``browser`` (``tests/conftest.py``), rows from ``tests.support.factories``."""

from __future__ import annotations

import pytest

from panel import operations
from provisioning.models import Operation, OperationKind
from tests.support.factories import make_operation, make_step

LIFECYCLE_KINDS = [
    OperationKind.INSTANCE_START,
    OperationKind.INSTANCE_STOP,
    OperationKind.INSTANCE_RESTART,
    OperationKind.INSTANCE_UPGRADE,
    OperationKind.INSTANCE_RESIZE,
    OperationKind.INSTANCE_DELETE,
]


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
