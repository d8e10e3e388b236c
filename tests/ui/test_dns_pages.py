"""The DNS pages of platform admins: provider accounts (add, change, delete, test the
connection) and zones (add, delete). Secrets are write-only: never in a page, not even as a
masked value whose length shows. Everyone else gets 403 (``tests/ui/test_isolation.py``)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from certificates.models import DnsProviderAccount, DnsRecord, DnsZone
from panel.templatetags.panel_tags import nav_section
from tenants.models import AuditEvent
from tests.support.dns_server import KEY_NAME, OTHER_SECRET, SECRET, TsigDnsServer

pytestmark = pytest.mark.django_db

OVERVIEW = reverse("certificates:dns_overview")
CREATE = reverse("certificates:dns_account_create")
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def dns_server():
    with TsigDnsServer(zones=["acme.test"]) as server:
        yield server


@pytest.fixture
def bind(dns_server) -> DnsProviderAccount:
    return DnsProviderAccount.objects.create(
        name="bind",
        kind="rfc2136",
        config={"server": "127.0.0.1", "port": dns_server.port, "tsig_key_name": KEY_NAME},
        credentials={"tsig_secret": SECRET},
    )


def detail(account) -> str:
    return reverse("certificates:dns_account_detail", args=[account.pk])


def password_inputs(page: str) -> list[str]:
    return re.findall(r'<input type="password"[^>]*>', page)


def test_a_platform_admin_sees_accounts_and_zones(browser, pat, bind):
    DnsZone.objects.create(name="acme.test", account=bind, wildcard=True)
    page = browser(pat).get(OVERVIEW).content.decode()
    assert 'data-account="bind"' in page and 'data-zone="acme.test"' in page
    assert "one wildcard (DNS-01)" in page and SECRET not in page


def test_the_pages_are_for_platform_admins_only(browser, alice, sam, bind):
    for user in (alice, sam):
        for url in (OVERVIEW, CREATE, detail(bind)):
            response = browser(user).get(url)
            assert response.status_code == 403, (user, url)
            assert KEY_NAME.encode() not in response.content


def test_a_route53_account_is_added_and_its_secrets_are_never_shown_again(browser, pat):
    client = browser(pat)
    form = client.get(CREATE).content.decode()
    assert 'id="fieldset-route53"' in form and 'id="fieldset-rfc2136"' in form
    response = client.post(
        CREATE,
        {
            "name": "aws",
            "kind": "route53",
            "region": "eu-west-1",
            "access_key_id": "AKIAEXAMPLE",
            "secret_access_key": AWS_SECRET,
            "server": "ignored.example",  # the other provider's field
        },
    )
    account = DnsProviderAccount.objects.get()
    assert response.status_code == 302 and response["Location"] == detail(account)
    assert account.config == {"region": "eu-west-1"}
    assert account.credentials == {"access_key_id": "AKIAEXAMPLE", "secret_access_key": AWS_SECRET}
    page = client.get(detail(account)).content.decode()
    assert AWS_SECRET not in page and "AKIAEXAMPLE" not in page
    assert "A value is stored. Leave empty to keep it." in page
    # Password inputs carry no value at all (not even dots of the secret's length).
    inputs = password_inputs(page)
    assert len(inputs) == 2 and not any("value=" in tag for tag in inputs)
    assert 'id="fieldset-rfc2136"' not in page  # the kind stays: only its own fields
    assert AuditEvent.objects.filter(action="dns.account.create", source="ui").exists()


def test_a_form_with_errors_does_not_echo_the_secret_either(browser, pat):
    response = browser(pat).post(
        CREATE,
        {"name": "bind", "kind": "rfc2136", "tsig_key_name": KEY_NAME, "tsig_secret": "!!nope"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Give the DNS server that takes the updates." in page
    assert "!!nope" not in page
    assert not DnsProviderAccount.objects.exists()


def test_a_service_refusal_shows_on_the_form(browser, pat):
    response = browser(pat).post(
        CREATE,
        {"name": "bind", "kind": "rfc2136", "server": "ns1.example", "tsig_key_name": KEY_NAME},
    )
    assert response.status_code == 400
    assert "tsig_secret is required for the TSIG key" in response.content.decode()


def test_editing_keeps_the_secret_unless_a_new_one_is_typed(browser, pat, bind):
    client = browser(pat)
    port = bind.config["port"]
    base = {"name": "bind-primary", "server": "127.0.0.1", "port": port, "tsig_key_name": KEY_NAME}
    assert client.post(detail(bind), base).status_code == 302
    bind.refresh_from_db()
    assert bind.name == "bind-primary" and bind.credentials == {"tsig_secret": SECRET}
    assert client.post(detail(bind), {**base, "tsig_secret": OTHER_SECRET}).status_code == 302
    bind.refresh_from_db()
    assert bind.credentials == {"tsig_secret": OTHER_SECRET}
    cleared = client.post(detail(bind), {**base, "tsig_key_name": "", "credentials_clear": "on"})
    assert cleared.status_code == 302
    bind.refresh_from_db()
    assert bind.credentials == {} and "tsig_key_name" not in bind.config


def test_test_connection_answers_the_htmx_panel_and_the_whole_page(browser, pat, bind):
    DnsZone.objects.create(name="acme.test", account=bind)
    url = reverse("certificates:dns_account_check", args=[bind.pk])
    client = browser(pat)
    partial = client.post(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="dns-check-result")
    fragment = partial.content.decode()
    assert partial.status_code == 200 and fragment.startswith('<div id="dns-check-result"')
    assert 'data-ok="true"' in fragment and "serves the zone acme.test" in fragment
    assert "<html" not in fragment
    whole = client.post(url).content.decode()
    assert "<html" in whole and 'data-testid="dns-check-result"' in whole
    assert SECRET not in whole
    assert AuditEvent.objects.filter(action="dns.account.check").count() == 2


def test_a_failed_test_says_why(browser, pat, bind):
    bind.credentials = {"tsig_secret": OTHER_SECRET}
    bind.save()
    page = browser(pat).post(reverse("certificates:dns_account_check", args=[bind.pk]))
    text = page.content.decode()
    assert 'data-ok="false"' in text and "refused the TSIG key panel-test-key" in text


def test_zones_are_added_and_deleted_and_an_account_in_use_is_kept(browser, pat, bind, acme_jira):
    client = browser(pat)
    form = client.get(reverse("certificates:dns_zone_create") + f"?account={bind.pk}")
    assert f'<option value="{bind.pk}" selected>' in form.content.decode()
    response = client.post(
        reverse("certificates:dns_zone_create"),
        {"name": "Acme.Test.", "account": bind.pk, "default_ttl": 120},
    )
    assert response.status_code == 302 and response["Location"] == detail(bind)
    zone = DnsZone.objects.get()
    assert zone.name == "acme.test" and zone.default_ttl == 120
    # An account that serves zones offers no delete, and refuses one.
    page = client.get(detail(bind)).content.decode()
    assert 'data-testid="dns-account-delete-blocked"' in page
    client.post(reverse("certificates:dns_account_delete", args=[bind.pk]))
    assert DnsProviderAccount.objects.filter(pk=bind.pk).exists()
    # A zone with an instance's record is kept; an empty one is deleted.
    record = DnsRecord.objects.create(
        instance=acme_jira, zone=zone, name="jira.acme.test", value="127.0.0.11"
    )
    zone_delete = reverse("certificates:dns_zone_delete", args=[zone.pk])
    assert 'data-testid="delete-blocked"' in client.get(zone_delete).content.decode()
    refused = client.post(zone_delete, follow=True)
    assert "Instances have DNS records in acme.test (acme-jira)" in refused.content.decode()
    record.delete()
    assert client.post(zone_delete).status_code == 302
    assert not DnsZone.objects.exists()
    assert (
        'id="confirm-delete"'
        in client.get(reverse("certificates:dns_account_delete", args=[bind.pk])).content.decode()
    )
    gone = client.post(reverse("certificates:dns_account_delete", args=[bind.pk]))
    assert gone.status_code == 302 and gone["Location"] == OVERVIEW
    assert not DnsProviderAccount.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"dns.zone.create", "dns.zone.delete", "dns.account.delete"} <= actions


def test_a_duplicate_zone_is_a_field_error(browser, pat, bind):
    DnsZone.objects.create(name="acme.test", account=bind)
    response = browser(pat).post(
        reverse("certificates:dns_zone_create"),
        {"name": "acme.test", "account": bind.pk, "default_ttl": 300},
    )
    assert response.status_code == 400
    assert "DNS zone with this Name already exists." in response.content.decode()


def test_the_overview_takes_the_same_number_of_queries_for_3_zones_as_for_20(browser, pat, bind):
    client = browser(pat)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(OVERVIEW).status_code == 200
        return len(ctx.captured_queries)

    for i in range(3):
        DnsZone.objects.create(name=f"z{i}.acme.test", account=bind)
    few = queries()
    for i in range(3, 20):
        account = DnsProviderAccount.objects.create(
            name=f"bind-{i}", kind="rfc2136", config={"server": "127.0.0.1"}
        )
        DnsZone.objects.create(name=f"z{i}.acme.test", account=account)
    assert queries() == few


def test_the_dns_pages_belong_to_the_dns_nav_entry(browser, pat, bind):
    client = browser(pat)
    for url in (OVERVIEW, CREATE, detail(bind)):
        response = client.get(url)
        assert nav_section(response.wsgi_request) == "dns", url
