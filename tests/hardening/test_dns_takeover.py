"""DNS takeover in managed zones (issue 11, item 2) and the validator hardening (L5, L6).

The attack, as tried on the lab: a record ``keep-<random>.lab.example A 127.0.0.99`` made
outside the panel; a tenant admin creates an instance with that hostname; the panel used to
replace the record with the instance's address, and deleting the instance removed it. Here it
must survive both, through the real parts: a password login and the panel's API and form, the
lab's BIND (RFC 2136) and the real Celery worker on a lab host.
"""

from __future__ import annotations

import secrets

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from certificates.models import DnsProviderAccount, DnsRecord, DnsZone
from panel.access import access_for_user
from panel.operations import operation_execute, wait_for
from provisioning import validators as v
from provisioning.hosts import host_provision
from provisioning.models import AtlassianInstance, Host, InstanceStatus, Operation
from provisioning.services import instance_create
from tests.support.factories import PASSWORD
from tests.support.lab_edge import LAB_ZONE, lab_lookup, outside_update


def _login(username: str) -> Client:
    client = Client()
    response = client.post(
        "/login/", {"username": username, "password": PASSWORD}, REMOTE_ADDR="127.0.0.1"
    )
    assert response.status_code == 302, response.content[:500]
    return client


def _create_body(acme, name: str, hostname: str) -> dict:
    return {
        "tenant": str(acme.pk),
        "name": name,
        "product": "jira-software",
        "version": "9.12.0",
        "hostname": hostname,
        "heap_min_mb": 512,
        "heap_max_mb": 1024,
    }


# --- validators (L5, L6) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check, value",
    [
        (v.validate_fqdn, "jira.example.com\n"),
        (v.validate_slug, "sales-jira\n"),
        (v.validate_context_path, "/jira\n"),
        (v.validate_abs_path, "/srv/atlassian\n"),
        (v.validate_ssh_user, "root\n"),
        (v.validate_version, "9.12.0\n"),
        (v.validate_host_address, "app1.example.net\n"),
    ],
)
def test_a_trailing_newline_is_refused_by_every_validator(check, value):
    check(value.rstrip("\n"))  # the value itself is fine
    with pytest.raises(ValidationError):
        check(value)


@pytest.mark.parametrize(
    "name", ["app", "db", "proxy", "panel-proxy-lab", "sales-app-1", "sales-db-12", "postgres"]
)
def test_names_docker_resolves_on_the_proxy_network_are_refused(name):
    with pytest.raises(ValidationError, match="reserved|Use 3-40"):  # "db" is too short anyway
        v.validate_instance_name(name)


def test_ordinary_names_are_accepted():
    for name in ("sales-jira", "apps", "app-wiki", "sales-app"):
        v.validate_instance_name(name)


@pytest.mark.django_db
def test_the_api_and_the_form_refuse_a_reserved_instance_name(alice, acme):
    client = _login("alice")
    response = client.post(
        "/api/instances/",
        _create_body(acme, "app", "jira-x.acme.example"),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "reserved" in response.json()["name"][0]
    page = client.post("/instances/new/", _create_body(acme, "other-app-1", "jira-y.acme.example"))
    assert page.status_code == 200 and b"is reserved" in page.content
    assert not AtlassianInstance.objects.exists()


@pytest.mark.django_db
def test_the_panels_own_hostname_is_refused_outside_any_managed_zone(alice, acme, settings):
    settings.PANEL_BASE_URL = "https://panel.platform.example"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, ".ops.platform.example"]
    client = _login("alice")
    for hostname in ("panel.platform.example", "ops.platform.example", "a.ops.platform.example"):
        response = client.post(
            "/api/instances/",
            _create_body(acme, f"x{secrets.token_hex(2)}", hostname),
            content_type="application/json",
        )
        assert response.status_code == 400, hostname
        assert "platform's own names" in response.json()["hostname"][0]
    assert not AtlassianInstance.objects.exists()


# --- the attack on the lab ------------------------------------------------------------------------


@pytest.fixture
def managed_lab_zone(db, lab_dns) -> DnsZone:
    """The lab's whole zone lab.example, managed through RFC 2136 with the lab's TSIG key."""
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
    return DnsZone.objects.create(name=LAB_ZONE, account=account, default_ttl=30)


@pytest.fixture
def keep_record(lab_dns):
    """``keep-<random>.lab.example A 127.0.0.99``, made directly on BIND (not by the panel)."""
    name = f"keep-{secrets.token_hex(4)}.{LAB_ZONE}"
    outside_update(lab_dns, name, "A", "127.0.0.99")
    assert lab_lookup(lab_dns, name) == ["127.0.0.99"]
    yield name
    outside_update(lab_dns, name, "A", delete=True)


def _wait(op_id) -> Operation:
    assert wait_for(lambda: Operation.objects.get(id=op_id).is_terminal, timeout=300)
    return Operation.objects.get(id=op_id)


@pytest.fixture
def ready_app_host(worker, enrol_lab_host, pat) -> Host:
    """Lab host app1, provisioned here unless the worker claimed the operation first."""
    host = enrol_lab_host("app1")
    op = host_provision(actor=access_for_user(pat), host=host)
    operation_execute(op.id)
    op = _wait(op.id)
    assert op.status == "succeeded", op.error
    host.refresh_from_db()
    return host


@pytest.mark.lab
@pytest.mark.django_db
def test_a_tenant_admin_cannot_take_over_existing_or_reserved_names_of_a_managed_zone(
    alice,
    acme,
    managed_lab_zone,
    keep_record,
    lab_dns,
    settings,
):
    settings.PANEL_BASE_URL = f"https://panel-{secrets.token_hex(2)}.{LAB_ZONE}"
    panel_host = settings.PANEL_BASE_URL.removeprefix("https://")
    client = _login("alice")
    refused = {
        keep_record: "already exists in the DNS zone",
        LAB_ZONE: "apex",
        f"www.{LAB_ZONE}": "reserved",
        f"mail.{LAB_ZONE}": "reserved",
        f"ns1.{LAB_ZONE}": "reserved",  # the zone's own name server, also an existing record
        panel_host: "platform's own names",
    }
    for hostname, why in refused.items():
        response = client.post(
            "/api/instances/",
            _create_body(acme, f"t{secrets.token_hex(3)}", hostname),
            content_type="application/json",
        )
        assert response.status_code == 400, (hostname, response.content)
        assert why in response.json()["hostname"][0], hostname
    # the page's form says the same next to the field
    page = client.post("/instances/new/", _create_body(acme, "keep-jira", keep_record))
    assert page.status_code == 200 and b"already exists in the DNS zone" in page.content
    assert not AtlassianInstance.objects.exists()
    assert lab_lookup(lab_dns, keep_record) == ["127.0.0.99"]


@pytest.mark.lab
def test_publishing_never_replaces_a_foreign_record_and_deleting_instances_keeps_it(
    worker,
    alice,
    acme,
    managed_lab_zone,
    keep_record,
    lab_dns,
    ready_app_host,
    unique_name,
    cleanup_projects,
):
    client = _login("alice")
    # A legitimate instance through the API and the worker: the panel creates and owns its record
    mine = f"{unique_name('jira')}.{LAB_ZONE}"
    response = client.post(
        "/api/instances/",
        _create_body(acme, unique_name("jira"), mine),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    op = Operation.objects.get(id=response.json()["id"])
    legit = AtlassianInstance.objects.get(pk=op.instance_id)
    cleanup_projects.append(legit)
    op = _wait(op.id)
    assert op.status == "succeeded", op.error
    assert lab_lookup(lab_dns, mine) == [ready_app_host.address]
    assert DnsRecord.objects.get(instance=legit).owned

    # An instance whose hostname was taken after the request was checked (or that skipped the
    # form, as a restore to a new instance does): the publish step refuses, readably.
    taker = instance_create(
        actor=access_for_user(alice),
        tenant=acme,
        name=unique_name("keep"),
        product="jira-software",
        version="9.12.0",
        hostname=keep_record,
        host=ready_app_host,
        heap_min_mb=512,
        heap_max_mb=1024,
        extra_env={"STANDIN_STARTUP_SECONDS": "1"},
    )
    taker_instance = AtlassianInstance.objects.get(pk=taker.instance_id)
    cleanup_projects.append(taker_instance)
    taker = _wait(taker.id)
    assert taker.status == "failed"
    assert "already exists in the zone lab.example" in taker.error, taker.error
    assert lab_dns["tsig_secret"] not in taker.error
    assert lab_lookup(lab_dns, keep_record) == ["127.0.0.99"]

    # Deleting both instances removes only the legitimate instance's own record.
    for inst in (taker_instance, legit):
        response = client.post(
            f"/api/instances/{inst.pk}/delete/",
            {"confirm": inst.name},
            content_type="application/json",
        )
        assert response.status_code == 202, response.content
        deleted = _wait(response.json()["id"])
        assert deleted.status == "succeeded", deleted.error
        inst.refresh_from_db()
        assert inst.status == InstanceStatus.DELETED
    assert lab_lookup(lab_dns, keep_record) == ["127.0.0.99"]
    assert lab_lookup(lab_dns, mine) == []
    assert not DnsRecord.objects.filter(instance__in=[legit, taker_instance]).exists()
