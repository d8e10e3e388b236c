"""Host tests run their operations inline: nothing here is sent to a broker. The lab fixtures
(``lab_state``, ``enrol_lab_host`` …) come from the ``tests.support.lab`` plugin."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_broker(no_broker: list[str]) -> list[str]:
    """Operations are run by the tests themselves; returns the ids that would be enqueued."""
    return no_broker
