"""Fixtures of the backup tests that need no lab (those live in ``tests/backups/lab/``)."""

from tests.provisioning.conftest import _no_broker  # noqa: F401 - operations are not enqueued
from tests.ui.conftest import browser  # noqa: F401 - logged-in test clients
