"""A platform admin adds an RFC 2136 DNS provider account and a zone in the browser, tests the
connection (a result panel, no page load) against a TSIG-checking DNS server on 127.0.0.1,
and sees a wrong secret refused; the secret is never shown back. No lab host is needed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from certificates.models import DnsProviderAccount
from tests.support.dns_server import KEY_NAME, OTHER_SECRET, SECRET, TsigDnsServer


@pytest.fixture
def dns_server() -> Iterator[TsigDnsServer]:
    # The live server runs in this process, so the panel reaches this server on 127.0.0.1.
    with TsigDnsServer(zones=["acme.test"]) as server:
        yield server


def test_a_platform_admin_adds_a_dns_account_and_tests_its_connection(
    page, login, screenshot, page_problems, pat, dns_server
):
    login(pat)
    page.goto("/dns/")
    expect(page.get_by_role("heading", name="DNS", exact=True)).to_be_visible()
    expect(page.get_by_test_id("empty-dns-accounts")).to_be_visible()
    page.locator("#dns-account-add").click()

    # a mistake first: an RFC 2136 account without its server is explained next to the field
    page_problems.allowed_statuses.add(400)
    page.get_by_label("Name", exact=True).fill("lab-bind")
    page.get_by_label("Provider").select_option("rfc2136")
    page.get_by_label("TSIG key name").fill(KEY_NAME)
    page.get_by_label("TSIG secret").fill(SECRET)
    page.locator("#dns-account-save").click()
    expect(page.get_by_test_id("error-server")).to_contain_text("Give the DNS server")
    expect(page.get_by_label("TSIG secret")).to_have_value("")  # not echoed, even on errors
    assert not DnsProviderAccount.objects.exists()

    page.get_by_label("DNS server").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(dns_server.port))
    page.get_by_label("TSIG secret").fill(SECRET)
    page.locator("#dns-account-save").click()
    expect(page.get_by_test_id("message")).to_contain_text("lab-bind added")
    expect(page.locator("#dns-account-name")).to_have_text("lab-bind")
    expect(page.get_by_label("TSIG secret")).to_have_value("")
    assert SECRET not in page.content()

    page.locator("#dns-zone-add").click()
    page.get_by_label("Zone", exact=True).fill("acme.test")
    page.locator("#dns-zone-save").click()
    expect(page.get_by_test_id("message")).to_contain_text("Zone acme.test added")
    expect(page.locator('[data-testid="dns-zone-row"][data-zone="acme.test"]')).to_be_visible()

    url_before = page.url
    page.locator("#dns-account-check").click()
    result = page.get_by_test_id("dns-check-result")
    expect(result).to_have_attribute("data-ok", "true")
    expect(result).to_contain_text("accepts the TSIG key panel-test-key")
    expect(result).to_contain_text("serves the zone acme.test")
    assert page.url == url_before  # the panel was swapped in, the page stayed
    screenshot("dns-account")

    # a wrong secret: saved, then the test says the server refused the key
    page.get_by_label("TSIG secret").fill(OTHER_SECRET)
    page.locator("#dns-account-save").click()
    expect(page.get_by_test_id("message")).to_have_text("Account saved.")
    page.locator("#dns-account-check").click()
    expect(result).to_have_attribute("data-ok", "false")
    expect(result).to_contain_text(re.compile("refused the TSIG key panel-test-key"))
    expect(page.locator('[data-testid="dns-check-line"][data-ok="false"]')).to_have_count(2)
    assert OTHER_SECRET not in page.content()
