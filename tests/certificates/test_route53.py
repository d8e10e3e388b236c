"""Route53 through boto3 against a real moto server over HTTP: batching per zone, INSYNC,
cleanup when an instance is deleted."""

from __future__ import annotations

import boto3
import pytest

from certificates import services
from certificates.dns import DnsError, RecordChange, ZoneRef, provider_for
from certificates.models import DnsProviderAccount, DnsRecord, DnsZone
from tests.conftest import make_instance

pytestmark = pytest.mark.django_db


class StepLog:
    """Stands in for an OperationContext: keeps the steps."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, dict]] = []
        self.secrets: list[str] = []

    def step(self, message: str, **kw) -> None:
        self.steps.append((message, kw))

    def add_secrets(self, values) -> None:
        self.secrets.extend(values)

    def calls(self, op: str) -> int:
        return sum(1 for _m, kw in self.steps if kw.get("command") == f"route53 {op}")


@pytest.fixture
def route53(moto_server):
    client = boto3.client(
        "route53",
        region_name="us-east-1",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client


@pytest.fixture
def zone(route53, moto_server, settings) -> DnsZone:
    settings.PANEL_DNS_INSYNC_POLL = 0.1
    import secrets

    name = f"r{secrets.token_hex(3)}.example.com"
    hz = route53.create_hosted_zone(Name=name, CallerReference=name)["HostedZone"]
    account = DnsProviderAccount.objects.create(
        name=f"aws-{name}",
        kind="route53",
        config={"region": "us-east-1", "endpoint_url": moto_server},
        credentials={"access_key_id": "testing", "secret_access_key": "testing"},
    )
    return DnsZone.objects.create(
        name=name, account=account, provider_zone_id=hz["Id"].split("/")[-1], default_ttl=60
    )


def rrsets(route53, zone: DnsZone) -> dict[tuple[str, str], list[str]]:
    out = route53.list_resource_record_sets(HostedZoneId=zone.provider_zone_id)
    return {
        (r["Name"], r["Type"]): [v["Value"] for v in r.get("ResourceRecords", [])]
        for r in out["ResourceRecordSets"]
        if r["Type"] not in ("SOA", "NS")
    }


def test_all_changes_for_a_zone_go_in_one_change_batch(zone, route53):
    log = StepLog()
    provider = provider_for(zone.account, log=log.step)
    ref = ZoneRef(zone.name, zone.provider_zone_id)
    result = provider.apply(
        ref,
        [
            RecordChange("upsert", f"jira.{zone.name}", "A", ("203.0.113.10",), 60),
            RecordChange("upsert", f"jira.{zone.name}", "AAAA", ("2001:db8::10",), 60),
            RecordChange("upsert", f"wiki.{zone.name}", "CNAME", ("app1.example.net",), 60),
            RecordChange(
                "upsert", f"_acme-challenge.{zone.name}", "TXT", ("token-one", "token-two"), 60
            ),
        ],
    )
    assert log.calls("change_resource_record_sets") == 1
    assert result.in_sync and result.change_id
    have = rrsets(route53, zone)
    assert have[(f"jira.{zone.name}.", "A")] == ["203.0.113.10"]
    assert have[(f"jira.{zone.name}.", "AAAA")] == ["2001:db8::10"]
    assert have[(f"wiki.{zone.name}.", "CNAME")] == ["app1.example.net"]
    assert sorted(provider.lookup(ref, f"_acme-challenge.{zone.name}", "TXT")) == [
        "token-one",
        "token-two",
    ]
    # an upsert replaces, and deletes of absent records are skipped
    provider.apply(
        ref,
        [
            RecordChange("upsert", f"jira.{zone.name}", "A", ("203.0.113.11",), 60),
            RecordChange("delete", f"nothing.{zone.name}", "A"),
        ],
    )
    assert rrsets(route53, zone)[(f"jira.{zone.name}.", "A")] == ["203.0.113.11"]


def test_an_instance_gets_its_record_and_deleting_it_removes_the_record(
    zone, route53, acme, app_host
):
    inst = make_instance(acme, "acme-jira", hostname=f"jira.{zone.name}", host=app_host)
    log = StepLog()
    services.dns_publish(log, inst)
    assert rrsets(route53, zone)[(f"jira.{zone.name}.", "A")] == [app_host.address]
    record = DnsRecord.objects.get(instance=inst)
    assert record.status == DnsRecord.Status.PUBLISHED and record.zone == zone
    assert "testing" in log.secrets  # credentials are redacted from the operation log
    services.dns_unpublish(log, inst)
    assert (f"jira.{zone.name}.", "A") not in rrsets(route53, zone)
    assert not DnsRecord.objects.filter(instance=inst).exists()


def test_a_wrong_hosted_zone_is_a_readable_error(zone):
    provider = provider_for(zone.account)
    with pytest.raises(DnsError, match="Route53 refused change_resource_record_sets"):
        provider.apply(
            ZoneRef(zone.name, "ZNOSUCHZONE"),
            [RecordChange("upsert", f"x.{zone.name}", "A", ("203.0.113.1",))],
        )
