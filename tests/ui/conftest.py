"""Fixtures of the web UI tests: an operation of Acme's and one of Globex's. Logged-in
clients come from ``browser`` (``tests/conftest.py``), rows from ``tests.support.factories``."""

from __future__ import annotations

import pytest

from provisioning.models import Operation
from tests.support.factories import make_operation, make_step


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
