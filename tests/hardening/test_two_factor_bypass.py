"""The second factor cannot be side-stepped with a password alone (security review C1).

The attack: with only a staff user's password, log in (the session is sent to the code
step), open the two-factor page, enrol a new authenticator there and post its code. Before
the fix that made the session verified as platform admin and deleted the owner's device.
These tests drive it over real HTTP against the live panel (``requests``) and through the
full middleware stack (Django's test client), and check the legitimate paths: replacing a
device from a verified session with the password, recovery codes, and a platform admin's
audited reset.
"""

from __future__ import annotations

import base64
import re
import time

import pytest
import requests
from django.contrib.sessions.models import Session
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken

from tenants.models import AuditEvent, SealedTOTPDevice
from tests.support.factories import PASSWORD
from tests.support.otp import staff_otp_device, totp_now

SECRET_RE = re.compile(rb'data-testid="otp-secret">([A-Z2-7]+)<')


@pytest.fixture(autouse=True)
def _require_staff_2fa(settings):
    settings.PANEL_STAFF_REQUIRE_2FA = True


def _totp_next(secret: str) -> str:
    """The code of the next 30 s step: django-otp accepts one step of drift and refuses a
    code already used (the one that confirmed the device a moment ago)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, step=30, t0=0, digits=6)
    totp.time = time.time() + 30
    return f"{totp.token():06d}"


def _csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, allow_redirects=False)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {url} ({page.status_code})"
    return match.group(1)


def _http_login(base: str, username: str, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    token = _csrf(session, f"{base}/login/")
    answer = session.post(
        f"{base}/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/login/"},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:300]
    return session


def _client_login(username: str) -> Client:
    client = Client()
    answer = client.post(
        "/login/", {"username": username, "password": PASSWORD}, REMOTE_ADDR="127.0.0.1"
    )
    assert answer.status_code == 302
    return client


def _verify(client: Client, secret: str) -> None:
    answer = client.post("/login/verify/", {"token": totp_now(secret), "next": "/hosts/"})
    assert answer.status_code == 302 and answer["Location"] == "/hosts/"


def test_the_enrolment_attack_over_http_fails_and_the_owners_device_still_works(live_server, pat):
    """Password only -> /account/two-factor/ -> enrol -> post the code: refused at each step."""
    owner_secret = staff_otp_device(pat)
    owner_device = SealedTOTPDevice.objects.get(user=pat)
    base = live_server.url
    attacker = _http_login(base, "pat")

    # The set-up page does not open for a session that still owes its code.
    page = attacker.get(f"{base}/account/two-factor/", allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].startswith("/login/verify/")
    # Posting a code for a device of the attacker's own choosing does nothing either: make
    # an unconfirmed device the way the old page did and post its current code.
    planted = SealedTOTPDevice.objects.create(user=pat, name="attacker", confirmed=False)
    planted_secret = base64.b32encode(planted.bin_key).decode()
    token = attacker.cookies.get("csrftoken")
    posted = attacker.post(
        f"{base}/account/two-factor/",
        data={"token": totp_now(planted_secret), "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/account/two-factor/"},
        allow_redirects=False,
    )
    assert posted.status_code == 302 and posted.headers["Location"].startswith("/login/verify/")
    planted.refresh_from_db()
    assert planted.confirmed is False
    # Nothing a platform admin sees opened up, over the pages or the session API.
    hosts = attacker.get(f"{base}/hosts/", allow_redirects=False)
    assert hosts.status_code == 302 and hosts.headers["Location"].startswith("/login/verify/")
    assert attacker.get(f"{base}/api/hosts/", allow_redirects=False).status_code == 403
    # Nor do the other two-factor actions.
    for path in ("recovery-codes/", "disable/", "reset/"):
        answer = attacker.post(
            f"{base}/account/two-factor/{path}",
            data={
                "password": PASSWORD,
                "csrfmiddlewaretoken": token,
                "username": "sam",
                "reason": "x",
            },
            headers={"Referer": f"{base}/account/two-factor/"},
            allow_redirects=False,
        )
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith("/login/verify/"), path

    # The owner's device is untouched and still logs the owner in.
    assert SealedTOTPDevice.objects.filter(user=pat, confirmed=True).get().pk == owner_device.pk
    owner = _http_login(base, "pat")
    verify_token = _csrf(owner, f"{base}/login/verify/?next=/hosts/")
    done = owner.post(
        f"{base}/login/verify/",
        data={
            "token": totp_now(owner_secret),
            "next": "/hosts/",
            "csrfmiddlewaretoken": verify_token,
        },
        headers={"Referer": f"{base}/login/verify/"},
        allow_redirects=False,
    )
    assert done.status_code == 302 and done.headers["Location"] == "/hosts/"
    assert owner.get(f"{base}/hosts/", allow_redirects=False).status_code == 200


def test_a_first_device_may_be_set_up_from_a_password_only_session(sam, db):
    client = _client_login("sam")
    page = client.get("/account/two-factor/")
    assert page.status_code == 200 and b'name="password"' not in page.content
    secret = SECRET_RE.search(page.content).group(1).decode()
    done = client.post("/account/two-factor/", {"token": totp_now(secret), "next": "/hosts/"})
    assert done.status_code == 302
    assert SealedTOTPDevice.objects.filter(user=sam, confirmed=True).count() == 1
    assert AuditEvent.objects.filter(action="user.two_factor_enabled", actor=sam).exists()


def test_replacing_a_device_needs_a_verified_session_and_the_password(pat, db):
    old_secret = staff_otp_device(pat)
    old = SealedTOTPDevice.objects.get(user=pat)
    client = _client_login("pat")
    _verify(client, old_secret)
    page = client.get("/account/two-factor/")
    assert page.status_code == 200 and b'name="password"' in page.content
    new_secret = SECRET_RE.search(page.content).group(1).decode()

    wrong = client.post(
        "/account/two-factor/", {"token": totp_now(new_secret), "password": "not-it"}
    )
    assert wrong.status_code == 200 and b"That is not your password" in wrong.content
    missing = client.post("/account/two-factor/", {"token": totp_now(new_secret)})
    assert missing.status_code == 200 and b"That is not your password" in missing.content
    assert SealedTOTPDevice.objects.get(user=pat, confirmed=True).pk == old.pk

    time.sleep(1.1)  # django-otp's throttle after a refused code
    done = client.post(
        "/account/two-factor/",
        {"token": totp_now(new_secret), "password": PASSWORD, "next": "/hosts/"},
    )
    assert done.status_code == 302 and done["Location"] == "/hosts/"
    device = SealedTOTPDevice.objects.get(user=pat, confirmed=True)
    assert device.pk != old.pk
    assert AuditEvent.objects.filter(action="user.two_factor_replaced", actor=pat).exists()
    # The new device logs in; the old one no longer does.
    fresh = _client_login("pat")
    assert fresh.post("/login/verify/", {"token": totp_now(old_secret)}).status_code == 200
    time.sleep(1.1)
    answer = fresh.post("/login/verify/", {"token": _totp_next(new_secret), "next": "/hosts/"})
    assert answer.status_code == 302 and answer["Location"] == "/hosts/"


def test_enrolling_ends_sessions_that_logged_in_before_the_device_existed(alice, db):
    """A customer's session from before 2FA was turned on does not keep a password-only way in."""
    early = _client_login("alice")
    assert early.get("/instances/").status_code == 200
    owner = _client_login("alice")
    secret = SECRET_RE.search(owner.get("/account/two-factor/").content).group(1).decode()
    assert owner.post("/account/two-factor/", {"token": totp_now(secret)}).status_code == 302
    answer = early.get("/instances/")
    assert answer.status_code == 302 and answer["Location"].startswith("/login/")
    assert owner.get("/instances/").status_code == 200
    assert Session.objects.count() == 1


def test_recovery_codes_log_in_once_and_let_the_owner_replace_a_lost_device(pat, db):
    secret = staff_otp_device(pat)
    client = _client_login("pat")
    # Recovery codes need a verified session and the password.
    refused = client.post("/account/two-factor/recovery-codes/", {"password": PASSWORD})
    assert refused["Location"].startswith("/login/verify/")
    _verify(client, secret)
    assert (
        client.post("/account/two-factor/recovery-codes/", {"password": "wrong"})["Location"]
        == "/account/two-factor/"
    )
    assert not StaticToken.objects.filter(device__user=pat).exists()
    shown = client.post("/account/two-factor/recovery-codes/", {"password": PASSWORD})
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    codes = re.findall(rb"<li><code>([a-z0-9]+)</code></li>", shown.content)
    assert len(codes) == 10
    code = codes[0].decode()

    # The phone is lost: a recovery code stands in for it, once.
    lost = _client_login("pat")
    used = lost.post("/login/verify/", {"token": code, "next": "/hosts/"})
    assert used.status_code == 302 and used["Location"] == "/hosts/"
    assert lost.get("/hosts/").status_code == 200
    assert AuditEvent.objects.filter(action="user.recovery_code_used").exists()
    again = _client_login("pat")
    assert again.post("/login/verify/", {"token": code}).status_code == 200
    # From the recovery-code session (verified) the owner moves to a new device.
    new_secret = SECRET_RE.search(lost.get("/account/two-factor/").content).group(1).decode()
    done = lost.post("/account/two-factor/", {"token": totp_now(new_secret), "password": PASSWORD})
    assert done.status_code == 302
    assert SealedTOTPDevice.objects.filter(user=pat, confirmed=True).count() == 1


def test_a_platform_admin_resets_a_lost_device_audited(pat, sam, db):
    pat_secret = staff_otp_device(pat)
    staff_otp_device(sam)
    victim_session = _client_login("sam")
    admin = _client_login("pat")
    # Unverified, the admin cannot reset anyone.
    assert admin.post("/account/two-factor/reset/", {"username": "sam", "reason": "lost phone"})[
        "Location"
    ].startswith("/login/verify/")
    assert SealedTOTPDevice.objects.filter(user=sam).exists()
    _verify(admin, pat_secret)
    unknown = admin.post(
        "/account/two-factor/reset/", {"username": "nobody", "reason": "x"}, follow=True
    )
    assert b"No active user has that username" in unknown.content
    done = admin.post(
        "/account/two-factor/reset/",
        {"username": "sam", "reason": "lost phone, checked by video call"},
        follow=True,
    )
    assert b"was reset" in done.content
    assert not SealedTOTPDevice.objects.filter(user=sam).exists()
    event = AuditEvent.objects.get(action="user.two_factor_reset")
    assert event.actor == pat and "video call" in str(event.changes)
    # Sam's old session is gone; the next login must set a device up again.
    assert victim_session.get("/instances/")["Location"].startswith("/login/")
    fresh = _client_login("sam")
    assert fresh.get("/instances/")["Location"].startswith("/account/two-factor/")


def test_support_staff_cannot_reset_anyone(sam, alice, db):
    secret = staff_otp_device(sam)
    staff_otp_device(alice)
    client = _client_login("sam")
    _verify(client, secret)
    answer = client.post("/account/two-factor/reset/", {"username": "alice", "reason": "x"})
    assert answer.status_code == 403
    assert SealedTOTPDevice.objects.filter(user=alice).exists()


def test_a_customer_turns_two_factor_off_only_with_a_verified_session_and_password(alice, db):
    secret = staff_otp_device(alice)
    client = _client_login("alice")
    assert client.post("/account/two-factor/disable/", {"password": PASSWORD})[
        "Location"
    ].startswith("/login/verify/")
    client.post("/login/verify/", {"token": totp_now(secret)})
    client.post("/account/two-factor/disable/", {"password": "wrong"})
    assert SealedTOTPDevice.objects.filter(user=alice).exists()
    client.post("/account/two-factor/disable/", {"password": PASSWORD})
    assert not SealedTOTPDevice.objects.filter(user=alice).exists()
    assert AuditEvent.objects.filter(action="user.two_factor_disabled").exists()


def test_staff_cannot_turn_two_factor_off(pat, db):
    secret = staff_otp_device(pat)
    client = _client_login("pat")
    _verify(client, secret)
    client.post("/account/two-factor/disable/", {"password": PASSWORD})
    assert SealedTOTPDevice.objects.filter(user=pat, confirmed=True).exists()


@pytest.mark.parametrize("name", ["otp-recovery-codes", "otp-disable", "otp-reset"])
def test_anonymous_visitors_are_sent_to_login_and_get_is_refused(name, alice, db):
    from django.urls import reverse

    url = reverse(name)
    assert Client().post(url, {"password": PASSWORD})["Location"].startswith("/login/?next=")
    assert _client_login("alice").get(url).status_code == 405
