"""Notifications reach people through a real SMTP server and a real webhook receiver: once per
event until it changes, signed, retried with backoff, logged, and each linking to its object."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from backups.services import BACKUP_FAILED
from notifications.models import (
    NotificationDelivery,
    NotificationEvent,
    NotificationPreference,
)
from notifications.scans import expiry_threshold, notifications_scan
from notifications.services import notification_deliver, webhook_url_check
from notifications.transports import webhook_signature
from panel.notices import notify, notify_resolved
from provisioning.models import Host, InstanceHealthCheck, License
from tests.support.notifications import deliver_all, failed_operation

pytestmark = pytest.mark.django_db

SECRET = "s3cret-webhook-signing-key"


def make_due(delivery: NotificationDelivery) -> None:
    """Let the clock run to the delivery's next attempt."""
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def with_webhook(tenant, url, **fields) -> NotificationPreference:
    return NotificationPreference.objects.create(
        tenant=tenant,
        recipients=fields.pop("recipients", "ops@acme.example"),
        webhook_enabled=True,
        webhook_url=url,
        webhook_secret=SECRET,
        **fields,
    )


def test_a_failed_operation_is_mailed_once_to_the_tenant_contact_with_a_link(
    smtp_server, acme_jira
):
    op = failed_operation(acme_jira)

    assert notifications_scan()["operations"] == 1
    assert deliver_all() == ["delivered"]

    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["ops@acme.example"]
    assert mail.subject == "[Panel] Instance upgrade of acme-jira failed"
    assert "Why it failed: The image panel-lab/jira-software:0.0.0 does not exist." in mail.text
    assert f"https://panel.test/operations/{op.pk}/" in mail.text
    assert mail.message["Auto-Submitted"] == "auto-generated"
    # the next scans find the same failure and stay quiet
    assert notifications_scan()["operations"] == 0
    assert deliver_all() == []
    assert len(smtp_server.messages) == 1


def test_webhooks_carry_an_hmac_sha256_signature_over_the_exact_body(
    smtp_server, webhook_receiver, acme, acme_jira
):
    with_webhook(acme, webhook_receiver.url)
    op = failed_operation(acme_jira)

    notifications_scan()
    assert sorted(deliver_all()) == ["delivered", "delivered"]

    [request] = webhook_receiver.wait_for(1)
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Panel-Signature"] == expected
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Panel-Event"] == "operation.failed"
    payload = json.loads(request.body)
    assert payload["event"] == "operation.failed"
    assert payload["tenant"] == {"id": str(acme.pk), "slug": "acme", "name": "Acme"}
    assert payload["object"] == {"type": "provisioning.operation", "id": str(op.pk)}
    assert payload["url"] == f"https://panel.test/operations/{op.pk}/"
    assert request.headers["X-Panel-Delivery"] == payload["delivery"]
    # a receiver with another secret would not accept it
    assert webhook_signature("another-secret-entirely", request.body) != expected


def test_a_failing_webhook_is_retried_with_growing_delays_until_it_is_delivered(
    webhook_receiver, acme, acme_jira, enqueued
):
    with_webhook(acme, webhook_receiver.url, email_enabled=False)
    webhook_receiver.fail_next = 2
    failed_operation(acme_jira)
    notifications_scan()
    delivery = NotificationDelivery.objects.get()

    assert notification_deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.response_code == 500
    assert "HTTP 500" in delivery.last_error
    first_wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=29) < first_wait <= timedelta(seconds=31)
    assert enqueued[-1] == (str(delivery.pk), 30)
    # not due yet: a duplicate message does nothing
    assert notification_deliver(delivery.pk) == "skipped"

    make_due(delivery)
    assert notification_deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    second_wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=119) < second_wait <= timedelta(seconds=121)

    make_due(delivery)
    assert notification_deliver(delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.response_code == 204 and not delivery.last_error
    # the receiver saw the same signed body three times, with one delivery id
    bodies = {r.body for r in webhook_receiver.requests}
    assert len(webhook_receiver.requests) == 3 and len(bodies) == 1
    assert {r.headers["X-Panel-Delivery"] for r in webhook_receiver.requests} == {str(delivery.pk)}


def test_a_webhook_that_keeps_failing_ends_failed_with_the_reason_in_the_log(
    webhook_receiver, acme, acme_jira
):
    with_webhook(acme, webhook_receiver.url, email_enabled=False)
    webhook_receiver.fail_next = 99
    failed_operation(acme_jira)
    notifications_scan()
    delivery = NotificationDelivery.objects.get()
    results = []
    for _ in range(3):
        results.append(notification_deliver(delivery.pk))
        make_due(delivery)
    delivery.refresh_from_db()
    assert results == ["retrying", "retrying", "failed"]
    assert delivery.status == "failed" and delivery.attempts == 3
    assert delivery.last_error.startswith("The receiver answered HTTP 500")


def test_a_refused_webhook_is_not_retried(webhook_receiver, acme, acme_jira):
    with_webhook(acme, webhook_receiver.url, email_enabled=False)
    webhook_receiver.fail_next, webhook_receiver.fail_status = 1, 403
    failed_operation(acme_jira)
    notifications_scan()
    assert deliver_all() == ["failed"]
    assert NotificationDelivery.objects.get().response_code == 403


def test_an_unreachable_smtp_server_is_retried(settings, acme, acme_jira, free_port_closed):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port_closed
    failed_operation(acme_jira)
    notifications_scan()
    assert deliver_all() == ["retrying"]
    assert "Connection refused" in NotificationDelivery.objects.get().last_error


@pytest.fixture
def free_port_closed() -> int:
    from tests.support.receivers import free_port

    return free_port()


def test_license_expiry_is_told_at_60_30_7_and_1_days_once_each(smtp_server, acme_jira):
    today = timezone.localdate()
    lic = License.objects.create(
        instance=acme_jira,
        product="jira-software",
        key="AAAB",
        sen="SEN-9",
        expiry_date=today + timedelta(days=45),
    )
    noon = timezone.now().replace(hour=12)
    assert notifications_scan(noon)["licenses"] == 1
    assert notifications_scan(noon)["licenses"] == 0
    assert notifications_scan(noon + timedelta(days=10))["licenses"] == 0  # 35 days: still 60
    assert notifications_scan(noon + timedelta(days=16))["licenses"] == 1  # 29 days: 30
    assert notifications_scan(noon + timedelta(days=39))["licenses"] == 1  # 6 days: 7
    assert notifications_scan(noon + timedelta(days=44))["licenses"] == 1  # 1 day: 1
    assert notifications_scan(noon + timedelta(days=46))["licenses"] == 0  # expired: told
    deliver_all()
    subjects = [m.subject for m in smtp_server.wait_for(4)]
    assert subjects == [
        "[Panel] The Jira Software license of acme-jira expires in 45 days",
        "[Panel] The Jira Software license of acme-jira expires in 29 days",
        "[Panel] The Jira Software license of acme-jira expires in 6 days",
        "[Panel] The Jira Software license of acme-jira expires in 1 day",
    ]
    assert f"https://panel.test/instances/{acme_jira.pk}/#licenses" in smtp_server.messages[0].text
    # a renewed license (new expiry date) starts over
    lic.expiry_date = today + timedelta(days=20)
    lic.save()
    assert notifications_scan(noon)["licenses"] == 1


@pytest.mark.parametrize(
    ("days", "threshold"),
    [(61, None), (60, 60), (31, 60), (30, 30), (8, 30), (7, 7), (2, 7), (1, 1), (0, 1), (-3, 1)],
)
def test_expiry_thresholds(days, threshold):
    assert expiry_threshold(days) == threshold


def test_a_degraded_instance_is_told_once_per_episode(smtp_server, acme_jira):
    InstanceHealthCheck.objects.create(instance=acme_jira, ok=False, detail="HTTP 503 from /status")
    acme_jira.health, acme_jira.health_changed_at = "degraded", timezone.now()
    acme_jira.save()
    assert notifications_scan()["instances"] == 1
    assert notifications_scan()["instances"] == 0
    # it recovers, then degrades again later: a new episode
    acme_jira.health, acme_jira.health_changed_at = "degraded", timezone.now() + timedelta(hours=1)
    acme_jira.save()
    assert notifications_scan()["instances"] == 1
    deliver_all()
    mail = smtp_server.wait_for(2)[0]
    assert mail.subject == "[Panel] acme-jira is degraded"
    assert "The last check said: HTTP 503 from /status" in mail.text
    assert f"https://panel.test/instances/{acme_jira.pk}/" in mail.text


def test_a_full_host_disk_is_told_to_platform_staff_only_and_again_after_it_recovers(
    smtp_server, pat, alice, acme_jira, app_host
):
    Host.objects.filter(pk=app_host.pk).update(disk_free_bytes=10 * 1024**3)  # 95% used
    assert notifications_scan()["hosts"] == 1
    assert notifications_scan()["hosts"] == 0
    deliver_all()
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["pat@example.com"]
    assert mail.subject == "[Panel] Disk of app-one is 95.0% full"
    assert f"https://panel.test/hosts/{app_host.pk}/" in mail.text

    Host.objects.filter(pk=app_host.pk).update(disk_free_bytes=150 * 1024**3)
    assert notifications_scan()["hosts"] == 0
    Host.objects.filter(pk=app_host.pk).update(disk_free_bytes=5 * 1024**3)
    assert notifications_scan()["hosts"] == 1
    assert NotificationEvent.objects.get(event="host.disk_full").times_notified == 2


def test_staff_also_hear_of_failed_operations_but_tenants_never_see_staff_deliveries(
    smtp_server, pat, alice, acme_jira, access_of
):
    failed_operation(acme_jira)
    notifications_scan()
    deliver_all()
    mails = smtp_server.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == ["ops@acme.example", "pat@example.com"]
    from notifications.selectors import delivery_list

    assert [d.destination for d in delivery_list(access_of(alice), acme_jira.tenant)] == [
        "ops@acme.example"
    ]
    assert list(NotificationDelivery.objects.for_user(access_of(alice))) == list(
        NotificationDelivery.objects.filter(tenant=acme_jira.tenant)
    )


def test_a_tenant_hears_only_of_the_events_it_chose(smtp_server, acme, acme_jira):
    NotificationPreference.objects.create(
        tenant=acme, recipients="oncall@acme.example", events=["instance.degraded"]
    )
    failed_operation(acme_jira)
    assert notifications_scan()["operations"] == 1  # recorded, so never told later either
    assert deliver_all() == []
    assert smtp_server.messages == []


def test_notify_is_what_other_apps_call_and_dedupes_on_its_key(smtp_server, acme, acme_jira):
    kwargs = {
        "event": BACKUP_FAILED,
        "tenant": acme,
        "obj": acme_jira,
        "dedupe_key": "backup:acme-jira:2026-01-01",
        "subject": "The nightly backup of acme-jira failed",
        "body": "rsync exited 23.",
        "url": f"/instances/{acme_jira.pk}/",
    }
    assert notify(**kwargs) is not None
    assert notify(**kwargs) is None
    assert notify_resolved(event=kwargs["event"], tenant=acme, dedupe_key=kwargs["dedupe_key"])
    again = notify(**kwargs)
    assert again is not None and again.times_notified == 2
    deliver_all()
    assert [m.subject for m in smtp_server.wait_for(2)] == [
        "[Panel] The nightly backup of acme-jira failed"
    ] * 2
    with pytest.raises(ValueError):
        notify(**{**kwargs, "event": "backup.exploded"})


def test_webhook_urls_to_private_addresses_are_refused_unless_allowed(settings):
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = False
    for url in (
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://localhost/hook",
    ):
        with pytest.raises(ValidationError, match="private or local address"):
            webhook_url_check(url)
    with pytest.raises(ValidationError, match="http:// or https://"):
        webhook_url_check("file:///etc/passwd")
    with pytest.raises(ValidationError, match="credentials"):
        webhook_url_check("https://user:pw@93.184.216.34/hook")
    webhook_url_check("https://93.184.216.34/hook")  # a public address is fine
    with pytest.raises(ValidationError, match="port 80 or 443 only, not 8443"):
        webhook_url_check("https://93.184.216.34:8443/hook")
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = True
    webhook_url_check("http://127.0.0.1:8080/hook")


def test_a_webhook_to_a_private_address_fails_at_delivery_without_retry(
    settings, webhook_receiver, acme, acme_jira
):
    with_webhook(acme, webhook_receiver.url, email_enabled=False)
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = False
    settings.PANEL_WEBHOOK_PORTS = [80, 443, webhook_receiver.port]  # the address is refused
    failed_operation(acme_jira)
    notifications_scan()
    assert deliver_all() == ["failed"]
    assert "private or local address" in NotificationDelivery.objects.get().last_error
    assert webhook_receiver.requests == []


def test_the_webhook_secret_is_encrypted_at_rest(acme):
    from django.db import connection

    pref = with_webhook(acme, "https://hooks.acme.example/panel")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT webhook_secret FROM tenants_notificationpreference WHERE id = %s", [pref.pk]
        )
        stored = cur.fetchone()[0]
    assert stored.startswith("fernet:") and SECRET not in stored
    pref.refresh_from_db()
    assert pref.webhook_secret == SECRET


def test_a_certificate_is_told_only_once_its_renewal_is_overdue(smtp_server, acme_jira):
    from certificates.models import Certificate

    now = timezone.now()
    cert = Certificate.objects.create(
        instance=acme_jira,
        names=["acme-jira.example.com"],
        status=Certificate.Status.VALID,
        not_before=now - timedelta(days=70),
        # Noon, 20 calendar days ahead: "expires in 20 days" counts dates, so a time within
        # an hour of midnight would make it 21 days late in the UTC evening.
        not_after=(now + timedelta(days=20)).replace(hour=12, minute=0, second=0, microsecond=0),
        renew_after=now + timedelta(days=1),
    )
    # a healthy certificate the panel will renew in time: nothing to tell
    assert notifications_scan()["certificates"] == 0
    Certificate.objects.filter(pk=cert.pk).update(
        renew_after=now - timedelta(days=2), last_error="DNS for acme-jira.example.com is wrong"
    )
    assert notifications_scan()["certificates"] == 1
    assert notifications_scan()["certificates"] == 0
    deliver_all()
    [mail] = smtp_server.wait_for(1)
    assert mail.subject == (
        "[Panel] The certificate of acme-jira (acme-jira.example.com) expires in 20 days"
    )
    assert "last error: DNS for acme-jira.example.com is wrong" in mail.text
    assert f"https://panel.test/instances/{acme_jira.pk}/#endpoint" in mail.text


def test_a_failure_mailed_to_the_tenant_names_no_host_address_or_backup_host(
    smtp_server, acme_jira
):
    from provisioning.models import Host

    backup = Host.objects.create(
        name="vault-backup-9", role=Host.Role.BACKUP, address="10.77.0.9", data_root="/b"
    )
    app = Host.objects.create(
        name="app-nine",
        role=Host.Role.APP,
        address="10.77.0.5",
        data_root="/a",
        backup_host=backup,
    )
    acme_jira.host = app
    acme_jira.save(update_fields=["host"])
    failed_operation(
        acme_jira, error="rsync to panel-backup@10.77.0.9 (vault-backup-9) failed: 10.77.0.5"
    )
    notifications_scan()
    assert deliver_all() == ["delivered"]
    [mail] = smtp_server.wait_for(1)
    assert "Why it failed: rsync to" in mail.text
    for internal in ("10.77.0.9", "10.77.0.5", "vault-backup-9", "panel-backup@"):
        assert internal not in mail.text, internal
