"""Staff must log in with a second factor; customers may turn it on; guessing is locked out."""

from __future__ import annotations

import base64
import re
import time

import pytest
from django.test import Client

from tenants.models import SealedTOTPDevice
from tests.support.factories import PASSWORD
from tests.support.otp import staff_otp_device, totp_now

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _require_staff_2fa(settings):
    settings.PANEL_STAFF_REQUIRE_2FA = True


def _login(client: Client, username: str, password: str = PASSWORD):
    return client.post(
        "/login/",
        {"username": username, "password": password},
        follow=False,
        REMOTE_ADDR="127.0.0.1",
    )


def test_support_staff_without_a_device_must_set_one_up_before_seeing_anything(sam, acme_jira):
    client = Client()
    assert _login(client, "sam").status_code == 302
    response = client.get("/instances/")
    assert response.status_code == 302 and response["Location"].startswith("/account/two-factor/")
    assert client.get("/api/instances/").status_code == 403
    page = client.get("/account/two-factor/")
    assert page.status_code == 200 and b"<svg" in page.content
    secret = re.search(rb'data-testid="otp-secret">([A-Z2-7]+)<', page.content).group(1).decode()
    wrong = client.post("/account/two-factor/", {"token": "000000"})
    assert b"not valid" in wrong.content
    time.sleep(1.1)  # django-otp refuses any code for a second after a wrong one
    done = client.post("/account/two-factor/", {"token": totp_now(secret), "next": "/instances/"})
    assert done.status_code == 302 and done["Location"] == "/instances/"
    assert SealedTOTPDevice.objects.filter(user=sam, confirmed=True).count() == 1
    assert b"acme-jira" in client.get("/instances/").content


def test_staff_with_a_device_must_enter_a_code_after_the_password(pat):
    secret = staff_otp_device(pat)
    client = Client()
    _login(client, "pat")
    response = client.get("/hosts/")
    assert response.status_code == 302 and response["Location"].startswith("/login/verify/")
    assert client.post("/login/verify/", {"token": "123456"}).status_code == 200
    assert client.get("/hosts/").status_code == 302
    time.sleep(1.1)
    ok = client.post("/login/verify/", {"token": totp_now(secret), "next": "/hosts/"})
    assert ok.status_code == 302 and ok["Location"] == "/hosts/"
    assert client.get("/hosts/").status_code == 200


def test_a_customer_may_log_in_with_a_password_alone_or_turn_two_factor_on(alice):
    client = Client()
    _login(client, "alice")
    assert client.get("/instances/").status_code == 200
    page = client.get("/account/two-factor/")
    secret = re.search(rb'data-testid="otp-secret">([A-Z2-7]+)<', page.content).group(1).decode()
    client.post("/account/two-factor/", {"token": totp_now(secret)})
    fresh = Client()
    _login(fresh, "alice")
    assert fresh.get("/instances/").status_code == 302  # now the code is required


def test_the_otp_secret_is_encrypted_at_rest(pat):
    from django.db import connection

    secret = staff_otp_device(pat)
    device = SealedTOTPDevice.objects.get(user=pat)
    assert base64.b32decode(secret).hex() == device.key  # the code sees the clear key
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM tenants_sealedtotpdevice WHERE id = %s", [device.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and device.key not in stored
    assert base64.b32decode(secret).hex() not in stored


def test_repeated_wrong_passwords_lock_the_account_out_for_that_address(alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(3):
        assert _login(client, "alice", "wrong-password").status_code in (200, 429)
    locked = _login(client, "alice")  # even the right password is refused now
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    other = Client()
    assert (
        other.post(
            "/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="127.0.0.2"
        ).status_code
        == 302
    )
