"""Fixtures of the tenants tests: a real SMTP server (aiosmtpd) that the panel's mail goes
to, as in the notification tests, and empty rate-limit counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from tests.support.receivers import SmtpServer


@pytest.fixture(scope="session")
def smtp_server_session() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(smtp_server_session: SmtpServer, settings) -> SmtpServer:
    """The real SMTP server, emptied, with Django's SMTP backend sending to it."""
    smtp_server_session.clear()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server_session.port
    settings.DEFAULT_FROM_EMAIL = "panel@panel.test"
    settings.PANEL_BASE_URL = "https://panel.test"
    return smtp_server_session


@pytest.fixture(autouse=True)
def _empty_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()
