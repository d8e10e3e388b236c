"""Certificates and the proxy on the lab beyond the first issue: wildcard via DNS-01, renewal
without downtime, a refused proxy config, customer-managed DNS, and the consistency check."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import timedelta

import pytest

from certificates import services
from certificates.dns import RecordChange, ZoneRef, provider_for
from certificates.models import Certificate, DnsRecord, ProxySite
from panel.access import access_for_user
from provisioning.models import Operation
from provisioning.services import instance_delete
from tests.support.lab import run_operation as run
from tests.support.lab import step_text
from tests.support.lab_edge import LAB_ZONE, https_get, lab_lookup, standin_json
from tests.support.lab_edge import create_published as create

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def test_a_zone_with_wildcard_gets_one_certificate_through_dns01(
    lab_settings,
    lab_zone,
    lab_dns,
    pebble_root,
    alice,
    acme,
    ready_app_host,
    unique_name,
    cleanup_projects,
    cleanup_sites,
):
    zone = lab_zone(wildcard=True)
    name = unique_name("wiki")
    hostname = f"{name}.{zone.name}"
    op, inst = create(
        alice,
        acme,
        ready_app_host,
        name,
        hostname,
        cleanup_projects,
        cleanup_sites,
        product="confluence",
        version="8.5.0",
    )
    assert op.status == "succeeded", step_text(op)
    cert = Certificate.objects.get(zone=zone)
    assert cert.status == Certificate.Status.VALID, cert.last_error
    assert cert.challenge == "dns-01" and cert.instance is None
    assert sorted(cert.names) == sorted([f"*.{zone.name}", zone.name])
    assert ProxySite.objects.get(instance=inst).certificate == cert
    # the challenge TXT records were removed again
    assert lab_lookup(lab_dns, f"_acme-challenge.{zone.name}", "TXT") == []
    answer = https_get(ready_app_host.address, hostname, "/status", cafile=pebble_root)
    assert answer.status == 200 and standin_json(answer)["state"] == "RUNNING"
    assert answer.serial == cert.serial
    # Synchrony's websocket path goes to port 8091
    sync = https_get(ready_app_host.address, hostname, "/synchrony/heartbeat", cafile=pebble_root)
    assert sync.status == 200, sync.body
    # ... and /synchrony-proxy (Confluence's own path) to the app on 8090, not to Synchrony: the
    # app's JSON 404 for an unknown path, where Synchrony answers plain text.
    own = https_get(ready_app_host.address, hostname, "/synchrony-proxy/x", cafile=pebble_root)
    assert standin_json(own)["path"] == "/synchrony-proxy/x", own.body


def test_renewal_replaces_the_certificate_without_downtime(
    lab_settings,
    lab_zone,
    pebble_root,
    alice,
    acme,
    ready_app_host,
    unique_name,
    cleanup_projects,
    cleanup_sites,
):
    zone = lab_zone()
    name = unique_name("jira")
    hostname = f"{name}.{zone.name}"
    op, inst = create(alice, acme, ready_app_host, name, hostname, cleanup_projects, cleanup_sites)
    assert op.status == "succeeded", step_text(op)
    old = Certificate.objects.get(instance=inst)
    assert old.status == Certificate.Status.VALID, old.last_error

    # not due yet: nothing starts
    assert services.certificates_renew_due(now=old.renew_after - timedelta(minutes=1)) == []

    failures: list[str] = []
    answers: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                a = https_get(ready_app_host.address, hostname, "/status", cafile=pebble_root)
                answers.append(a.serial)
                if a.status != 200:
                    failures.append(f"HTTP {a.status}")
            except Exception as exc:  # noqa: BLE001 - every failure counts
                failures.append(repr(exc))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        started = services.certificates_renew_due(now=old.renew_after + timedelta(seconds=1))
        assert len(started) == 1
        renew = run(Operation.objects.get(pk=started[0]))
        time.sleep(0.5)
    finally:
        stop.set()
        poller.join(timeout=15)
    assert renew.status == "succeeded", step_text(renew)
    assert renew.kind == "certificate.renew"
    new = Certificate.objects.get(pk=old.pk)
    assert new.serial != old.serial and new.not_after >= old.not_after
    assert failures == [], failures[:5]
    assert old.serial in answers and answers[-1] == new.serial
    served = https_get(ready_app_host.address, hostname, "/status", cafile=pebble_root)
    assert served.serial == new.serial


def test_a_broken_proxy_template_is_refused_and_the_old_config_keeps_serving(
    lab_settings,
    lab_zone,
    pebble_root,
    alice,
    acme,
    ready_app_host,
    unique_name,
    cleanup_projects,
    cleanup_sites,
    tmp_path,
):
    zone = lab_zone()
    name = unique_name("bb")
    hostname = f"{name}.{zone.name}"
    op, inst = create(
        alice,
        acme,
        ready_app_host,
        name,
        hostname,
        cleanup_projects,
        cleanup_sites,
        product="bitbucket",
        version="8.19.0",
    )
    assert op.status == "succeeded", step_text(op)
    site_file = f"{ready_app_host.data_root}/proxy/conf.d/{inst.name}.conf"
    before = open(site_file).read()

    # an administrator's customised template with a typo
    (tmp_path / "broken.conf").write_text(
        "server { listen 443 ssl; server_name {{ hostname }}; proxy_pass_typo on; }\n"
    )
    lab_settings.TEMPLATES = [
        {**lab_settings.TEMPLATES[0], "DIRS": [tmp_path, *lab_settings.TEMPLATES[0]["DIRS"]]}
    ]
    lab_settings.PANEL_PROXY_SITE_TEMPLATE = "broken.conf"
    op = run(services.proxy_deploy(actor=access_for_user(alice), instance=inst))
    assert op.status == "failed"
    assert "nginx -t refused" in op.error and "proxy_pass_typo" in op.error
    assert "keeps serving its working config" in op.error
    assert open(site_file).read() == before
    site = ProxySite.objects.get(instance=inst)
    assert site.status == ProxySite.Status.DEPLOYED and "proxy_pass_typo" in site.last_error
    answer = https_get(ready_app_host.address, hostname, "/status", cafile=pebble_root)
    assert answer.status == 200 and standin_json(answer)["state"] == "RUNNING"


def test_the_consistency_check_finds_a_wrong_atl_proxy_name(
    settings,
    lab_settings,
    lab_zone,
    alice,
    acme,
    ready_app_host,
    unique_name,
    cleanup_projects,
    cleanup_sites,
):
    settings.PANEL_ACME_DIRECTORY = ""  # a placeholder certificate is enough here
    zone = lab_zone()
    name = unique_name("jira")
    hostname = f"{name}.{zone.name}"
    op, inst = create(alice, acme, ready_app_host, name, hostname, cleanup_projects, cleanup_sites)
    assert op.status == "succeeded", step_text(op)
    # someone changes the connector on the host behind the panel's back
    directory = f"{ready_app_host.data_root}/instances/{inst.name}"
    subprocess.run(
        [
            "sed",
            "-i",
            f"s/ATL_PROXY_NAME: {hostname}/ATL_PROXY_NAME: wrong.example/",
            f"{directory}/compose.yml",
        ],
        check=True,
    )
    subprocess.run(
        ["docker", "compose", "--project-directory", directory, "-p", inst.name, "up", "-d", "app"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    problems = services.endpoint_check_safely(inst)
    app = [p for p in problems if p["component"] == "application"]
    assert len(app) == 1, problems
    assert "ATL_PROXY_NAME='wrong.example'" in app[0]["problem"]
    assert hostname in app[0]["problem"] and "ATL_PROXY_NAME" in app[0]["fix"]
    # the placeholder certificate is reported too, with what to do
    assert any(p["component"] == "certificate" and "placeholder" in p["problem"] for p in problems)
    assert ProxySite.objects.get(instance=inst).problems == problems


def test_a_hostname_outside_managed_zones_waits_for_the_customers_record(
    lab_settings,
    lab_dns,
    pebble_root,
    alice,
    acme,
    ready_app_host,
    unique_name,
    cleanup_projects,
    cleanup_sites,
):
    # the customer's own DNS is the lab's BIND, but the panel manages no zone for the name
    name = unique_name("jira")
    hostname = f"{name}.cust.{LAB_ZONE}"
    op, inst = create(alice, acme, ready_app_host, name, hostname, cleanup_projects, cleanup_sites)
    assert op.status == "succeeded", step_text(op)
    assert f"the customer must create {hostname} A {ready_app_host.address}" in step_text(op)
    record = DnsRecord.objects.get(instance=inst)
    assert record.customer_managed and record.status == DnsRecord.Status.WAITING
    cert = Certificate.objects.get(instance=inst)
    assert cert.status == Certificate.Status.PLACEHOLDER
    # served at once with the placeholder
    assert https_get(ready_app_host.address, hostname, "/status", cafile=None).status == 200

    # nothing happens until the record resolves
    assert services.dns_customer_records_check() >= 1
    record.refresh_from_db()
    assert record.status == DnsRecord.Status.WAITING
    assert not Operation.objects.filter(kind="certificate.issue", instance=inst).exists()

    # the customer creates the record; the periodic check sees it and requests the certificate
    customer = type(
        "Account",
        (),
        {
            "kind": "rfc2136",
            "config": {
                k: lab_dns[k] for k in ("server", "port", "tsig_key_name", "tsig_algorithm")
            },
            "credentials": {"tsig_secret": lab_dns["tsig_secret"]},
        },
    )
    provider_for(customer).apply(
        ZoneRef(LAB_ZONE), [RecordChange("upsert", hostname, "A", (ready_app_host.address,), 30)]
    )
    try:
        services.dns_customer_records_check()
        record.refresh_from_db()
        assert record.status == DnsRecord.Status.VERIFIED, record.detail
        issue = Operation.objects.get(kind="certificate.issue", instance=inst)
        issue = run(issue)
        assert issue.status == "succeeded", step_text(issue)
        cert.refresh_from_db()
        assert cert.status == Certificate.Status.VALID
        answer = https_get(ready_app_host.address, hostname, "/status", cafile=pebble_root)
        assert answer.status == 200 and answer.serial == cert.serial
    finally:
        provider_for(customer).apply(ZoneRef(LAB_ZONE), [RecordChange("delete", hostname, "A")])
    # deleting leaves the customer's record alone (the panel never managed it)
    op = run(
        instance_delete(
            actor=access_for_user(alice),
            instance=inst,
            confirm=inst.name,
        )
    )
    assert op.status == "succeeded", step_text(op)
