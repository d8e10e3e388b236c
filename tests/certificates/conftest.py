"""DNS, certificate and proxy tests run their operations inline: nothing here is sent to a
broker. The lab fixtures (``lab_dns``, ``lab_zone``, ``pebble_root``, ``cleanup_sites`` …)
come from the ``tests.support.lab`` and ``tests.support.lab_edge`` plugins."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_broker(no_broker: list[str]) -> list[str]:
    """Operations are run by the tests themselves; returns the ids that would be enqueued."""
    return no_broker
