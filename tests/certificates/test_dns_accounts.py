"""DNS provider accounts and zones through the API: platform admins add, change, delete and
test them; everyone else is refused in words about DNS; secrets never come back.

The connection test asks real servers: a moto server speaking Route53 over HTTP, and a small
TSIG-checking DNS server on 127.0.0.1 (``tests.support.dns_server``), so no lab is needed.
"""

from __future__ import annotations

import time

import boto3
import pytest

from certificates.models import Certificate, DnsProviderAccount, DnsRecord, DnsZone, ProxySite
from tenants.models import AuditEvent
from tests.support.dns_server import KEY_NAME, OTHER_SECRET, SECRET, TsigDnsServer

pytestmark = pytest.mark.django_db

ACCOUNTS = "/api/dns-accounts/"
ZONES = "/api/dns-zones/"


@pytest.fixture
def dns_server():
    with TsigDnsServer(zones=["acme.test"]) as server:
        yield server


def rfc2136(port: int, secret: str = SECRET, name: str = "bind") -> DnsProviderAccount:
    return DnsProviderAccount.objects.create(
        name=name,
        kind="rfc2136",
        config={"server": "127.0.0.1", "port": port, "tsig_key_name": KEY_NAME},
        credentials={"tsig_secret": secret},
    )


def test_customers_and_support_are_refused_in_words_about_dns(api, alice, sam):
    for user in (alice, sam):
        accounts = api(user).get(ACCOUNTS)
        assert accounts.status_code == 403
        assert accounts.json()["detail"] == (
            "Only platform administrators manage DNS provider accounts."
        )
        zones = api(user).get(ZONES)
        assert zones.json()["detail"] == "Only platform administrators manage DNS zones."
        assert "host" not in accounts.json()["detail"] + zones.json()["detail"]


def test_a_platform_admin_adds_an_account_and_only_the_names_of_its_secrets_come_back(api, pat):
    created = api(pat).post(
        ACCOUNTS,
        {
            "name": "aws",
            "kind": "route53",
            "config": {"region": "eu-west-1"},
            "credentials": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-value"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["credentials_set"] == ["access_key_id", "secret_access_key"]
    assert "s3cr3t-value" not in created.content.decode()
    assert "AKIAEXAMPLE" not in api(pat).get(f"{ACCOUNTS}{data['id']}/").content.decode()
    event = AuditEvent.objects.get(action="dns.account.create")
    assert "s3cr3t-value" not in str(event.changes)


@pytest.mark.parametrize(
    ("account", "field", "message"),
    [
        ({"kind": "rfc2136", "config": {}}, "config", "server"),
        ({"kind": "rfc2136", "config": {"server": "ns1", "port": "53"}}, "config", "port"),
        (
            {"kind": "rfc2136", "config": {"server": "ns1", "tsig_algorithm": "md5"}},
            "config",
            "md5",
        ),
        ({"kind": "rfc2136", "config": {"server": "ns1", "srever": "x"}}, "config", "srever"),
        (
            {"kind": "rfc2136", "config": {"server": "ns1"}, "credentials": {"tsig_secret": "!!"}},
            "credentials",
            "base64",
        ),
        (
            {"kind": "rfc2136", "config": {"server": "ns1", "tsig_key_name": "k."}},
            "credentials",
            "tsig_secret is required",
        ),
        ({"kind": "route53", "config": {"endpoint_url": "ftp://x"}}, "config", "endpoint_url"),
        (
            {"kind": "route53", "credentials": {"access_key_id": "AKIA"}},
            "credentials",
            "both access_key_id and secret_access_key",
        ),
        ({"kind": "route53", "config": ["region"]}, "config", "Expected an object"),
        ({"kind": "powerdns"}, "kind", "not a valid choice"),
    ],
)
def test_settings_a_provider_cannot_use_answer_400_naming_the_field(
    api, pat, account, field, message
):
    response = api(pat).post(ACCOUNTS, {"name": "x", **account}, format="json")
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()[field]), response.json()
    assert not DnsProviderAccount.objects.exists()


def test_a_change_keeps_the_secrets_unless_new_ones_are_sent(api, pat, dns_server):
    account = rfc2136(dns_server.port)
    detail = f"{ACCOUNTS}{account.pk}/"
    renamed = api(pat).patch(detail, {"name": "bind-primary"}, format="json")
    assert renamed.status_code == 200, renamed.content
    account.refresh_from_db()
    assert account.name == "bind-primary" and account.credentials == {"tsig_secret": SECRET}
    replaced = api(pat).patch(detail, {"credentials": {"tsig_secret": OTHER_SECRET}}, format="json")
    assert replaced.status_code == 200 and OTHER_SECRET not in replaced.content.decode()
    account.refresh_from_db()
    assert account.credentials == {"tsig_secret": OTHER_SECRET}
    changes = [
        e.changes for e in AuditEvent.objects.filter(action="dns.account.update").order_by("id")
    ]
    assert changes[0] == {"name": ["bind", "bind-primary"]}
    assert list(changes[1]) == ["credentials"]  # which secrets changed, never their values
    assert SECRET not in str(changes) and OTHER_SECRET not in str(changes)


def test_the_kind_stays_and_a_put_is_not_offered(api, pat, dns_server):
    account = rfc2136(dns_server.port)
    refused = api(pat).patch(f"{ACCOUNTS}{account.pk}/", {"kind": "route53"}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"kind": ["Read-only field; it cannot be set here."]}
    assert api(pat).put(f"{ACCOUNTS}{account.pk}/", {}, format="json").status_code == 405


def test_an_account_that_serves_zones_cannot_be_deleted(api, pat, dns_server):
    account = rfc2136(dns_server.port)
    zone = DnsZone.objects.create(name="acme.test", account=account)
    refused = api(pat).delete(f"{ACCOUNTS}{account.pk}/")
    assert refused.status_code == 409 and "acme.test" in refused.json()["detail"]
    assert api(pat).delete(f"{ZONES}{zone.pk}/").status_code == 204
    assert api(pat).delete(f"{ACCOUNTS}{account.pk}/").status_code == 204
    assert not DnsProviderAccount.objects.exists()
    assert {"dns.zone.delete", "dns.account.delete"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


def test_a_zone_with_instance_records_or_a_served_wildcard_cannot_be_deleted(
    api, pat, acme_jira, app_host, dns_server
):
    zone = DnsZone.objects.create(name="acme.test", account=rfc2136(dns_server.port))
    record = DnsRecord.objects.create(
        instance=acme_jira, zone=zone, name="jira.acme.test", value="127.0.0.11", owned=True
    )
    refused = api(pat).delete(f"{ZONES}{zone.pk}/")
    assert refused.status_code == 409 and "acme-jira" in refused.json()["detail"]
    record.delete()
    wildcard = Certificate.objects.create(zone=zone, names=["*.acme.test"])
    ProxySite.objects.create(instance=acme_jira, host=app_host, certificate=wildcard)
    refused = api(pat).delete(f"{ZONES}{zone.pk}/")
    assert refused.status_code == 409 and "wildcard" in refused.json()["detail"]
    assert DnsZone.objects.filter(pk=zone.pk).exists()
    assert not AuditEvent.objects.filter(action="dns.zone.delete").exists()


def test_the_connection_test_checks_the_tsig_key_and_each_zone(api, pat, dns_server):
    account = rfc2136(dns_server.port)
    DnsZone.objects.create(name="acme.test", account=account)
    DnsZone.objects.create(name="elsewhere.test", account=account)
    response = api(pat).post(f"{ACCOUNTS}{account.pk}/check/")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["ok"] is False
    lines = {line["subject"]: line for line in data["lines"]}
    assert lines["account"]["ok"] and "accepts the TSIG key" in lines["account"]["detail"]
    assert lines["acme.test"]["ok"] and "serves the zone acme.test" in lines["acme.test"]["detail"]
    assert not lines["elsewhere.test"]["ok"]
    assert "does not serve the zone elsewhere.test" in lines["elsewhere.test"]["detail"]
    event = AuditEvent.objects.get(action="dns.account.check")
    assert event.changes == {"ok": False, "failed": ["elsewhere.test"]}


def test_a_wrong_tsig_secret_fails_the_test_and_the_zones_are_not_asked(api, pat, dns_server):
    account = rfc2136(dns_server.port, secret=OTHER_SECRET)
    DnsZone.objects.create(name="acme.test", account=account)
    data = api(pat).post(f"{ACCOUNTS}{account.pk}/check/").json()
    assert data["ok"] is False
    account_line, zone_line = data["lines"]
    assert "refused the TSIG key panel-test-key" in account_line["detail"]
    assert zone_line == {
        "subject": "acme.test",
        "ok": False,
        "detail": "Not checked: the provider did not accept the account.",
    }
    assert OTHER_SECRET not in str(data)


def test_an_unreachable_server_fails_quickly_with_a_reason(api, pat, settings):
    settings.PANEL_DNS_CHECK_TIMEOUT = 2
    account = rfc2136(1)  # nothing listens on port 1
    started = time.monotonic()
    data = api(pat).post(f"{ACCOUNTS}{account.pk}/check/").json()
    assert time.monotonic() - started < 10
    assert data["ok"] is False and "did not answer" in data["lines"][0]["detail"]


def test_the_connection_test_asks_route53(api, pat, moto_server):
    route53 = boto3.client(
        "route53",
        region_name="us-east-1",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    hosted = route53.create_hosted_zone(Name="check.example", CallerReference="check-example")
    account = DnsProviderAccount.objects.create(
        name="moto",
        kind="route53",
        config={"endpoint_url": moto_server},
        credentials={"access_key_id": "testing", "secret_access_key": "testing"},
    )
    zone_id = hosted["HostedZone"]["Id"].split("/")[-1]
    DnsZone.objects.create(name="check.example", account=account, provider_zone_id=zone_id)
    data = api(pat).post(f"{ACCOUNTS}{account.pk}/check/").json()
    assert data["ok"] is True, data
    assert "Route53 accepts these credentials" in data["lines"][0]["detail"]
    assert zone_id in data["lines"][1]["detail"]


def test_the_connection_test_is_for_platform_admins_only_and_takes_no_body(
    api, pat, alice, sam, dns_server
):
    account = rfc2136(dns_server.port)
    for user in (alice, sam):
        assert api(user).post(f"{ACCOUNTS}{account.pk}/check/").status_code == 403
    assert dns_server.queries == 0
    bodied = api(pat).post(f"{ACCOUNTS}{account.pk}/check/", {"zone": "x"}, format="json")
    assert bodied.status_code == 400 and dns_server.queries == 0


def test_the_account_list_does_not_grow_in_queries_with_accounts_and_zones(
    api, pat, django_assert_max_num_queries
):
    client = api(pat)

    def add(start: int, count: int) -> None:
        for i in range(start, start + count):
            account = rfc2136(53, name=f"bind-{i}")
            DnsZone.objects.create(name=f"z{i}.acme.test", account=account)

    counts = []
    for start, count in ((0, 3), (3, 20)):
        add(start, count)
        with django_assert_max_num_queries(8) as captured:
            assert client.get(ACCOUNTS).json()["count"] == start + count
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]
