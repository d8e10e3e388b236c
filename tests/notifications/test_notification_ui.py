"""The notification settings pages: tenant admins choose recipients, events and a webhook;
viewers and other tenants cannot; a test notification really arrives."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from notifications.models import NotificationDelivery, NotificationPreference
from tenants.models import AuditEvent
from tests.support.notifications import deliver_all

pytestmark = pytest.mark.django_db

URL = reverse("notifications:notification_settings")
SECRET = "a-long-enough-shared-secret"


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def form_data(tenant, **overrides) -> dict:
    data = {
        "tenant": str(tenant.pk),
        "email_enabled": "on",
        "recipients": "oncall@acme.example\nCTO@acme.example",
        "events": ["operation.failed", "license.expiring", "instance.degraded"],
        "webhook_enabled": "on",
        "webhook_url": "https://hooks.acme.example/panel",
        "webhook_secret": SECRET,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_a_tenant_admin_sees_the_defaults_the_contact_address_and_every_event(alice, acme):
    response = client_for(alice).get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "ops@acme.example" in page
    # every tenant event (instance.evacuated among them), none of the staff ones
    assert page.count('name="events"') == 7
    assert 'value="instance.evacuated"' in page
    assert 'value="host.disk_full"' not in page and 'value="host.evacuated"' not in page
    assert 'id="nav-notifications"' in page


def test_a_tenant_admin_saves_recipients_events_and_a_webhook_and_the_secret_stays_hidden(
    alice, acme, settings
):
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = False
    client = client_for(alice)
    response = client.post(URL, form_data(acme, webhook_url="https://93.184.216.34/panel"))
    assert response.status_code == 302
    pref = NotificationPreference.objects.get(tenant=acme)
    assert pref.recipient_list == ["oncall@acme.example", "cto@acme.example"]
    assert pref.events == ["instance.degraded", "license.expiring", "operation.failed"]
    assert pref.webhook_secret == SECRET
    page = client.get(response["Location"]).content.decode()
    assert "Notification settings saved." in page
    assert SECRET not in page
    assert "A secret is set" in page
    event = AuditEvent.objects.get(action="notifications.update")
    assert "webhook_secret" in event.changes and SECRET not in str(event.changes)

    # saving again without typing the secret keeps it
    client.post(URL, form_data(acme, webhook_secret="", webhook_url="https://93.184.216.34/x"))
    pref.refresh_from_db()
    assert pref.webhook_secret == SECRET and pref.webhook_url == "https://93.184.216.34/x"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"recipients": "oncall@acme.example\nnot-an-address"}, "recipients", "not-an-address is"),
        ({"recipients": ""}, "recipients", "Add at least one address"),
        ({"webhook_secret": "short"}, "webhook_secret", "at least 16 characters"),
        ({"webhook_url": ""}, "webhook_url", "Give the URL to call"),
        ({"webhook_url": "http://127.0.0.1/x"}, "webhook_url", "private or local address"),
        ({"webhook_url": "https://93.184.216.34:8443/x"}, "webhook_url", "port 80 or 443"),
        ({"events": ["host.disk_full"]}, "events", "not one of the available choices"),
    ],
)
def test_bad_settings_are_explained_next_to_their_field_and_nothing_is_saved(
    alice, acme, settings, overrides, field, message
):
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = False
    response = client_for(alice).post(
        URL, form_data(acme, webhook_url="https://93.184.216.34/h") | overrides
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert f'data-testid="error-{field}"' in response.content.decode()
    assert not NotificationPreference.objects.exists()


def test_viewers_may_not_open_or_change_notifications(bob, acme):
    client = client_for(bob)
    assert client.get(URL).status_code == 403
    assert client.get(URL, {"tenant": acme.pk}).status_code == 403
    assert client.post(URL, form_data(acme)).status_code == 403
    test_url = reverse("notifications:notification_test")
    assert client.post(test_url, {"tenant": acme.pk}).status_code == 403
    assert 'id="nav-notifications"' not in client.get("/tokens/").content.decode()
    assert not NotificationPreference.objects.exists()


def test_another_tenants_notifications_are_not_found(charlie, acme):
    client = client_for(charlie)
    assert client.get(URL, {"tenant": acme.pk}).status_code == 404
    assert client.post(URL, form_data(acme)).status_code == 404
    test_url = reverse("notifications:notification_test")
    assert client.post(test_url, {"tenant": acme.pk}).status_code == 404
    deliveries = reverse("notifications:notification_deliveries")
    assert client.get(deliveries, {"tenant": acme.pk}).status_code == 404
    assert client.get(URL, {"tenant": "platform"}).status_code == 404
    assert not NotificationPreference.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in():
    response = client_for(None).get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_platform_admins_choose_who_of_the_staff_hears_of_host_events(pat, acme):
    client = client_for(pat)
    page = client.get(URL).content.decode()
    assert "Platform staff (host events)" in page and 'value="host.disk_full"' in page
    response = client.post(
        URL,
        {
            "tenant": "platform",
            "email_enabled": "on",
            "recipients": "noc@hosting.example",
            "events": ["host.disk_full"],
        },
    )
    assert response.status_code == 302
    pref = NotificationPreference.objects.get(platform=True)
    assert pref.recipient_list == ["noc@hosting.example"] and pref.tenant is None
    # and a tenant's page is theirs to open too
    assert client.get(URL, {"tenant": acme.pk}).status_code == 200


def test_a_test_notification_arrives_and_shows_in_the_delivery_log(alice, acme, smtp_server):
    client = client_for(alice)
    client.post(URL, form_data(acme, webhook_enabled=None, webhook_url="", webhook_secret=""))
    response = client.post(reverse("notifications:notification_test"), {"tenant": acme.pk})
    assert response.status_code == 302
    assert deliver_all() == ["delivered"]
    [mail] = smtp_server.wait_for(1)
    assert sorted(mail.rcpt_tos) == ["cto@acme.example", "oncall@acme.example"]
    assert mail.subject == "[Panel] Test notification for Acme"
    assert f"https://panel.test/notifications/?tenant={acme.pk}" in mail.text
    page = client.get(response["Location"]).content.decode()
    assert "Test notification queued on 1 channel" in page
    assert 'data-status="delivered"' in page
    log = client.get(reverse("notifications:notification_deliveries"), {"tenant": acme.pk})
    assert log.status_code == 200 and "Test notification for Acme" in log.content.decode()


def test_the_delivery_log_pages_through_long_histories(alice, acme, smtp_server, settings):
    from notifications.services import notification_send_test

    settings.PANEL_NOTIFICATION_TESTS_PER_HOUR = 30

    client_for(alice).post(
        URL, form_data(acme, webhook_enabled=None, webhook_url="", webhook_secret="")
    )
    from panel.access import access_for_user

    for _ in range(30):
        notification_send_test(actor=access_for_user(alice), tenant=acme)
    assert NotificationDelivery.objects.count() == 30
    client = client_for(alice)
    deliveries = reverse("notifications:notification_deliveries")
    first = client.get(deliveries, {"tenant": acme.pk}).content.decode()
    assert first.count('data-testid="delivery-row"') == 25 and "Page 1 of 2" in first
    second = client.get(deliveries, {"tenant": acme.pk, "page": 2}).content.decode()
    assert second.count('data-testid="delivery-row"') == 5
