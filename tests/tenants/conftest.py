"""Fixtures of the tenants tests: a real SMTP server (aiosmtpd) that the panel's mail goes
to, as in the notification tests, and empty rate-limit counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from tests.support.receivers import SmtpServer


@pytest.fixture
def smtp_server(smtp_server: SmtpServer, settings) -> SmtpServer:
    """The shared SMTP server (tests.support.smtp), with the panel's links on a known base."""
    settings.PANEL_BASE_URL = "https://panel.test"
    return smtp_server


@pytest.fixture(autouse=True)
def _empty_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()
