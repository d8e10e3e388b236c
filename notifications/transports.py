"""The one home of notifications' outbound traffic: email over SMTP and signed webhooks over HTTP.

Email: one message per delivery through Django's mail backend. Only what SMTP and the network
raise (``smtplib.SMTPException``, ``OSError``) is a retryable :class:`DeliveryError`; anything
else is a bug, and the delivery fails at once (the caller logs it) instead of being retried.

Webhooks: a tenant chooses the URL, so the panel must not become a way into its own network
(SSRF). The host is resolved **once**; every address it resolves to is vetted; the request then
goes to that exact vetted address (the name is never looked up again, so a DNS answer that
changes between the check and the connect, "DNS rebinding", cannot redirect it). The ``Host``
header, TLS SNI and certificate verification still use the hostname. Each body is signed:
``X-Panel-Signature: sha256=<hex HMAC-SHA256 of the raw body with the audience's secret>``.

Refused: addresses that are not globally routable (loopback, private, link-local, shared,
reserved, multicast, unspecified), and the IPv6 forms that embed or reach an IPv4 address,
which Python's ``is_global`` lets through: NAT64, 6to4, Teredo, IPv4-mapped and
IPv4-compatible. Only ports in ``PANEL_WEBHOOK_PORTS`` (80 and 443) are called.

Settings: ``PANEL_WEBHOOK_ALLOWED_NETWORKS`` names networks that are allowed although not
global (e.g. an internal receiver); ``PANEL_WEBHOOK_ALLOW_PRIVATE`` (lab and tests only)
lifts the address and port checks altogether. Both are off by default.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import smtplib
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

import urllib3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from urllib3 import exceptions as u3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Global by Python's ``is_global`` (3.11) or easy to miss, yet they lead to IPv4 space the
# panel cannot vet (a translator or tunnel decides where they end up): always refused.
DENIED_NETWORKS: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv6Network("64:ff9b::/96"), "NAT64"),  # RFC 6052
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),  # RFC 8215
    (ipaddress.IPv6Network("2002::/16"), "6to4"),  # RFC 3056
    (ipaddress.IPv6Network("2001::/32"), "Teredo"),  # RFC 4380
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),  # RFC 4291
    (ipaddress.IPv6Network("::/96"), "IPv4-compatible"),  # RFC 4291 (deprecated), and ::1
)


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.PANEL_WEBHOOK_ALLOWED_NETWORKS]


def webhook_address_refusal(address: IPAddress) -> str | None:
    """Why the panel must not call ``address`` (None: it may)."""
    if any(address in net for net in _allowed_networks() if net.version == address.version):
        return None
    if address.is_loopback or address.is_unspecified:
        return "a private or local address"
    if address.version == 6:
        for net, name in DENIED_NETWORKS:
            if address in net:
                return f"an IPv6 address that embeds IPv4 ({name})"
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "a private or local address"
    return None


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook URL taken apart, with the one vetted address the request is sent to."""

    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (in the resolver's order), looked up once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


def webhook_target(url: str) -> WebhookTarget:
    """Check ``url`` and resolve its host once; raises ValidationError with the reason.

    Every address the name resolves to must pass (one bad answer refuses the URL), so a name
    with a public and an internal address cannot be used either.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Use an http:// or https:// URL.")
    if parts.username or parts.password:
        raise ValidationError("Put credentials in the shared secret, not in the URL.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationError("The port of this URL is not a number from 1 to 65535.") from exc
    anything = bool(settings.PANEL_WEBHOOK_ALLOW_PRIVATE)
    ports = [int(p) for p in settings.PANEL_WEBHOOK_PORTS]
    if not anything and port not in ports:
        raise ValidationError(
            f"Webhooks go to port {' or '.join(str(p) for p in ports)} only, not {port}."
        )
    host = parts.hostname
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError, ValueError) as exc:
        raise ValidationError(f"{host} cannot be resolved.") from exc
    if not addresses:
        raise ValidationError(f"{host} cannot be resolved.")
    if not anything:
        for address in addresses:
            why = webhook_address_refusal(address)
            if why:
                raise ValidationError(
                    f"{host} points to {why} ({address}); webhooks go to public addresses only."
                )
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return WebhookTarget(parts.scheme, host, port, path, str(addresses[0]))


class WebhookError(Exception):
    """The call failed; the message is generic (no response body, no internal detail)."""

    def __init__(self, message: str, *, code: int | None = None, retry: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retry = retry


def _pool(target: WebhookTarget, timeout: float) -> urllib3.HTTPConnectionPool:
    """A connection pool to the vetted address itself, never to the name."""
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if target.scheme == "http":
        return urllib3.HTTPConnectionPool(
            target.address, target.port, timeout=limits, retries=False, maxsize=1
        )
    return urllib3.HTTPSConnectionPool(
        target.address,
        target.port,
        timeout=limits,
        retries=False,
        maxsize=1,
        cert_reqs="CERT_REQUIRED",
        ca_certs=settings.PANEL_WEBHOOK_CA_BUNDLE or None,
        # SNI and the certificate check are for the name in the URL, not the address.
        server_hostname=target.host,
        assert_hostname=target.host,
    )


def _failure(exc: Exception, target: WebhookTarget) -> WebhookError:
    """A generic, tenant-safe reason for a failed call."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, u3.SSLError | ssl.SSLError) for e in chain):
        return WebhookError(
            f"TLS failed: the receiver's certificate is not valid for {target.host}."
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return WebhookError("Could not reach the receiver: Connection refused.")
    if any(isinstance(e, u3.TimeoutError | TimeoutError | socket.timeout) for e in chain):
        return WebhookError("The receiver did not answer in time.")
    return WebhookError("Could not reach the receiver: the connection failed.")


def webhook_post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``url`` through its vetted address; returns the 2xx status.

    Raises ValidationError when the URL may not be called (now: the name may have changed
    since it was saved) and :class:`WebhookError` when the call failed. The response body is
    never read: a tenant must not use the panel to read what its internal services answer.
    """
    target = webhook_target(url)
    pool = _pool(target, timeout)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
    except (u3.HTTPError, OSError) as exc:
        raise _failure(exc, target) from exc
    try:
        status = response.status
    finally:
        response.close()
        pool.close()
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        # A redirect could point anywhere (inside our network): a failure, not followed.
        raise WebhookError(
            f"The receiver answered HTTP {status}; redirects are not followed.",
            code=status,
            retry=False,
        )
    raise WebhookError(
        f"The receiver answered HTTP {status}.",
        code=status,
        retry=status >= 500 or status in (408, 429),
    )


SIGNATURE_HEADER = "X-Panel-Signature"
USER_AGENT = "atlassian-panel-webhooks/1"
# Seconds an SMTP conversation may stall before the attempt counts as failed.
SMTP_TIMEOUT = 20


class DeliveryError(Exception):
    """A delivery attempt failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, code: int | None = None, retry: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retry = retry


def email_send(*, subject: str, body: str, to: list[str], headers: dict[str, str]) -> None:
    """Send one email; raises a retryable :class:`DeliveryError` when SMTP or the network fail.

    Other exceptions propagate: a programming error is not made better by trying again.
    """
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers=headers,
        connection=get_connection(fail_silently=False, timeout=SMTP_TIMEOUT),
    )
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        # OSError covers refused and reset connections, timeouts and name resolution.
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


def webhook_signature(secret: str, body: bytes) -> str:
    """The value of ``X-Panel-Signature`` for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_send(*, url: str, body: bytes, secret: str, headers: dict[str, str]) -> int:
    """POST a signed ``body`` to ``url``; returns the 2xx status or raises DeliveryError."""
    signed = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
        SIGNATURE_HEADER: webhook_signature(secret, body),
    }
    try:
        # Resolved and vetted once more now (the name may point elsewhere since it was saved),
        # and sent to exactly the address that was vetted.
        return webhook_post(
            url, body=body, headers=signed, timeout=float(settings.PANEL_WEBHOOK_TIMEOUT)
        )
    except ValidationError as exc:
        raise DeliveryError(" ".join(exc.messages), retry=False) from exc
    except WebhookError as exc:
        # Only a status code or a generic reason: never the receiver's response body.
        raise DeliveryError(str(exc), code=exc.code, retry=exc.retry) from exc
