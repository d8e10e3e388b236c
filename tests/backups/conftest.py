"""Backup tests (and ``tests/backups/lab``) run their operations inline: nothing here is sent
to a broker."""

from __future__ import annotations

import pytest

from provisioning.models import AtlassianInstance
from tests.backups.factories import backup_host, with_backup_host
from tests.support.factories import make_instance


@pytest.fixture(autouse=True)
def _no_broker(no_broker: list[str]) -> list[str]:
    """Operations are run by the tests themselves; returns the ids that would be enqueued."""
    return no_broker


@pytest.fixture
def archiving(acme, app_host) -> AtlassianInstance:
    """acme's Jira on an app host with a backup host, its WAL archived (rows only)."""
    host = with_backup_host(app_host, backup_host())
    instance = make_instance(acme, "acme-jira", host=host, tier="tier2")
    AtlassianInstance.objects.filter(pk=instance.pk).update(wal_archiving=True)
    instance.refresh_from_db()
    return instance
