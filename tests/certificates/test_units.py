"""Rendering, renewal timing, the weekly order budget, transient ACME errors and hostname
policy: no lab needed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from acme import messages
from django.core.exceptions import ValidationError
from django.utils import timezone

from certificates import proxy, services
from certificates.acme_client import AcmeError, AcmeSession, private_key_generate
from certificates.models import Certificate, CertificateOrder, DnsProviderAccount, DnsZone
from certificates.services import issuance
from panel.operations import OperationFailed
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


class Steps:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, message: str, **kw) -> None:
        self.lines.append(message)

    def add_secrets(self, values) -> None:
        pass


def test_the_site_forwards_headers_in_every_location_and_accepts_attachments(acme, app_host):
    wiki = make_instance(
        acme,
        "acme-wiki",
        product="confluence",
        version="8.5.0",
        hostname="wiki.acme.example",
        host=app_host,
        context_path="/wiki",
    )
    cert = Certificate.objects.create(instance=wiki, names=["wiki.acme.example"])
    text = proxy.site_render(wiki, cert)
    assert "return 301 https://$host$request_uri;" in text
    assert "location ^~ /.well-known/acme-challenge/" in text
    assert text.count("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;") == 2
    assert text.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2
    assert "proxy_pass http://$synchrony_upstream:8091;" in text
    # /synchrony/ only: /synchrony-proxy is Confluence's own path, on its HTTP port
    assert "location ^~ /synchrony/ {" in text and "location /synchrony {" not in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "location /wiki {" in text and "proxy_pass http://$upstream:8090;" in text
    assert "return 302 /wiki/;" in text
    assert "client_max_body_size 1024m;" in text
    assert f"ssl_certificate /etc/nginx/panel-certs/{cert.pk}.pem;" in text
    bb = make_instance(
        acme,
        "acme-git",
        product="bitbucket",
        version="8.19.0",
        hostname="git.acme.example",
        host=app_host,
    )
    text = proxy.site_render(bb, cert)
    assert "client_max_body_size 0;" in text and "synchrony" not in text


def test_the_proxy_compose_publishes_on_the_hosts_address(app_host, settings):
    settings.PANEL_PROXY_IMAGE = "panel-lab/proxy:bookworm"
    text = proxy.compose_render(app_host)
    assert "127.0.0.11:80:80" in text and "127.0.0.11:443:443" in text
    assert "panel-proxy" in text and "panel-lab/proxy:bookworm" in text


def test_renewal_is_due_when_a_third_of_the_lifetime_is_left(acme, app_host, settings):
    settings.PANEL_ACME_DIRECTORY = "https://127.0.0.1:1/dir"
    inst = make_instance(acme, "acme-jira", host=app_host)
    now = timezone.now()
    for days in (6, 90):  # short-lived and classic certificates alike
        start = now - timedelta(days=1)
        end = start + timedelta(days=days)
        assert services.renew_after(start, end) == start + timedelta(days=days * 2 / 3)
    cert = Certificate.objects.create(
        instance=inst,
        names=[inst.hostname],
        status=Certificate.Status.VALID,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=5),
        renew_after=services.renew_after(now - timedelta(days=1), now + timedelta(days=5)),
    )
    assert services.certificates_due(now) == []
    due_at = cert.renew_after + timedelta(seconds=1)
    assert services.certificates_due(due_at) == [cert]
    # a failed attempt waits for its backoff
    Certificate.objects.filter(pk=cert.pk).update(next_attempt_at=due_at + timedelta(hours=1))
    assert services.certificates_due(due_at) == []
    assert services.certificates_due(due_at + timedelta(hours=2)) == [cert]


def test_failed_attempts_back_off_up_to_a_day():
    assert issuance._retry_delay(1) == timedelta(hours=1)
    assert issuance._retry_delay(3) == timedelta(hours=4)
    assert issuance._retry_delay(10) == timedelta(hours=24)


def test_the_weekly_order_budget_per_registered_domain_is_enforced(acme, settings):
    settings.PANEL_ACME_WEEKLY_ORDER_BUDGET = 3
    inst = make_instance(acme, "acme-jira", hostname="jira.eu.acme.co.uk")
    cert = Certificate.objects.create(instance=inst, names=[inst.hostname])
    assert services.registered_domain("jira.eu.acme.co.uk") == "acme.co.uk"
    assert services.registered_domain("*.acme.example.com") == "example.com"
    now = timezone.now()
    for days in (1, 2, 8):  # the one eight days ago no longer counts
        CertificateOrder.objects.create(
            registered_domain="acme.co.uk",
            names=["x"],
            directory_url="https://ca",
            created_at=now - timedelta(days=days),
        )
    assert issuance._budget_check(cert, now) == "acme.co.uk"
    CertificateOrder.objects.create(
        registered_domain="acme.co.uk", names=["y"], directory_url="https://ca", created_at=now
    )
    with pytest.raises(AcmeError, match="weekly budget of 3 new orders for acme.co.uk"):
        issuance._budget_check(cert, now)


def test_transient_acme_errors_are_retried_and_others_are_not():
    session = AcmeSession("https://127.0.0.1:1/dir", private_key_generate(), tries=3, backoff=0)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise messages.Error.with_code("badNonce", detail="stale nonce")
        return "ok"

    assert session._retry("new order", flaky) == "ok" and len(calls) == 3

    def refused():
        raise messages.Error.with_code("rejectedIdentifier", detail="no such TLD")

    with pytest.raises(AcmeError, match="rejectedIdentifier: no such TLD"):
        session._retry("new order", refused)

    def always():
        raise messages.Error.with_code("serverInternal", detail="oops")

    with pytest.raises(AcmeError, match="kept failing after 3 tries"):
        session._retry("finalization", always)


def test_wildcards_cover_one_label():
    cert = Certificate(names=["*.acme.example", "acme.example"])
    assert cert.covers("jira.acme.example") and cert.covers("acme.example")
    assert not cert.covers("a.b.acme.example") and not cert.covers("acme.example.org")


def test_hostname_outside_managed_zones_is_refused_or_customer_managed(acme, app_host, settings):
    account = DnsProviderAccount.objects.create(name="aws", kind="route53")
    DnsZone.objects.create(name="acme.example", account=account)
    assert services.hostname_dns_check("jira.acme.example", probe=False).name == "acme.example"
    assert services.hostname_dns_check("jira.elsewhere.org") is None  # customer-managed
    settings.PANEL_DNS_UNMANAGED = "refuse"
    with pytest.raises(ValidationError, match="outside every DNS zone"):
        services.hostname_dns_check("jira.elsewhere.org")
    assert services.hostname_dns_check("jira.elsewhere.org", customer_managed=True) is None
    inst = make_instance(acme, "acme-jira", hostname="jira.elsewhere.org", host=app_host)
    with pytest.raises(OperationFailed, match="outside every DNS zone the panel manages"):
        services.dns_publish(Steps(), inst)
    # once marked customer-managed, publishing shows the record the customer must create
    from panel.access import access_for_user

    services.dns_customer_managed_mark(actor=access_for_user(None), instance=inst)
    steps = Steps()
    (record,) = services.dns_publish(steps, inst)
    assert record.customer_managed and record.value == app_host.address
    assert "the customer must create jira.elsewhere.org A 127.0.0.11" in steps.lines[0]


def test_secrets_are_encrypted_at_rest(acme):
    from django.db import connection

    account = DnsProviderAccount.objects.create(
        name="bind", kind="rfc2136", credentials={"tsig_secret": "c2VjcmV0LXRzaWc="}
    )
    inst = make_instance(acme, "acme-jira")
    cert = Certificate.objects.create(
        instance=inst, names=["x"], private_key=private_key_generate()
    )
    with connection.cursor() as cur:
        cur.execute(
            "select credentials from certificates_dnsprovideraccount where id=%s", [account.pk]
        )
        assert "c2VjcmV0" not in cur.fetchone()[0]
        cur.execute("select private_key from certificates_certificate where id=%s", [cert.pk])
        assert "PRIVATE KEY" not in cur.fetchone()[0]


class _Conn:
    """Records the commands a fence hook would run on the host."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def exists(self, path: str) -> bool:
        return True

    def run(self, argv, **kw):
        self.argvs.append(list(argv))
        return type("Result", (), {"stdout": "", "exit_code": 0})()


def _removed(conn: _Conn) -> list[str]:
    (remove,) = [a for a in conn.argvs if "rm -f" in " ".join(a)]
    return remove[remove.index("sh", remove.index("-c") + 2) + 2 :]


def test_a_fence_removes_the_old_site_and_the_instances_own_certificate_not_a_zones(acme, app_host):
    from provisioning.models import EvacuatedCopy, Host

    other = Host.objects.create(
        name="app-two", role=Host.Role.APP, address="127.0.0.12", data_root="/srv/two"
    )
    moved = make_instance(acme, "acme-jira", host=other)
    own = Certificate.objects.create(instance=moved, names=[moved.hostname])
    account = DnsProviderAccount.objects.create(name="aws", kind="route53")
    zone = DnsZone.objects.create(name="example.com", account=account)
    Certificate.objects.create(zone=zone, names=["*.example.com"])
    copy = EvacuatedCopy.objects.create(
        host=app_host, instance=moved, instance_name=moved.name, project="acme-jira", directory="/d"
    )
    conn = _Conn()
    services.proxy_site_fence(conn, app_host, copy)
    layout = proxy.ProxyLayout.for_host(app_host)
    assert _removed(conn) == [f"{layout.conf_d}/acme-jira.conf", layout.certificate_path(own)]


def test_a_fence_keeps_the_certificate_of_an_instance_that_lives_on_that_host_again(acme, app_host):
    from provisioning.models import EvacuatedCopy

    back = make_instance(acme, "acme-jira", host=app_host, compose_project="acme-jira_beef01")
    Certificate.objects.create(instance=back, names=[back.hostname])
    copy = EvacuatedCopy.objects.create(
        host=app_host, instance=back, instance_name=back.name, project="acme-jira_c0ffee",
        directory="",
    )  # fmt: skip
    conn = _Conn()
    services.proxy_site_fence(conn, app_host, copy)
    layout = proxy.ProxyLayout.for_host(app_host)
    assert _removed(conn) == [f"{layout.conf_d}/acme-jira_c0ffee.conf"]
