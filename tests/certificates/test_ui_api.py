"""The instance page, dashboard alerts and the API of the certificates app, per role:
Charlie (Globex) gets 404 for Acme's instance everywhere, Bob (viewer) reads but cannot act,
Alice (admin) acts but cannot renew on demand, Sam (support) renews, Pat manages zones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from certificates.models import Certificate, DnsProviderAccount, DnsRecord, ProxySite
from provisioning.models import Operation

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(acme_jira, app_host, settings):
    settings.PANEL_ACME_DIRECTORY = "https://127.0.0.1:1/dir"
    acme_jira.host = app_host
    acme_jira.save()
    now = timezone.now()
    cert = Certificate.objects.create(
        instance=acme_jira,
        names=[acme_jira.hostname],
        status=Certificate.Status.VALID,
        issuer="Pebble Intermediate CA 1",
        serial="abc123",
        not_before=now - timedelta(days=5),
        not_after=now + timedelta(days=2),
        issued_at=now - timedelta(days=5),
        renew_after=now - timedelta(hours=1),
        private_key="-----BEGIN PRIVATE KEY-----x",
    )
    DnsRecord.objects.create(
        instance=acme_jira,
        name=acme_jira.hostname,
        value="127.0.0.11",
        status=DnsRecord.Status.PUBLISHED,
    )
    ProxySite.objects.create(
        instance=acme_jira,
        host=app_host,
        certificate=cert,
        status=ProxySite.Status.DEPLOYED,
        config="server { }",
        problems=[
            {
                "component": "application",
                "problem": "ATL_PROXY_NAME is wrong.example",
                "fix": "Roll out again.",
            }
        ],
        checked_at=now,
    )
    return acme_jira


def test_the_instance_page_shows_certificate_dns_proxy_and_problems(client, alice, published):
    client.force_login(alice)
    page = client.get(reverse("provisioning:instance_detail", args=[published.pk])).content.decode()
    assert 'data-testid="instance-endpoint"' in page
    assert published.hostname in page and "Pebble Intermediate CA 1" in page
    assert "127.0.0.11" in page and "ATL_PROXY_NAME is wrong.example" in page
    assert 'id="proxy-deploy"' in page and 'id="certificate-renew"' not in page
    assert "PRIVATE KEY" not in page


def test_support_staff_can_renew_now_and_tenant_admins_cannot(client, alice, sam, published):
    url = reverse("certificates:certificate_renew", args=[published.pk])
    client.force_login(alice)
    assert client.post(url).status_code == 403
    client.force_login(sam)
    response = client.post(url)
    op = Operation.objects.get(kind="certificate.renew")
    assert response.status_code == 302 and str(op.pk) in response["Location"]
    assert op.instance == published and op.requested_by == sam


@pytest.mark.parametrize("name", ["proxy_config", "apache_export"])
def test_pages_of_a_foreign_instance_are_404(client, charlie, bob, published, name):
    url = reverse(f"certificates:{name}", args=[published.pk])
    client.force_login(charlie)
    assert client.get(url).status_code == 404
    client.force_login(bob)
    assert client.get(url).status_code == 200


@pytest.mark.parametrize(
    "name", ["certificate_renew", "proxy_deploy", "dns_update", "endpoint_check"]
)
def test_actions_are_404_for_foreigners_and_403_for_viewers(client, charlie, bob, published, name):
    url = reverse(f"certificates:{name}", args=[published.pk])
    client.force_login(charlie)
    assert client.post(url).status_code == 404
    client.force_login(bob)
    assert client.post(url).status_code == 403
    assert not Operation.objects.exists()


def test_the_apache_export_downloads_as_a_file(client, alice, published):
    client.force_login(alice)
    response = client.get(reverse("certificates:apache_export", args=[published.pk]))
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="{published.hostname}-apache.conf"'
    )
    assert b"ProxyPass / http://acme-jira:8080/" in response.content


def test_the_dashboard_alerts_on_certificates_expiring_within_14_days(
    client, alice, charlie, published
):
    client.force_login(alice)
    page = client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="certificate-alerts"' in page and published.hostname in page
    client.force_login(charlie)
    assert published.hostname not in client.get(reverse("dashboard")).content.decode()


def test_the_api_shows_the_endpoint_to_the_tenant_only(api, alice, charlie, published):
    url = f"/api/instances/{published.pk}/endpoint/"
    body = api(alice).get(url).json()
    assert body["certificate"]["names"] == [published.hostname]
    assert body["certificate"]["next_renewal"] and body["dns_records"][0]["value"] == "127.0.0.11"
    assert body["problems"][0]["component"] == "application"
    assert "private_key" not in str(body)
    assert api(charlie).get(url).status_code == 404
    text = api(alice).get(f"/api/instances/{published.pk}/apache-config/")
    # Without a trusted proxy the export leaves RemoteIPHeader out (no client could spoof it).
    assert text.status_code == 200 and b"ProxyRequests Off" in text.content
    assert b"\n    RemoteIPHeader " not in text.content
    assert api(charlie).get(f"/api/instances/{published.pk}/apache-config/").status_code == 404
    expiring = api(alice).get("/api/certificates/?expiring=14").json()
    assert [c["serial"] for c in expiring["results"]] == ["abc123"]
    assert api(charlie).get("/api/certificates/").json()["results"] == []


def test_the_api_renews_for_staff_with_202(api, alice, sam, charlie, published):
    url = f"/api/instances/{published.pk}/certificate/renew/"
    assert api(alice).post(url).status_code == 403
    assert api(charlie).post(url).status_code == 404
    response = api(sam).post(url, HTTP_IDEMPOTENCY_KEY="renew-1")
    assert response.status_code == 202 and response["Location"].startswith("/api/operations/")
    again = api(sam).post(url, HTTP_IDEMPOTENCY_KEY="renew-1")
    assert again.json()["id"] == response.json()["id"]


def test_platform_admins_manage_zones_and_credentials_stay_hidden(api, pat, alice):
    created = api(pat).post(
        "/api/dns-accounts/",
        {
            "name": "bind",
            "kind": "rfc2136",
            "config": {"server": "127.0.0.1", "port": 53},
            "credentials": {"tsig_secret": "c2VjcmV0"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert "credentials" not in created.json()
    assert DnsProviderAccount.objects.get().credentials == {"tsig_secret": "c2VjcmV0"}
    zone = api(pat).post(
        "/api/dns-zones/", {"name": "acme.example", "account": created.json()["id"]}, format="json"
    )
    assert zone.status_code == 201, zone.content
    assert api(alice).get("/api/dns-zones/").status_code == 403
    assert (
        api(alice)
        .post("/api/dns-accounts/", {"name": "x", "kind": "route53"}, format="json")
        .status_code
        == 403
    )
