"""Route53 through boto3 against a real moto server over HTTP: batching per zone, INSYNC,
cleanup when an instance is deleted, and ownership (CREATE, never over someone else's record)."""

from __future__ import annotations

import boto3
import pytest
from django.core.exceptions import ValidationError

from certificates import services
from certificates.dns import DnsConflict, DnsError, RecordChange, ZoneRef, provider_for
from certificates.models import DnsProviderAccount, DnsRecord, DnsZone
from panel.operations import OperationFailed
from tests.support.factories import make_instance

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


# --- ownership: the panel never overwrites or deletes a record it did not make ----------------


def _outside_record(route53, zone: DnsZone, name: str, rtype: str, value: str) -> None:
    """A record made directly in Route53 (by someone else than the panel)."""
    route53.change_resource_record_sets(
        HostedZoneId=zone.provider_zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": rtype,
                        "TTL": 300,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
            ]
        },
    )


def test_a_create_never_replaces_a_record_of_any_type_made_outside_the_panel(zone, route53):
    keep = f"keep.{zone.name}"
    _outside_record(route53, zone, keep, "A", "127.0.0.99")
    _outside_record(route53, zone, f"v6.{zone.name}", "AAAA", "2001:db8::99")
    provider = provider_for(zone.account)
    ref = ZoneRef(zone.name, zone.provider_zone_id)
    with pytest.raises(DnsConflict, match="already"):
        provider.apply(ref, [RecordChange("create", keep, "A", ("203.0.113.10",))])
    with pytest.raises(DnsConflict, match="already"):
        provider.apply(
            ref, [RecordChange("create", keep, "A", ("203.0.113.10",), name_unused=False)]
        )
    # Route53's CREATE refuses an existing set by itself, atomically (for a check-then-create
    # race); moto only detects it for an identical set, which is enough to see the mapping
    provider._at_name = lambda *_a: []  # type: ignore[method-assign]
    with pytest.raises(DnsConflict, match="Route53 refused to create a record that already"):
        provider.apply(ref, [RecordChange("create", keep, "A", ("127.0.0.99",), 300)])
    del provider._at_name
    # another type at a name in use is refused as well (no A next to someone's AAAA)
    with pytest.raises(DnsConflict, match="AAAA"):
        provider.apply(ref, [RecordChange("create", f"v6.{zone.name}", "A", ("203.0.113.10",))])
    # the apex holds SOA and NS
    with pytest.raises(DnsConflict):
        provider.apply(ref, [RecordChange("create", zone.name, "A", ("203.0.113.10",))])
    have = rrsets(route53, zone)
    assert have[(f"{keep}.", "A")] == ["127.0.0.99"]
    assert (f"v6.{zone.name}.", "A") not in have
    assert provider.name_types(ref, keep) == ["A"]
    assert provider.name_types(ref, f"free.{zone.name}") == []


def test_a_delete_removes_only_the_values_the_panel_wrote(zone, route53):
    provider = provider_for(zone.account)
    ref = ZoneRef(zone.name, zone.provider_zone_id)
    name = f"jira.{zone.name}"
    provider.apply(ref, [RecordChange("create", name, "A", ("203.0.113.10",))])
    # someone adds a value by hand; deleting the panel's value keeps theirs
    current = provider._current(zone.provider_zone_id, name, "A")
    current["ResourceRecords"].append({"Value": "127.0.0.99"})
    route53.change_resource_record_sets(
        HostedZoneId=zone.provider_zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": current}]},
    )
    provider.apply(ref, [RecordChange("delete", name, "A", ("203.0.113.10",))])
    assert rrsets(route53, zone)[(f"{name}.", "A")] == ["127.0.0.99"]
    # a record that no longer holds the panel's value is left alone
    result = provider.apply(ref, [RecordChange("delete", name, "A", ("203.0.113.10",))])
    assert rrsets(route53, zone)[(f"{name}.", "A")] == ["127.0.0.99"]
    assert result.skipped and "left in place" in result.skipped[0]


def test_publishing_over_a_foreign_record_fails_readably_and_deleting_keeps_it(
    zone, route53, acme, app_host
):
    keep = f"keep.{zone.name}"
    _outside_record(route53, zone, keep, "A", "127.0.0.99")
    inst = make_instance(acme, "acme-keep", hostname=keep, host=app_host)
    log = StepLog()
    with pytest.raises(OperationFailed, match="already exists in the zone") as failure:
        services.dns_publish(log, inst)
    assert "testing" not in str(failure.value)  # no credentials in the operation's error
    record = DnsRecord.objects.get(instance=inst)
    assert record.status == DnsRecord.Status.FAILED and not record.owned
    services.dns_unpublish(log, inst)
    assert rrsets(route53, zone)[(f"{keep}.", "A")] == ["127.0.0.99"]
    assert any("left" in m and keep in m for m, _ in log.steps)
    # and the request-time check says so before anything is made
    with pytest.raises(ValidationError, match="already exists in the DNS zone"):
        services.hostname_dns_check(keep)


def test_an_owned_record_is_replaced_when_the_host_address_changes(zone, route53, acme, app_host):
    inst = make_instance(acme, "acme-jira", hostname=f"jira.{zone.name}", host=app_host)
    log = StepLog()
    services.dns_publish(log, inst)
    assert DnsRecord.objects.get(instance=inst).owned
    # the instance's own record does not block its own hostname check
    assert services.hostname_dns_check(inst.hostname, instance=inst) == zone
    with pytest.raises(ValidationError):
        services.hostname_dns_check(inst.hostname)  # but another instance may not take it
    app_host.address = "203.0.113.77"
    app_host.save(update_fields=["address"])
    inst.refresh_from_db()
    services.dns_publish(log, inst)
    assert rrsets(route53, zone)[(f"jira.{zone.name}.", "A")] == ["203.0.113.77"]
    assert any(m.startswith("DNS: replaced") for m, _ in log.steps)
    # a move to IPv6 swaps the owned A for an AAAA in one batch
    app_host.address = "2001:db8::77"
    app_host.save(update_fields=["address"])
    inst.refresh_from_db()
    services.dns_publish(log, inst)
    have = rrsets(route53, zone)
    assert have[(f"jira.{zone.name}.", "AAAA")] == ["2001:db8::77"]
    assert (f"jira.{zone.name}.", "A") not in have
    assert list(DnsRecord.objects.filter(instance=inst).values_list("rtype", "owned")) == [
        ("AAAA", True)
    ]
