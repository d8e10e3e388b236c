"""Fixtures of the notification tests: a real webhook receiver on 127.0.0.1 (the SMTP server
is ``tests.support.smtp``'s), and deliveries run in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receivers import WebhookReceiver


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
