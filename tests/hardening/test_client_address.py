"""One setting decides the client's address for rate limits, login lock-out and the audit log
(security review M4): a forged X-Forwarded-For from an untrusted peer is ignored, and behind a
trusted proxy each client is counted on its own.

The HTTP tests run against the live panel over real sockets (``requests``); the peer is then
127.0.0.1, which the tests declare a trusted proxy or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from panel.clientaddr import client_address, parse_networks
from tenants.models import AuditEvent
from tests.support.factories import PASSWORD

TRUSTED = parse_networks(["127.0.0.1", "10.9.0.0/16"])


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("198.51.100.7", "203.0.113.5", "198.51.100.7"),  # untrusted peer: header ignored
        ("127.0.0.1", None, "127.0.0.1"),  # trusted peer, no header: the peer
        ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
        # The client may send its own header; the proxy appends the real address: rightmost.
        ("127.0.0.1", "1.2.3.4, 203.0.113.5", "203.0.113.5"),
        # Trusted hops are skipped from the right.
        ("127.0.0.1", "203.0.113.5, 10.9.1.2", "203.0.113.5"),
        ("127.0.0.1", "garbage, 203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "203.0.113.5, garbage", "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
        ("127.0.0.1", "::ffff:203.0.113.5", "203.0.113.5"),
    ],
)
def test_the_client_address_rule(peer, header, client):
    assert client_address(peer, header, TRUSTED) == client


def test_no_trusted_proxy_means_the_header_is_never_read():
    assert client_address("127.0.0.1", "203.0.113.5", ()) == "127.0.0.1"


def test_a_bad_trusted_proxy_setting_is_a_clear_error():
    with pytest.raises(ImproperlyConfigured, match="not-an-ip"):
        parse_networks(["127.0.0.1", "not-an-ip"])


@pytest.fixture
def ip_rate_two() -> Iterator[None]:
    cache.clear()
    SimpleRateThrottle.THROTTLE_RATES = {"token": "1000/min", "ip": "2/min"}
    yield
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    cache.clear()


def _me(base: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return requests.get(f"{base}/api/me/", headers=headers, timeout=10).status_code


def test_a_forged_forwarded_for_does_not_escape_the_rate_limit(live_server, ip_rate_two, settings):
    settings.PANEL_TRUSTED_PROXIES = []
    base = live_server.url
    codes = [_me(base, f"203.0.113.{n}") for n in range(4)]
    assert codes[:2] == [401, 401] or codes[:2] == [403, 403]
    assert codes[2:] == [429, 429]  # a new header each time changes nothing


def test_behind_a_trusted_proxy_each_client_has_its_own_rate(live_server, ip_rate_two, settings):
    settings.PANEL_TRUSTED_PROXIES = ["127.0.0.1"]
    base = live_server.url
    assert [_me(base, "203.0.113.1") for _ in range(3)][2] == 429
    assert _me(base, "203.0.113.2") != 429  # another client behind the same proxy


def _login(base: str, session: requests.Session, password: str, forwarded: str) -> int:
    page = session.get(f"{base}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return session.post(
        f"{base}/login/",
        data={"username": "alice", "password": password, "csrfmiddlewaretoken": token},
        headers={"X-Forwarded-For": forwarded, "Referer": f"{base}/login/"},
        allow_redirects=False,
        timeout=10,
    ).status_code


def test_behind_a_trusted_proxy_a_lockout_hits_only_the_guessing_client(
    live_server, alice, settings
):
    """Anyone could lock any account out when axes saw only the proxy's address."""
    settings.PANEL_TRUSTED_PROXIES = ["127.0.0.1"]
    settings.AXES_FAILURE_LIMIT = 3
    base = live_server.url
    guesser = requests.Session()
    for _ in range(3):
        _login(base, guesser, "wrong", "198.51.100.66")
    assert _login(base, guesser, PASSWORD, "198.51.100.66") == 429  # locked out
    owner = requests.Session()
    assert _login(base, owner, PASSWORD, "203.0.113.10") == 302  # the owner still logs in
    from axes.models import AccessAttempt

    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.66"}


def test_an_untrusted_peer_cannot_dodge_a_lockout_by_changing_the_header(
    live_server, alice, settings
):
    settings.PANEL_TRUSTED_PROXIES = []
    settings.AXES_FAILURE_LIMIT = 3
    base = live_server.url
    guesser = requests.Session()
    for n in range(3):
        _login(base, guesser, "wrong", f"198.51.100.{n}")
    assert _login(base, guesser, PASSWORD, "198.51.100.99") == 429


@pytest.mark.django_db
def test_the_audit_log_records_the_client_behind_a_trusted_proxy(alice, acme, api, settings):
    settings.PANEL_TRUSTED_PROXIES = ["10.9.0.0/16"]
    client = api(alice)
    answer = client.post(
        "/api/tokens/",
        {"name": "audited", "scope": "read", "tenant": str(acme.pk)},
        format="json",
        REMOTE_ADDR="10.9.0.4",
        HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.77",
    )
    assert answer.status_code == 201, answer.content
    event = AuditEvent.objects.latest("created_at")
    assert event.source_ip == "203.0.113.77"
    forged = client.post(
        "/api/tokens/",
        {"name": "audited2", "scope": "read", "tenant": str(acme.pk)},
        format="json",
        REMOTE_ADDR="198.51.100.5",
        HTTP_X_FORWARDED_FOR="203.0.113.77",
    )
    assert forged.status_code == 201
    assert AuditEvent.objects.latest("created_at").source_ip == "198.51.100.5"
