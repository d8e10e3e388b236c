"""In the browser: a list that grows with the fleet pages through htmx: "Next" swaps only the
table, the address follows (so reload and back work), and "Previous" comes back."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tenants.models import Tenant


def test_staff_page_through_all_tenants_and_the_address_follows(page, login, screenshot, sam):
    Tenant.objects.bulk_create(
        [
            Tenant(name=f"Tenant {i:03d}", slug=f"t{i:03d}", contact_email="a@b.example")
            for i in range(30)
        ]
    )
    login(sam)
    page.locator("#nav-staff-tenants").click()
    rows = page.get_by_test_id("tenant-row")
    expect(rows).to_have_count(25)
    expect(page.get_by_test_id("tenant-count")).to_have_text("30 tenants")
    heading = page.get_by_role("heading", name="All tenants")
    heading.evaluate("h => h.dataset.kept = 'yes'")  # gone if the whole page were loaded
    page.locator("#page-next").click()
    expect(page).to_have_url(re.compile(r"/staff/tenants/\?page=2$"))
    expect(rows).to_have_count(5)
    expect(page.locator('[data-tenant="t029"]')).to_be_visible()
    expect(heading).to_have_attribute("data-kept", "yes")
    screenshot("staff-tenants-page-2")
    page.locator("#page-prev").click()
    expect(rows).to_have_count(25)
    expect(page.locator('[data-tenant="t000"]')).to_be_visible()
    page.reload()
    expect(rows).to_have_count(25)
