"""Password reset by email: the link arrives through a real SMTP server and works once, an
unknown address gets the same answer, requests are limited, the change is audited, and staff
still need their authenticator code afterwards."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from panel.access import SUPPORT_GROUP
from tenants.models import AuditEvent
from tests.support.factories import make_user
from tests.support.otp import staff_otp_device, totp_now

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-passphrase-42"
LINK = re.compile(r"https://panel\.test(/password-reset/[^/\s]+/[^/\s]+/)")


def _ask(client: Client, email: str):
    return client.post(reverse("password_reset"), {"email": email})


def _reset_path(smtp_server) -> str:
    [mail] = smtp_server.wait_for(1)
    match = LINK.search(mail.text)
    assert match, mail.text
    return match.group(1)


def _set_password(client: Client, path: str):
    # Django's confirm view moves the token into the session and redirects to a clean URL.
    page = client.get(path, follow=True)
    assert page.status_code == 200 and b"password-reset-confirm-form" in page.content
    form_url = page.redirect_chain[-1][0]
    return client.post(
        form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True
    )


def test_the_login_page_links_to_the_reset():
    page = Client().get(reverse("login"))
    assert b'href="/password-reset/"' in page.content
    assert b"Forgot your password?" in page.content


def test_the_reset_mail_arrives_by_smtp_and_its_link_sets_a_new_password(smtp_server):
    dave = User.objects.create_user("dave", "dave@example.com", "old-passphrase-123")
    client = Client()
    response = _ask(client, "dave@example.com")
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["dave@example.com"]
    assert "Reset your password" in mail.subject
    done = _set_password(client, _reset_path(smtp_server))
    assert b"password-reset-complete" in done.content
    dave.refresh_from_db()
    assert dave.check_password(NEW_PASSWORD)
    # The confirm view does not log anyone in.
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.actor == dave and event.target_id == str(dave.pk)


def test_a_used_link_is_refused(smtp_server):
    User.objects.create_user("dave", "dave@example.com", "old-passphrase-123")
    _ask(Client(), "dave@example.com")
    path = _reset_path(smtp_server)
    _set_password(Client(), path)
    again = Client().get(path, follow=True)
    assert b"reset-link-invalid" in again.content


def test_an_unknown_address_gets_the_same_answer_and_no_mail(smtp_server):
    User.objects.create_user("dave", "dave@example.com", "old-passphrase-123")
    known = _ask(Client(), "dave@example.com")
    smtp_server.wait_for(1)
    unknown = _ask(Client(), "nobody@example.com")
    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    sent = Client().get(known["Location"])
    assert b"If an account has this address" in sent.content
    assert len(smtp_server.messages) == 1


def test_reset_requests_for_one_address_are_limited(smtp_server):
    User.objects.create_user("dave", "dave@example.com", "old-passphrase-123")
    answers = {_ask(Client(), "dave@example.com")["Location"] for _ in range(5)}
    assert answers == {reverse("password_reset_done")}
    smtp_server.wait_for(3)
    assert len(smtp_server.messages) == 3


def test_staff_still_need_their_authenticator_code_after_a_reset(smtp_server, settings):
    settings.PANEL_STAFF_REQUIRE_2FA = True
    sam = make_user("sam", SUPPORT_GROUP)
    sam.email = "sam@panel.test"
    sam.save()
    secret = staff_otp_device(sam)
    client = Client()
    _ask(client, "sam@panel.test")
    _set_password(client, _reset_path(smtp_server))
    login = client.post(reverse("login"), {"username": "sam", "password": NEW_PASSWORD})
    assert login.status_code == 302
    dashboard = client.get(reverse("dashboard"))
    assert dashboard.status_code == 302 and dashboard["Location"].startswith(reverse("otp-verify"))
    verified = client.post(reverse("otp-verify"), {"token": totp_now(secret)})
    assert verified.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200
