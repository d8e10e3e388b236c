"""End to end on the lab: a new instance gets its DNS record (RFC 2136 on BIND), a certificate
from pebble (HTTP-01 through the host's nginx proxy) and its proxy site during creation, and
answers RUNNING over HTTPS with a certificate that verifies against pebble's root."""

from __future__ import annotations

import json

import pytest

from certificates.models import Certificate, DnsRecord, ProxySite
from panel.access import access_for_user
from provisioning.models import InstanceStatus
from provisioning.services import instance_delete
from tests.support.lab import run_operation as run
from tests.support.lab import step_text
from tests.support.lab_edge import create_published as create
from tests.support.lab_edge import http_get, https_get, lab_lookup, standin_json

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def test_a_new_instance_is_reachable_over_https_with_a_certificate_from_the_ca(
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
    zone = lab_zone()
    name = unique_name("jira")
    hostname = f"{name}.{zone.name}"
    op, inst = create(
        alice,
        acme,
        ready_app_host,
        name,
        hostname,
        cleanup_projects,
        cleanup_sites,
        context_path="/jira",
    )
    assert op.status == "succeeded", step_text(op)
    assert inst.status == InstanceStatus.RUNNING

    # DNS: the record is in the lab's BIND, pointing at the host
    assert lab_lookup(lab_dns, hostname) == [ready_app_host.address]
    record = DnsRecord.objects.get(instance=inst)
    assert record.status == DnsRecord.Status.PUBLISHED and record.zone == zone

    # certificate: issued by pebble for the hostname, key encrypted, renewal at 2/3 of life
    cert = Certificate.objects.get(instance=inst)
    assert cert.status == Certificate.Status.VALID, cert.last_error
    assert cert.names == [hostname] and "Pebble" in cert.issuer
    assert cert.renew_after == cert.not_before + (cert.not_after - cert.not_before) * 2 / 3
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("select private_key from certificates_certificate where id = %s", [cert.pk])
        assert "PRIVATE KEY" not in cur.fetchone()[0]

    # HTTPS through the proxy verifies against pebble's root and reaches the stand-in
    answer = https_get(ready_app_host.address, hostname, "/jira/status", cafile=pebble_root)
    assert answer.status == 200 and standin_json(answer)["state"] == "RUNNING"
    assert answer.serial == cert.serial

    # the app sees the original client and scheme
    info = standin_json(
        https_get(
            ready_app_host.address, hostname, "/jira/rest/standin/1.0/info", cafile=pebble_root
        )
    )
    assert info["base_url"] == f"https://{hostname}/jira"

    # plain HTTP redirects, except ACME challenges
    status, headers = http_get(ready_app_host.address, hostname, "/jira/status")
    assert status == 301 and headers["location"] == f"https://{hostname}/jira/status"
    status, _ = http_get(ready_app_host.address, hostname, "/.well-known/acme-challenge/nothing")
    assert status == 404

    # a 5 MB attachment is not refused by the proxy (nginx's default limit is 1 MB)
    body = json.dumps({"path": "data/attachment.bin", "content": "x" * 5_000_000}).encode()
    upload = https_get(
        ready_app_host.address,
        hostname,
        "/jira/rest/standin/1.0/files",
        cafile=pebble_root,
        method="POST",
        body=body,
        timeout=30,
    )
    assert upload.status != 413 and upload.status < 400

    # the consistency check found nothing to fix
    site = ProxySite.objects.get(instance=inst)
    assert site.status == ProxySite.Status.DEPLOYED
    assert site.problems == [], site.problems
    assert (
        "Consistency: DNS, certificate, proxy and the application's connector agree"
        in step_text(op)
    )

    # deleting the instance removes its DNS record and its proxy site
    op = run(
        instance_delete(
            actor=access_for_user(alice),
            instance=inst,
            confirm=inst.name,
        )
    )
    assert op.status == "succeeded", step_text(op)
    assert lab_lookup(lab_dns, hostname) == []
    assert not DnsRecord.objects.filter(instance=inst).exists()
    assert not (
        __import__("pathlib").Path(ready_app_host.data_root)
        / "proxy"
        / "conf.d"
        / f"{inst.name}.conf"
    ).exists()
