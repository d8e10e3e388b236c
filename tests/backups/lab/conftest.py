"""Fixtures of the backup tests against the lab.

They share one world (``tests.support.backup_lab.lab_world``), built once and torn down after
the last test of ``tests/backups/lab``: the lab's backup host and app1 enrolled and
provisioned through the panel, a tenant with an admin, support staff, and one running Jira
stand-in. Its rows are committed outside the tests' transactions; the tests themselves run in
a transaction (``django_db``), so what they change in the database is rolled back while what
they did on the lab stays. Tests that need an empty backup area call ``world.fresh_area()``.
Operations are not enqueued (the parent ``tests/backups/conftest.py`` turns ``no_broker`` on).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from panel.access import access_for_user
from tests.support.backup_lab import LabWorld, lab_world


# Package scope on purpose: the world lives exactly as long as this package's tests. Never
# import it elsewhere (it would outlive the importing module for the rest of the session).
@pytest.fixture(scope="package")
def lab(django_db_setup: None, django_db_blocker: Any) -> Iterator[LabWorld]:
    with lab_world(django_db_blocker) as world:
        yield world


@pytest.fixture
def staff(lab: LabWorld) -> Any:
    """Support staff of the lab world, as an access."""
    return access_for_user(lab.support)
