"""In the browser: the header names the tenant a customer works in, and a member of several
switches there; support staff find an instance of any tenant from the header's search box."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from provisioning.models import License
from tenants.models import Membership


def test_a_member_of_two_tenants_switches_between_them_in_the_header(
    page, login, screenshot, alice, acme, globex, acme_jira, globex_wiki
):
    Membership.objects.create(user=alice, tenant=globex, role=Membership.Role.VIEWER)
    login(alice)
    indicator = page.locator("#tenant-indicator")
    expect(indicator).to_contain_text("All my tenants")
    expect(page.get_by_test_id("instance-row")).to_have_count(2)

    indicator.click()  # opens the menu
    menu = page.locator("#tenant-switcher form")
    expect(menu).to_be_visible()
    screenshot("tenant-switcher-open")
    menu.get_by_role("button", name="Globex", exact=True).click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_test_id("message")).to_have_text("Showing Globex only.")
    expect(indicator).to_contain_text("Globex")
    page.locator("#nav-instances").click()
    expect(page.get_by_test_id("instance-row")).to_have_count(1)
    expect(page.locator('[data-instance="globex-wiki"]')).to_be_visible()
    screenshot("switched-to-globex")

    indicator.click()
    page.locator("#tenant-switch-all").click()
    expect(indicator).to_contain_text("All my tenants")
    expect(page.get_by_test_id("instance-row")).to_have_count(2)


def test_support_finds_an_instance_of_any_tenant_by_its_sen_from_the_header(
    page, login, screenshot, sam, acme_jira, globex_wiki
):
    License.objects.create(
        instance=acme_jira, product="jira-software", key="AAAB-browser", sen="SEN-8086"
    )
    login(sam)
    expect(page.locator("#tenant-indicator")).to_contain_text("All tenants")
    page.get_by_label("Find in all tenants").fill("sen-8086")
    page.get_by_label("Find in all tenants").press("Enter")
    expect(page).to_have_url(re.compile(r"/staff/search/\?q=sen-8086"))
    rows = page.get_by_test_id("search-instance")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("acme-jira")
    expect(rows.first.get_by_test_id("search-matched")).to_contain_text("SEN (SEN-8086)")
    screenshot("staff-search")

    page.get_by_label("Search", exact=True).fill("globex")
    page.locator("#staff-search-submit").click()
    expect(page.locator('[data-instance="globex-wiki"]')).to_be_visible()
    expect(page.get_by_test_id("search-tenant")).to_contain_text("Globex")
    page.get_by_role("link", name="globex-wiki", exact=True).click()
    expect(page.locator("#instance-name")).to_have_text("globex-wiki")
