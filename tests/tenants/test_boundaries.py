"""Tenant boundaries of issue 11's low items, through the real API and pages: CSV exports do not
run formulas, adding members does not reveal which usernames exist, support reads but does not
change members or notification settings, test notifications are throttled, and token names
refuse control characters."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from notifications.models import NotificationEvent, NotificationPreference
from tenants.models import ApiToken, AuditEvent, Membership

pytestmark = pytest.mark.django_db


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- CSV formula injection ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ['=HYPERLINK("https://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)"]
)
def test_a_token_name_that_is_a_formula_is_exported_as_text(api, alice, acme, name):
    response = api(alice).post(
        "/api/tokens/", {"name": name, "tenant": str(acme.pk)}, format="json"
    )
    assert response.status_code == 201
    export = logged_in(alice).get(reverse("audit:export"))
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    targets = [row[8] for row in rows[1:] if row[5] == "token.create"]
    assert targets and all(t.startswith("'" + name) for t in targets)
    # No cell of the export starts with a formula character.
    assert not [c for row in rows[1:] for c in row if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_the_api_export_neutralises_formulas_too(api, alice, acme):
    api(alice).post(
        "/api/tokens/", {"name": "=cmd|' /C calc'!A0", "tenant": str(acme.pk)}, format="json"
    )
    response = api(alice).get("/api/audit-events/export/")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    assert "'=cmd|" in text and ",=cmd" not in text


# --- membership invitations -----------------------------------------------------------------


@pytest.fixture
def dave(db) -> User:
    return User.objects.create_user("dave", "dave@example.com", "pw-dave-123456")


@pytest.fixture
def gone(db) -> User:
    return User.objects.create_user("gone", "gone@example.com", "pw-gone-123456", is_active=False)


def test_an_unknown_and_an_unaddable_username_get_the_same_answer(api, alice, pat, acme, gone):
    """Platform admins add accounts by username (staff included); an unknown and an inactive
    one get the same answer."""
    client = api(pat)
    answers = {}
    for username in ("nobody-at-all", "gone"):
        response = client.post(
            "/api/memberships/", {"tenant": str(acme.pk), "user": username}, format="json"
        )
        answers[username] = (response.status_code, response.json())
    assert len({repr(a) for a in answers.values()}) == 1, answers
    status, body = answers["nobody-at-all"]
    assert status == 400 and body["user"] == [
        "No user with this username can be added. Check the spelling, or ask them to sign up."
    ]
    assert not Membership.objects.filter(user__username="gone").exists()


def test_a_tenant_admin_invites_by_email_instead_of_adding_a_username(api, alice, acme, dave):
    """Adding by username would tell a tenant admin which usernames exist (issue 17)."""
    response = api(alice).post(
        "/api/memberships/",
        {"tenant": str(acme.pk), "user": "dave", "role": "admin"},
        format="json",
    )
    assert response.status_code == 403 and "/api/invitations/" in response.json()["detail"]
    assert not Membership.objects.filter(user=dave).exists()


def test_support_cannot_add_or_remove_members_of_any_tenant(api, sam, alice, globex, acme, dave):
    client = api(sam)
    response = client.post(
        "/api/memberships/",
        {"tenant": str(globex.pk), "user": "dave", "role": "admin"},
        format="json",
    )
    assert response.status_code == 400 and "tenant" in response.json()
    alices = Membership.objects.get(user=alice, tenant=acme)
    assert client.get(f"/api/memberships/{alices.pk}/").status_code == 200  # support reads
    assert client.delete(f"/api/memberships/{alices.pk}/").status_code == 403
    assert Membership.objects.filter(pk=alices.pk).exists()
    assert not Membership.objects.filter(user=dave).exists()


def test_a_platform_admin_may_add_members(api, pat, globex, dave):
    response = api(pat).post(
        "/api/memberships/", {"tenant": str(globex.pk), "user": "dave"}, format="json"
    )
    assert response.status_code == 201


# --- support and notification settings ------------------------------------------------------


def test_support_reads_but_cannot_change_a_tenants_webhook_or_send_tests(sam, acme):
    client = logged_in(sam)
    url = reverse("notifications:notification_settings")
    page = client.get(url, {"tenant": str(acme.pk)})
    assert page.status_code == 200 and b"notifications-read-only" in page.content
    assert b'id="notification-form"' not in page.content
    response = client.post(
        url,
        {
            "tenant": str(acme.pk),
            "webhook_enabled": "on",
            "webhook_url": "https://93.184.216.34/h",
            "webhook_secret": "s3cret-webhook-signing-key",
        },
    )
    assert response.status_code == 403
    test = client.post(reverse("notifications:notification_test"), {"tenant": str(acme.pk)})
    assert test.status_code == 403
    assert not NotificationEvent.objects.exists()

    assert not NotificationPreference.objects.filter(tenant=acme).exists()


# --- throttled test notifications -----------------------------------------------------------


def test_test_notifications_are_throttled_per_tenant(alice, acme, settings, monkeypatch):
    monkeypatch.setattr("notifications.services.notification_enqueue", lambda *a, **k: None)
    settings.PANEL_NOTIFICATION_TESTS_PER_HOUR = 3
    client = logged_in(alice)
    url = reverse("notifications:notification_test")
    statuses = [client.post(url, {"tenant": str(acme.pk)}).status_code for _ in range(5)]
    assert statuses == [302, 302, 302, 429, 429]
    refused = client.post(url, {"tenant": str(acme.pk)})
    assert int(refused["Retry-After"]) > 3000
    assert b"At most 3 test notifications per hour" in refused.content
    assert NotificationEvent.objects.filter(event="test", tenant=acme).count() == 3
    assert AuditEvent.objects.filter(action="notifications.test").count() == 3


# --- token names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "ci\ndeploys",
        "ci\rdeploys",
        "ci\tdeploys",
        "nul\x00",
        "bell\x07",
        "del\x7f",
        "line\u2028sep",
        "rtl\u202eexe.txt",
    ],
)
def test_token_names_with_control_characters_are_refused_with_a_field_message(
    api, alice, acme, name
):
    response = api(alice).post(
        "/api/tokens/", {"name": name, "tenant": str(acme.pk)}, format="json"
    )
    assert response.status_code == 400
    assert "Control characters (newlines, tabs, ...) are refused." in response.json()["name"]
    page = logged_in(alice).post(
        reverse("tenants:token_list"),
        {
            "token-name": name,
            "token-scope": "read",
            "token-tenant": str(acme.pk),
        },
    )
    assert page.status_code == 200 and b"Control characters" in page.content
    assert not ApiToken.objects.exists()


def test_an_ordinary_token_name_is_accepted(api, alice, acme):
    response = api(alice).post(
        "/api/tokens/",
        {"name": "CI deploys (prod) – ünïcode", "tenant": str(acme.pk)},
        format="json",
    )
    assert response.status_code == 201
