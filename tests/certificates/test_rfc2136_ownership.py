"""RFC 2136 on the lab's BIND: a create carries a "name not in use" prerequisite, so the server
itself refuses to overwrite a record the panel did not make; deletes remove only the panel's
values; the instance's records are created, replaced and removed only when the panel owns them."""

from __future__ import annotations

import secrets

import pytest
from django.core.exceptions import ValidationError

from certificates import services
from certificates.dns import DnsConflict, RecordChange, ZoneRef, provider_for
from certificates.models import DnsRecord
from panel.operations import OperationFailed
from tests.support.factories import make_instance
from tests.support.lab_edge import LAB_ZONE, lab_lookup, outside_update

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


class Steps:
    """Stands in for an OperationContext: keeps the steps and the secrets."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.secrets: list[str] = []

    def step(self, message: str, **_kw) -> None:
        self.messages.append(message)

    def add_secrets(self, values) -> None:
        self.secrets.extend(values)


@pytest.fixture
def outside(lab_dns):
    """``outside(name, rtype, value)`` makes a record outside the panel; removed afterwards."""
    made: list[str] = []

    def make(name: str, rtype: str, value: str) -> str:
        outside_update(lab_dns, name, rtype, value)
        made.append(name)
        return name

    yield make
    for name in made:
        outside_update(lab_dns, name, "A", delete=True)


def test_the_server_refuses_a_create_over_a_record_made_outside_the_panel(
    lab_zone, lab_dns, outside
):
    zone = lab_zone()
    keep = outside(f"keep-{secrets.token_hex(3)}.{zone.name}", "A", "127.0.0.99")
    txt = outside(f"note-{secrets.token_hex(3)}.{zone.name}", "TXT", '"not the panel\'s"')
    provider = provider_for(zone.account)
    ref = ZoneRef(zone.name, zone.provider_zone_id)
    assert provider.name_types(ref, keep) == ["A"]
    assert provider.name_types(ref, f"free-{secrets.token_hex(3)}.{zone.name}") == []
    with pytest.raises(DnsConflict, match="YXDOMAIN|already exists"):
        provider.apply(ref, [RecordChange("create", keep, "A", ("127.0.0.11",))])
    # a name in use by another type is refused as well, and so is a set of the same type
    with pytest.raises(DnsConflict):
        provider.apply(ref, [RecordChange("create", txt, "A", ("127.0.0.11",))])
    with pytest.raises(DnsConflict):
        provider.apply(ref, [RecordChange("create", keep, "A", ("127.0.0.11",), name_unused=False)])
    # the update is atomic: a refused create in a batch changes nothing else either
    free = f"free-{secrets.token_hex(3)}.{zone.name}"
    with pytest.raises(DnsConflict):
        provider.apply(
            ref,
            [
                RecordChange("create", free, "A", ("127.0.0.11",)),
                RecordChange("create", keep, "A", ("127.0.0.11",)),
            ],
        )
    assert lab_lookup(lab_dns, keep) == ["127.0.0.99"]
    assert lab_lookup(lab_dns, free) == []
    # the zone's own apex (SOA, NS) is in use too
    assert "SOA" in provider.name_types(ZoneRef(LAB_ZONE), LAB_ZONE)


def test_a_delete_with_values_removes_only_the_panels_value(lab_zone, lab_dns, outside):
    zone = lab_zone()
    provider = provider_for(zone.account)
    ref = ZoneRef(zone.name, zone.provider_zone_id)
    name = f"jira-{secrets.token_hex(3)}.{zone.name}"
    provider.apply(ref, [RecordChange("create", name, "A", ("127.0.0.11",), 30)])
    outside(name, "A", "127.0.0.99")  # someone adds a value by hand
    provider.apply(ref, [RecordChange("delete", name, "A", ("127.0.0.11",))])
    assert lab_lookup(lab_dns, name) == ["127.0.0.99"]


def test_an_instance_never_takes_over_a_record_it_did_not_make(
    lab_zone, lab_dns, outside, acme, app_host
):
    zone = lab_zone()
    keep = outside(f"keep-{secrets.token_hex(3)}.{zone.name}", "A", "127.0.0.99")
    with pytest.raises(ValidationError, match="already exists in the DNS zone"):
        services.hostname_dns_check(keep)
    inst = make_instance(acme, "acme-keep", hostname=keep, host=app_host)
    steps = Steps()
    with pytest.raises(OperationFailed, match="already exists in the zone") as failure:
        services.dns_publish(steps, inst)
    assert lab_dns["tsig_secret"] not in str(failure.value)
    assert lab_lookup(lab_dns, keep) == ["127.0.0.99"]
    record = DnsRecord.objects.get(instance=inst)
    assert record.status == DnsRecord.Status.FAILED and not record.owned
    services.dns_unpublish(steps, inst)
    assert lab_lookup(lab_dns, keep) == ["127.0.0.99"]
    assert any("left" in m and keep in m for m in steps.messages)


def test_an_owned_record_is_created_replaced_and_removed(lab_zone, lab_dns, acme, app_host):
    zone = lab_zone()
    hostname = f"jira-{secrets.token_hex(3)}.{zone.name}"
    inst = make_instance(acme, "acme-jira", hostname=hostname, host=app_host)
    steps = Steps()
    services.dns_publish(steps, inst)
    assert lab_lookup(lab_dns, hostname) == [app_host.address]
    assert DnsRecord.objects.get(instance=inst).owned
    # a second publish (POST .../dns/update/) replaces the instance's own record
    app_host.address = "127.0.0.12"
    app_host.save(update_fields=["address"])
    inst.refresh_from_db()
    services.dns_publish(steps, inst)
    assert lab_lookup(lab_dns, hostname) == ["127.0.0.12"]
    assert any(m.startswith("DNS: replaced") for m in steps.messages)
    # another instance may not take the name, the owner may keep it
    with pytest.raises(ValidationError):
        services.hostname_dns_check(hostname)
    assert services.hostname_dns_check(hostname, instance=inst) == zone
    services.dns_unpublish(steps, inst)
    assert lab_lookup(lab_dns, hostname) == []
    assert not DnsRecord.objects.filter(instance=inst).exists()


@pytest.mark.parametrize("label", ["www", "mail", "panel"])
def test_reserved_names_and_the_apex_are_refused_before_and_at_publish_time(
    lab_zone, acme, app_host, label
):
    zone = lab_zone()
    for hostname in (zone.name, f"{label}.{zone.name}"):
        with pytest.raises(ValidationError, match="reserved"):
            services.hostname_dns_check(hostname, probe=False)
        inst = make_instance(acme, f"acme-{label}", hostname=hostname, host=app_host)
        with pytest.raises(OperationFailed, match="reserved"):
            services.dns_publish(Steps(), inst)
        inst.delete()
