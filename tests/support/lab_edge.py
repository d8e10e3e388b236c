"""DNS, certificate and proxy lab fixtures (a pytest plugin, see ``tests/conftest.py``).

The lab's BIND 9 and pebble (from the lab state), a managed zone per test, pebble's root,
HTTPS requests through a lab host's proxy, a moto server speaking Route53 over real HTTP, and
an instance created through the panel with its DNS record, certificate and proxy site.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from certificates.models import DnsProviderAccount, DnsZone
from panel.access import access_for_user
from provisioning.models import AtlassianInstance
from tests.support.lab import run_operation

LAB_ZONE = "lab.example"


@pytest.fixture(scope="session")
def lab_dns(lab_state: dict[str, Any]) -> dict[str, Any]:
    """The lab's BIND 9: address, port and TSIG key."""
    if "dns" not in lab_state:
        pytest.fail("The lab state has no DNS server: run `scripts/lab up` again.", pytrace=False)
    return lab_state["dns"]


@pytest.fixture(scope="session")
def lab_acme(lab_state: dict[str, Any]) -> dict[str, Any]:
    """The lab's pebble: ACME directory, CA bundle and management API."""
    if "acme" not in lab_state:
        pytest.fail("The lab state has no ACME CA: run `scripts/lab up` again.", pytrace=False)
    return lab_state["acme"]


@pytest.fixture
def lab_settings(
    settings: Any, lab_state: dict[str, Any], lab_dns: dict[str, Any], lab_acme: dict[str, Any]
) -> Any:
    """The panel configured for the lab: pebble as CA, BIND as resolver, the lab's proxy."""
    settings.PANEL_ACME_DIRECTORY = lab_acme["directory"]
    settings.PANEL_ACME_CA_BUNDLE = lab_acme["ca_bundle"]
    settings.PANEL_ACME_BACKOFF = 0.2
    settings.PANEL_PROXY_IMAGE = lab_state.get("proxy_image", "panel-lab/proxy:bookworm")
    settings.PANEL_DNS_CHECK_NAMESERVERS = [f"{lab_dns['server']}:{lab_dns['port']}"]
    return settings


@pytest.fixture
def lab_zone(db, lab_dns) -> Callable[..., DnsZone]:
    """``lab_zone(wildcard=False)``: a zone ``<random>.lab.example`` of the lab's BIND, managed
    through RFC 2136 with the lab's TSIG key."""

    def make(*, wildcard: bool = False) -> DnsZone:
        account = DnsProviderAccount.objects.create(
            name=f"lab-bind-{secrets.token_hex(3)}",
            kind=DnsProviderAccount.Kind.RFC2136,
            config={
                "server": lab_dns["server"],
                "port": lab_dns["port"],
                "tsig_key_name": lab_dns["tsig_key_name"],
                "tsig_algorithm": lab_dns["tsig_algorithm"],
            },
            credentials={"tsig_secret": lab_dns["tsig_secret"]},
        )
        return DnsZone.objects.create(
            name=f"z{secrets.token_hex(3)}.{LAB_ZONE}",
            account=account,
            provider_zone_id=LAB_ZONE,
            default_ttl=30,
            wildcard=wildcard,
        )

    return make


@pytest.fixture(scope="session")
def pebble_root(lab_acme, tmp_path_factory) -> Path:
    """Pebble's current root certificate (from its management API), to verify against."""
    ctx = ssl.create_default_context(cafile=lab_acme["ca_bundle"])
    url = f"{lab_acme['management']}/roots/0"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310
        pem = resp.read()
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_bytes(pem)
    return path


@dataclass
class HttpsAnswer:
    status: int
    body: bytes
    headers: dict[str, str]
    serial: str
    issuer: str


def https_get(
    address: str,
    hostname: str,
    path: str,
    *,
    cafile: Path | None,
    method: str = "GET",
    body: bytes = b"",
    timeout: float = 10,
) -> HttpsAnswer:
    """``https://<hostname><path>`` with the name resolved to ``address`` (a lab host),
    verifying the certificate against ``cafile`` (None: no verification)."""
    ctx = (
        ssl.create_default_context(cafile=str(cafile))
        if cafile
        else ssl._create_unverified_context()  # noqa: S323 - placeholder certificates
    )
    with (
        socket.create_connection((address, 443), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n"
        )
        tls.sendall(request.encode() + body)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return HttpsAnswer(
        int(lines[0].split()[1]),
        payload,
        headers,
        format(cert.serial_number, "x"),
        cert.issuer.rfc4514_string(),
    )


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def http_get(address: str, hostname: str, path: str, timeout: float = 10) -> tuple[int, dict]:
    with socket.create_connection((address, 80), timeout=timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(head[0].split()[1]), {
        k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head[1:])
    }


@pytest.fixture
def cleanup_sites() -> Iterator[list[AtlassianInstance]]:
    """Instances appended here lose their proxy site and certificate files afterwards."""
    created: list[AtlassianInstance] = []
    yield created
    for inst in created:
        inst.refresh_from_db()
        if inst.host is None:
            continue
        root = f"{inst.host.data_root}/proxy"
        subprocess.run(["rm", "-f", f"{root}/conf.d/{inst.name}.conf"], capture_output=True)
        for cert in inst.certificates.all():
            subprocess.run(["rm", "-f", f"{root}/certs/{cert.pk}.pem"], capture_output=True)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[str]:
    """A real moto server (Route53 over HTTP) on 127.0.0.1; yields its endpoint URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)  # noqa: S310 - local server
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"moto_server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def lab_lookup(lab_dns: dict, name: str, rtype: str = "A") -> list[str]:
    from certificates.dns import records_resolve

    return records_resolve(name, rtype, nameservers=[f"{lab_dns['server']}:{lab_dns['port']}"])


def standin_json(answer: HttpsAnswer) -> dict:
    return json.loads(answer.body)


def outside_update(
    lab_dns: dict, name: str, rtype: str, *values: str, delete: bool = False
) -> None:
    """Change the lab's BIND directly (dnspython + TSIG), as someone outside the panel would."""
    keyring = dns.tsigkeyring.from_text({lab_dns["tsig_key_name"]: lab_dns["tsig_secret"]})
    update = dns.update.UpdateMessage(LAB_ZONE, keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
    if delete:
        update.delete(dns.name.from_text(name + "."))
    else:
        update.add(dns.name.from_text(name + "."), 300, rtype, *values)
    response = dns.query.tcp(update, lab_dns["server"], port=lab_dns["port"], timeout=10)
    assert response.rcode() == dns.rcode.NOERROR


PUBLISH_FAST = {"STANDIN_STARTUP_SECONDS": "1"}


def create_published(
    alice: Any,
    acme: Any,
    host: Any,
    name: str,
    hostname: str,
    cleanup: list[AtlassianInstance],
    sites: list[AtlassianInstance],
    **fields: Any,
) -> tuple:
    """Create instance ``name`` as Alice on ``host`` and run the creation inline (DNS record,
    certificate and proxy site included); it joins ``cleanup`` and ``sites``. Returns
    ``(operation, instance)``."""
    from provisioning.services import instance_create

    op = instance_create(
        actor=access_for_user(alice),
        tenant=acme,
        name=name,
        product=fields.pop("product", "jira-software"),
        version=fields.pop("version", "9.12.0"),
        hostname=hostname,
        host=host,
        heap_min_mb=512,
        heap_max_mb=1024,
        extra_env=PUBLISH_FAST,
        **fields,
    )
    inst = AtlassianInstance.objects.get(pk=op.instance_id)
    cleanup.append(inst)
    sites.append(inst)
    op = run_operation(op)
    inst.refresh_from_db()
    return op, inst
