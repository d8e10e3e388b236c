"""Every way in goes through notify(): a restore request reaches the staff's alert list as a
platform notice, and a bug in sending fails the delivery at once instead of being retried."""

from __future__ import annotations

import logging
import smtplib

import pytest

from backups.services import restore_request_create
from notifications.models import NotificationDelivery, NotificationEvent, NotificationPreference
from notifications.scans import notifications_scan
from panel import operations
from panel.access import access_for_user
from tests.support.notifications import deliver_all, failed_operation

pytestmark = pytest.mark.django_db


def test_a_restore_request_is_mailed_to_the_backup_alert_list_through_a_platform_notice(
    smtp_server, settings, alice, acme_jira
):
    settings.PANEL_BACKUP_ALERT_EMAILS = ["restores@panel.test"]

    request = restore_request_create(
        actor=access_for_user(alice), instance=acme_jira, note="Yesterday's point, please."
    )

    notice = NotificationEvent.objects.get(event="backup.restore_requested")
    assert notice.tenant is None and notice.scope == "platform"
    assert (notice.object_type, notice.object_id) == ("backups.restorerequest", str(request.pk))
    assert deliver_all() == ["delivered"]
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["restores@panel.test"]
    assert mail.subject == "[Panel] Restore requested for acme-jira"
    assert "alice asked to restore acme-jira (no point chosen)." in mail.text
    assert "Yesterday's point, please." in mail.text
    assert "https://panel.test/staff/restore-requests/" in mail.text


def test_staff_who_chose_restore_requests_hear_of_them_with_the_alert_list(
    smtp_server, settings, alice, acme_jira
):
    settings.PANEL_BACKUP_ALERT_EMAILS = ["restores@panel.test"]
    NotificationPreference.objects.create(
        platform=True, recipients="staff@panel.test", events=["backup.restore_requested"]
    )

    restore_request_create(actor=access_for_user(alice), instance=acme_jira)

    assert deliver_all() == ["delivered"]
    [mail] = smtp_server.wait_for(1)
    assert sorted(mail.rcpt_tos) == ["restores@panel.test", "staff@panel.test"]


def test_without_an_alert_list_or_a_choice_a_restore_request_mails_nobody(
    smtp_server, settings, alice, acme_jira
):
    settings.PANEL_BACKUP_ALERT_EMAILS = []

    restore_request_create(actor=access_for_user(alice), instance=acme_jira)

    assert NotificationEvent.objects.filter(event="backup.restore_requested").exists()
    assert not NotificationDelivery.objects.exists()


def test_a_bug_while_sending_fails_the_delivery_at_once_and_is_not_retried(
    acme_jira, enqueued, monkeypatch, caplog
):
    def broken_send(self: object, fail_silently: bool = False) -> int:
        raise TypeError("send() got an unexpected keyword argument 'bcc_list'")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", broken_send)
    failed_operation(acme_jira)
    notifications_scan()

    with caplog.at_level(logging.ERROR, logger="notifications.services"):
        assert deliver_all() == ["failed"]

    delivery = NotificationDelivery.objects.get()
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.last_error == "The panel could not send this notification (internal error)."
    assert "bcc_list" not in delivery.last_error  # internals stay in the log, not the page
    assert enqueued == []  # no retry scheduled
    assert "unexpected error" in caplog.text and "bcc_list" in caplog.text


def test_an_smtp_error_is_retried(acme_jira, enqueued, monkeypatch):
    def refusing_send(self: object, fail_silently: bool = False) -> int:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refusing_send)
    failed_operation(acme_jira)
    notifications_scan()

    assert deliver_all() == ["retrying"]
    delivery = NotificationDelivery.objects.get()
    assert delivery.status == "retrying" and "SMTPServerDisconnected" in delivery.last_error
    assert enqueued == [(str(delivery.pk), 30)]


def test_an_operation_failed_by_the_runner_is_told_at_once_not_at_the_next_scan(
    smtp_server, alice, acme_jira
):
    op = operations.operation_start(
        kind="diagnostic",
        actor=access_for_user(alice),
        instance=acme_jira,
        lock_key="t:notify-failed",
        params={"sleep": 0, "steps": 1, "fail": "it broke"},
    )
    assert operations.operation_execute(op.id) == "failed"

    told = NotificationEvent.objects.get(event="operation.failed")
    assert told.dedupe_key == f"operation:{op.pk}" and told.tenant_id == acme_jira.tenant_id
    assert notifications_scan()["operations"] == 0  # the scan finds it told already
    assert deliver_all() == ["delivered"]
    [mail] = smtp_server.wait_for(1)
    assert "Why it failed: it broke" in mail.text
