"""Webhook SSRF (issue 11, M2): a tenant's webhook URL cannot make the panel call, or read,
its internal services.

The name is resolved once and the request goes to exactly the vetted address, so a DNS answer
that changes between the check and the connect (rebinding) leads nowhere; the IPv6 forms that
reach IPv4 space are refused; only ports 80/443; failed deliveries keep a status code and a
generic reason, never the receiver's body. Real HTTP(S) servers on 127.0.0.x stand in for the
receiver and for the internal service; a resolver stands in for the attacker's DNS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from notifications.models import NotificationDelivery, NotificationPreference
from notifications.services import notification_deliver
from notifications.transports import webhook_address_refusal, webhook_target
from panel.notices import notify
from tests.support.receivers import free_port

pytestmark = pytest.mark.django_db

SECRET = "s3cret-webhook-signing-key"
INTERNAL_BODY = b"INTERNAL-ONLY root:x:0:0 db-password=hunter2"


class Server:
    """A real HTTP(S) server on one loopback address that records requests and answers
    ``status`` with ``body``; ``sni`` holds the server names TLS clients asked for."""

    def __init__(
        self, address: str, port: int, *, status: int = 204, body: bytes = b"", tls: Any = None
    ) -> None:
        self.address, self.port, self.status, self.body = address, port, status, body
        self.requests: list[dict[str, Any]] = []
        self.sni: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[Any]:
    started: list[Server] = []

    def start(address: str, port: int, **kwargs: Any) -> Server:
        server = Server(address, port, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class RebindingResolver:
    """The attacker's DNS: ``name`` answers ``first`` once (when the panel checks it) and
    ``then`` ever after (when a careless client would resolve it again to connect). Address
    literals resolve to themselves, as with the real resolver."""

    def __init__(self, name: str, first: str, then: str) -> None:
        self.name, self.first, self.then = name, first, then
        self.lookups: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, *a: Any, **k: Any):
        host = host.decode() if isinstance(host, bytes) else host
        if host != self.name:
            ipaddress.ip_address(host)  # only the attacker's name and literals are expected
            return self.real(host, port, family, type, *a, **k)
        self.lookups.append(host)
        answer = self.first if len(self.lookups) == 1 else self.then
        fam = socket.AF_INET6 if ":" in answer else socket.AF_INET
        sockaddr = (answer, int(port), 0, 0) if fam == socket.AF_INET6 else (answer, int(port))
        return [(fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]


@pytest.fixture
def strict(settings) -> Any:
    """Production rules: no private-address escape hatch, ports 80/443."""
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = False
    settings.PANEL_WEBHOOK_ALLOWED_NETWORKS = []
    settings.PANEL_WEBHOOK_PORTS = [80, 443]
    settings.PANEL_WEBHOOK_TIMEOUT = 5.0
    return settings


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("notifications.services.notification_enqueue", lambda *a, **k: None)


def webhook_delivery(tenant, url: str) -> NotificationDelivery:
    """A tenant whose webhook is ``url`` (saved directly: the check at save time is beside
    the point here) and one pending webhook delivery to it."""
    NotificationPreference.objects.update_or_create(
        tenant=tenant,
        defaults={
            "email_enabled": False,
            "webhook_enabled": True,
            "webhook_url": url,
            "webhook_secret": SECRET,
            "events": ["operation.failed"],
        },
    )
    notify(
        event="operation.failed",
        tenant=tenant,
        obj=tenant,
        dedupe_key=f"ssrf:{url}",
        subject="probe",
        body="probe",
        url="/",
    )
    return NotificationDelivery.objects.get(channel="webhook", destination=url)


# --- rebinding ------------------------------------------------------------------------------


def test_a_rebinding_name_is_called_at_the_vetted_address_not_at_its_new_answer(
    strict, acme, servers, monkeypatch
):
    """The name answers an allowed address (127.0.0.2, the "public" receiver) when checked
    and 127.0.0.1 (an internal service) afterwards: the POST reaches the vetted address, with
    the name in the Host header, and the internal service sees nothing."""
    port = free_port()
    strict.PANEL_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    strict.PANEL_WEBHOOK_PORTS = [port]
    receiver = servers("127.0.0.2", port)
    internal = servers("127.0.0.1", port, status=200, body=INTERNAL_BODY)
    resolver = RebindingResolver("hooks.rebind.test", first="127.0.0.2", then="127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    delivery = webhook_delivery(acme, f"http://hooks.rebind.test:{port}/hook?x=1")

    assert notification_deliver(delivery.pk) == "delivered"

    assert internal.requests == []
    assert [r["path"] for r in receiver.requests] == ["/hook?x=1"]
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.rebind.test:{port}"
    assert resolver.lookups == ["hooks.rebind.test"]  # resolved once, never again to connect


def test_a_name_that_answered_a_public_address_is_connected_to_that_address_only(
    strict, acme, servers, monkeypatch
):
    """Without any allow-list: checked as 93.184.216.34, then rebound to 127.0.0.1. The one
    connection attempt is to 93.184.216.34:443 (refused here, nothing leaves the machine),
    never to loopback, where an internal service listens."""
    internal = servers("127.0.0.1", free_port(), status=200, body=INTERNAL_BODY)
    resolver = RebindingResolver("hooks.example.com", first="93.184.216.34", then="127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    connects: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        connects.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("urllib3.util.connection.create_connection", refuse)
    delivery = webhook_delivery(acme, "https://hooks.example.com/hook")

    assert notification_deliver(delivery.pk) == "retrying"

    assert connects == [("93.184.216.34", 443)]
    assert internal.requests == []
    delivery.refresh_from_db()
    assert delivery.last_error == "Could not reach the receiver: Connection refused."


def test_a_name_that_resolves_to_loopback_at_send_time_is_refused_without_a_connection(
    strict, acme, servers, monkeypatch
):
    """Saved while it pointed at a public address; at delivery it points at 127.0.0.1: the
    delivery is refused for good and nothing connects to the internal service."""
    port = free_port()
    strict.PANEL_WEBHOOK_PORTS = [port]
    internal = servers("127.0.0.1", port, status=200, body=INTERNAL_BODY)
    resolver = RebindingResolver("hooks.example.com", first="127.0.0.1", then="127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    delivery = webhook_delivery(acme, f"http://hooks.example.com:{port}/")

    assert notification_deliver(delivery.pk) == "failed"

    assert internal.requests == []
    delivery.refresh_from_db()
    assert "private or local address" in delivery.last_error


# --- internal addresses and bodies ----------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.3"])
def test_internal_addresses_are_refused_and_nothing_reaches_them(strict, acme, servers, address):
    port = free_port()
    strict.PANEL_WEBHOOK_PORTS = [port]  # the address, not the port, is what is refused
    internal = servers(address, port, status=500, body=INTERNAL_BODY)
    delivery = webhook_delivery(acme, f"http://{address}:{port}/admin")

    assert notification_deliver(delivery.pk) == "failed"

    assert internal.requests == []
    delivery.refresh_from_db()
    assert "private or local address" in delivery.last_error
    assert b"INTERNAL" not in delivery.last_error.encode()


def test_a_failed_delivery_keeps_the_status_code_but_never_the_response_body(
    strict, acme, alice, servers
):
    """Even where the request is allowed to go (an allow-listed receiver answering 500 with
    internal data), neither the database nor the tenant's delivery log holds the body."""
    port = free_port()
    strict.PANEL_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.3/32"]
    strict.PANEL_WEBHOOK_PORTS = [port]
    receiver = servers("127.0.0.3", port, status=500, body=INTERNAL_BODY)
    delivery = webhook_delivery(acme, f"http://127.0.0.3:{port}/hook")

    assert notification_deliver(delivery.pk) == "retrying"

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.response_code == 500
    assert delivery.last_error == "The receiver answered HTTP 500."
    client = Client()
    client.force_login(alice)
    page = client.get(reverse("notifications:notification_deliveries"), {"tenant": str(acme.pk)})
    assert page.status_code == 200
    assert b"HTTP 500" in page.content and b"INTERNAL" not in page.content


def test_a_redirect_is_not_followed_and_fails_for_good(strict, acme, servers):
    port = free_port()
    strict.PANEL_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    strict.PANEL_WEBHOOK_PORTS = [port]
    servers("127.0.0.2", port, status=302, body=b"")
    internal = servers("127.0.0.1", port, status=200, body=INTERNAL_BODY)
    delivery = webhook_delivery(acme, f"http://127.0.0.2:{port}/hook")

    assert notification_deliver(delivery.pk) == "failed"

    assert internal.requests == []
    delivery.refresh_from_db()
    assert delivery.last_error == "The receiver answered HTTP 302; redirects are not followed."


# --- refused IPv6 forms, mixed answers, ports -------------------------------------------------

# Each embeds (or leads to) an IPv4 address, most of them a public one, which Python's
# is_global alone lets through.
REFUSED_IPV6 = {
    "64:ff9b::7f00:1": "NAT64",  # NAT64 of 127.0.0.1 (is_global is True on 3.11)
    "64:ff9b::808:808": "NAT64",  # NAT64 of 8.8.8.8
    "64:ff9b:1::a00:1": "NAT64",  # local-use NAT64 (RFC 8215)
    "2002:7f00:1::": "6to4",  # 6to4 of 127.0.0.1 (is_global is True on 3.11)
    "2002:808:808::1": "6to4",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "",  # Teredo
    "::ffff:127.0.0.1": "",  # IPv4-mapped
    "::ffff:8.8.8.8": "",  # IPv4-mapped public
    "::127.0.0.1": "",  # IPv4-compatible (is_global is True on 3.11)
    "::8.8.8.8": "",  # IPv4-compatible public
    "::1": "",
    "::": "",
}


@pytest.mark.parametrize("address", sorted(REFUSED_IPV6))
def test_ipv6_forms_that_reach_ipv4_are_refused(strict, address):
    assert webhook_address_refusal(ipaddress.ip_address(address)) is not None
    with pytest.raises(ValidationError, match="webhooks go to public addresses only") as exc:
        webhook_target(f"https://[{address}]/hook")
    assert REFUSED_IPV6[address] in str(exc.value)


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "2002:7f00:1::", "::ffff:127.0.0.1"])
def test_a_name_resolving_to_a_refused_ipv6_form_is_refused(strict, monkeypatch, address):
    monkeypatch.setattr(
        socket, "getaddrinfo", RebindingResolver("v6.example.com", address, address)
    )
    with pytest.raises(ValidationError, match="public addresses only"):
        webhook_target("https://v6.example.com/hook")


def test_public_addresses_pass(strict):
    for address in ("93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"):
        assert webhook_address_refusal(ipaddress.ip_address(address)) is None


def test_a_name_with_one_internal_answer_among_public_ones_is_refused(strict, monkeypatch):
    def both(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", both)
    with pytest.raises(ValidationError, match=r"private or local address \(10\.0\.0\.5\)"):
        webhook_target("https://mixed.example.com/hook")


@pytest.mark.parametrize("url", ["https://93.184.216.34:22/", "http://93.184.216.34:6379/"])
def test_ports_other_than_80_and_443_are_refused(strict, url):
    with pytest.raises(ValidationError, match="port 80 or 443 only"):
        webhook_target(url)


def test_a_tenant_admin_cannot_save_an_internal_webhook_through_the_panel(strict, acme, alice):
    client = Client()
    client.force_login(alice)
    for url in ("http://[64:ff9b::7f00:1]/", "http://[::ffff:169.254.169.254]/", "http://[::1]/"):
        response = client.post(
            reverse("notifications:notification_settings"),
            {
                "tenant": str(acme.pk),
                "email_enabled": "on",
                "recipients": "ops@acme.example",
                "events": ["operation.failed"],
                "webhook_enabled": "on",
                "webhook_url": url,
                "webhook_secret": SECRET,
            },
        )
        assert response.status_code == 400, url
        assert b"webhooks go to public addresses only" in response.content
    assert not NotificationPreference.objects.filter(tenant=acme).exists()


# --- TLS: SNI and certificate checked for the name, connection to the vetted address --------


def _certificates(tmp: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A CA (written to ``tmp``) and a server context whose certificate names ``name``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "server.pem")
    return tmp / "ca.pem", context


@pytest.mark.parametrize(
    ("cert_name", "outcome"), [("hooks.tls.test", "delivered"), ("other.tls.test", "retrying")]
)
def test_https_sends_sni_and_checks_the_certificate_for_the_name(
    strict, acme, servers, monkeypatch, tmp_path, cert_name, outcome
):
    port = free_port()
    ca, context = _certificates(tmp_path, cert_name)
    strict.PANEL_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.4/32"]
    strict.PANEL_WEBHOOK_PORTS = [port]
    strict.PANEL_WEBHOOK_CA_BUNDLE = str(ca)
    receiver = servers("127.0.0.4", port, tls=context)
    monkeypatch.setattr(
        socket, "getaddrinfo", RebindingResolver("hooks.tls.test", "127.0.0.4", "127.0.0.1")
    )
    delivery = webhook_delivery(acme, f"https://hooks.tls.test:{port}/hook")

    assert notification_deliver(delivery.pk) == outcome

    assert receiver.sni == ["hooks.tls.test"]
    delivery.refresh_from_db()
    if outcome == "delivered":
        assert receiver.requests[0]["headers"]["Host"] == f"hooks.tls.test:{port}"
    else:
        assert receiver.requests == []
        assert delivery.last_error == (
            "TLS failed: the receiver's certificate is not valid for hooks.tls.test."
        )
