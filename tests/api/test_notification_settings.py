"""/api/notification-settings/: the notification settings page's rules through the API.

Alice (Acme's admin) reads and changes Acme's; Bob (viewer) gets 403; Charlie (Globex) 404 for
Acme; Sam (support) reads every tenant's and changes none; Pat (platform admin) changes every
tenant's and the platform staff's. Bad input answers 400 with a message per field; the secret
is never returned; every change and test is audited.
"""

from __future__ import annotations

import pytest

from notifications.models import NotificationDelivery, NotificationPreference
from notifications.services import PLATFORM_DEFAULT_EVENTS
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db

SECRET = "a-long-enough-shared-secret"
PUBLIC_HOOK = "https://93.184.216.34/panel"  # a public address: no DNS lookup needed


@pytest.fixture(autouse=True)
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Deliveries are queued, not sent: nothing goes to a broker."""
    sent: list[str] = []
    monkeypatch.setattr(
        "notifications.services.notification_enqueue",
        lambda delivery_id, countdown=None: sent.append(str(delivery_id)),
    )
    return sent


def url(tenant=None, action: str = "") -> str:
    base = "/api/notification-settings/" + (f"{tenant.pk}/" if tenant else "platform/")
    return base + (f"{action}/" if action else "")


def body(**overrides) -> dict:
    data = {
        "email_enabled": True,
        "recipients": ["oncall@acme.example", "CTO@acme.example", "oncall@acme.example"],
        "events": ["operation.failed", "license.expiring"],
        "webhook_enabled": True,
        "webhook_url": PUBLIC_HOOK,
        "webhook_secret": SECRET,
    }
    data.update(overrides)
    return data


def test_a_tenant_admin_reads_the_defaults_until_settings_are_chosen(api, alice, acme):
    data = api(alice).get(url(acme)).json()
    assert data["tenant"] == str(acme.pk) and data["tenant_name"] == "Acme"
    assert data["chosen"] is False and data["recipients"] == ["ops@acme.example"]
    available = [e["key"] for e in data["events_available"]]
    assert sorted(data["events"]) == sorted(available) and "host.disk_full" not in available
    assert data["webhook_secret_set"] is False and "webhook_secret" not in data


def test_a_tenant_admin_saves_settings_and_the_secret_is_never_returned(api, alice, acme):
    response = api(alice).put(url(acme), body(), format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["chosen"] is True and data["webhook_secret_set"] is True
    assert data["recipients"] == ["oncall@acme.example", "cto@acme.example"]
    assert data["events"] == ["license.expiring", "operation.failed"]
    assert SECRET not in response.content.decode()
    pref = NotificationPreference.objects.get(tenant=acme)
    assert pref.webhook_secret == SECRET and pref.webhook_url == PUBLIC_HOOK
    event = AuditEvent.objects.get(action="notifications.update")
    assert event.source == "api" and event.tenant == acme and event.actor == alice
    assert "webhook_secret" in event.changes and SECRET not in str(event.changes)


def test_a_patch_changes_only_what_it_names_and_keeps_the_secret(api, alice, acme):
    api(alice).put(url(acme), body(), format="json")
    response = api(alice).patch(url(acme), {"events": ["instance.degraded"]}, format="json")
    assert response.status_code == 200, response.content
    pref = NotificationPreference.objects.get(tenant=acme)
    assert pref.events == ["instance.degraded"] and pref.webhook_secret == SECRET
    assert pref.recipient_list == ["oncall@acme.example", "cto@acme.example"]
    assert pref.webhook_enabled and pref.webhook_url == PUBLIC_HOOK


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"recipients": ["not-an-address"]}, "recipients", "not-an-address is not an email"),
        ({"recipients": [f"p{i}@acme.example" for i in range(21)]}, "recipients", "At most 20"),
        ({"events": ["host.disk_full"]}, "events", "Unknown events: host.disk_full"),
        ({"webhook_url": ""}, "webhook_url", "Give the URL to call"),
        ({"webhook_url": "https://127.0.0.1/hook"}, "webhook_url", "127.0.0.1"),
        ({"webhook_url": "ftp://hooks.example/x"}, "webhook_url", "Use an http:// or https://"),
        ({"webhook_url": "not a url"}, "webhook_url", "Enter a valid URL"),
        ({"webhook_secret": "short"}, "webhook_secret", "at least 16"),
        ({"webhook_secret": ""}, "webhook_secret", "Set a shared secret"),
        ({"email_enabled": True, "recipients": []}, "recipients", "at least one address"),
        ({"email_enabled": "maybe"}, "email_enabled", "Must be a valid boolean"),
        ({"recipent": ["x@acme.example"]}, "recipent", "Unknown field; this request takes"),
    ],
)
def test_bad_input_answers_400_with_the_fields_message_and_saves_nothing(
    api, alice, acme, settings, change, field, message
):
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = False
    response = api(alice).put(url(acme), body(**change), format="json")
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()[field]), response.json()
    assert not NotificationPreference.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_put_needs_every_setting_but_the_secret(api, alice, acme):
    response = api(alice).put(url(acme), {"events": []}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"email_enabled", "recipients", "webhook_enabled", "webhook_url"}


def test_viewers_get_403_and_other_tenants_404(api, bob, charlie, acme):
    for method in ("get", "patch"):
        assert getattr(api(bob), method)(url(acme), {}, format="json").status_code == 403
        response = getattr(api(charlie), method)(url(acme), {}, format="json")
        assert response.status_code == 404 and "Acme" not in response.content.decode()
    assert api(bob).get(url(acme, "deliveries")).status_code == 403
    assert api(bob).post(url(acme, "test")).status_code == 403
    assert api(charlie).post(url(acme, "test")).status_code == 404
    assert not NotificationPreference.objects.exists()


def test_support_reads_every_tenants_settings_but_changes_none(api, sam, acme, globex):
    client = api(sam)
    assert client.get(url(acme)).status_code == 200
    assert client.get(url(globex, "deliveries")).status_code == 200
    refused = client.patch(url(acme), {"events": []}, format="json")
    assert refused.status_code == 403 and "support reads them" in refused.json()["detail"]
    assert client.post(url(acme, "test")).status_code == 403
    listed = client.get("/api/notification-settings/").json()
    assert [s["tenant_name"] for s in listed["results"]] == ["Acme", "Globex"]
    assert not NotificationPreference.objects.exists()


def test_the_list_holds_only_the_tenants_the_caller_administers(api, alice, bob, acme, globex):
    listed = api(alice).get("/api/notification-settings/").json()
    assert [s["tenant"] for s in listed["results"]] == [str(acme.pk)]
    assert api(bob).get("/api/notification-settings/").json()["results"] == []


def test_a_read_only_token_reads_but_cannot_change(api, make_token, alice, acme):
    client = api(token=make_token(alice, acme, scope="read"))
    assert client.get(url(acme)).status_code == 200
    assert client.patch(url(acme), {"events": []}, format="json").status_code == 403


def test_platform_admins_choose_the_platform_staffs_notifications(api, pat, sam, alice):
    client = api(pat)
    data = client.get(url()).json()
    assert data["tenant"] is None and data["events"] == sorted(PLATFORM_DEFAULT_EVENTS)
    assert "host.disk_full" in [e["key"] for e in data["events_available"]]
    response = client.patch(url(), {"recipients": ["Staff@panel.example"]}, format="json")
    assert response.status_code == 200, response.content
    assert NotificationPreference.objects.get(platform=True).recipient_list == [
        "staff@panel.example"
    ]
    for user in (sam, alice):
        refused = api(user).get(url())
        assert refused.status_code == 403
        assert "platform staff's notifications" in refused.json()["detail"]


def test_platform_admins_change_any_tenants_settings(api, pat, globex):
    response = api(pat).patch(url(globex), {"email_enabled": False}, format="json")
    assert response.status_code == 200, response.content
    assert NotificationPreference.objects.get(tenant=globex).email_enabled is False


def test_a_test_notification_is_queued_on_each_channel_and_then_throttled(
    api, alice, acme, settings, enqueued, django_capture_on_commit_callbacks
):
    settings.PANEL_NOTIFICATION_TESTS_PER_HOUR = 1
    api(alice).put(url(acme), body(), format="json")
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).post(url(acme, "test"))
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["event"] == "test"
    assert sorted(d["channel"] for d in data["deliveries"]) == ["email", "webhook"]
    assert len(enqueued) == 2
    assert AuditEvent.objects.filter(action="notifications.test", source="api").exists()
    log = api(alice).get(url(acme, "deliveries")).json()
    assert log["count"] == 2 and {d["event"] for d in log["results"]} == {"test"}
    again = api(alice).post(url(acme, "test"))
    assert again.status_code == 429 and int(again["Retry-After"]) > 0
    assert NotificationDelivery.objects.count() == 2


def test_a_test_takes_no_body(api, alice, acme):
    response = api(alice).post(url(acme, "test"), {"channel": "email"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"channel": ["Unknown field; this request takes no fields."]}


def test_the_schema_documents_the_routes_and_hides_the_secret(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in (
        "/api/notification-settings/",
        "/api/notification-settings/{id}/",
        "/api/notification-settings/{id}/test/",
        "/api/notification-settings/{id}/deliveries/",
        "/api/notification-settings/platform/",
    ):
        assert path in schema["paths"], path
    components = schema["components"]["schemas"]
    assert "webhook_secret" not in components["NotificationSettings"]["properties"]
    assert "webhook_secret" in components["NotificationSettingsRequest"]["properties"]
    assert "429" in schema["paths"]["/api/notification-settings/{id}/test/"]["post"]["responses"]
