"""Fixtures of the notification tests: a real SMTP server and a real webhook receiver on
127.0.0.1, the panel's mail pointed at the former, and deliveries run in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receivers import SmtpServer, WebhookReceiver


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


@pytest.fixture
def webhook_receiver(settings) -> Iterator[WebhookReceiver]:
    """A real HTTP receiver; private addresses are allowed so the panel may call 127.0.0.1."""
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = True
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(autouse=True)
def _notification_settings(settings) -> None:
    settings.PANEL_BASE_URL = "https://panel.test"
    settings.PANEL_NOTIFICATION_RETRY_DELAYS = [30, 120]


@pytest.fixture(autouse=True)
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float | None]]:
    """Deliveries are run by the tests themselves; nothing goes to a broker."""
    sent: list[tuple[str, float | None]] = []
    monkeypatch.setattr(
        "notifications.services.notification_enqueue",
        lambda delivery_id, countdown=None: sent.append((str(delivery_id), countdown)),
    )
    return sent
