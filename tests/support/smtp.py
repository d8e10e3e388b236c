"""The real SMTP server (aiosmtpd on 127.0.0.1) the panel's mail goes to in tests, one per
session, emptied for each test that asks for ``smtp_server`` (a pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
    return smtp_server_session
