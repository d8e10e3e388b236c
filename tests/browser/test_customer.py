"""A customer in the browser: only their tenant's instances, and an instance's health and
license at a glance."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from certificates.models import Certificate
from provisioning.models import InstanceHealthCheck, License
from tests.backups.factories import make_point
from tests.support.factories import make_instance


def _history(instance, *, failing_hours: tuple[int, ...] = ()) -> None:
    """A day of checks every 20 minutes (a few failed ones in ``failing_hours`` ago)."""
    now = timezone.now()
    InstanceHealthCheck.objects.bulk_create(
        InstanceHealthCheck(
            instance=instance,
            checked_at=now - timedelta(minutes=20 * i),
            ok=(20 * i) // 60 not in failing_hours,
            state="RUNNING",
            response_ms=120 + (i * 37) % 90,
        )
        for i in range(72)
    )


def test_a_customer_sees_only_their_tenants_instances_and_an_instances_health_and_license(
    page, login, screenshot, page_problems, bob, acme, globex, acme_jira, globex_wiki
):
    acme_jira.health = "healthy"
    acme_jira.save()
    _history(acme_jira, failing_hours=(9,))
    License.objects.create(
        instance=acme_jira,
        product="jira-software",
        key="AAAB-browser-license",
        sen="SEN-4711",
        organisation="Acme",
        license_type="Commercial",
        user_tier="500 users",
        expiry_date=timezone.localdate() + timedelta(days=20),
        maintenance_expiry_date=timezone.localdate() + timedelta(days=200),
    )
    now = timezone.now()
    Certificate.objects.create(
        instance=acme_jira,
        names=[acme_jira.hostname],
        status=Certificate.Status.VALID,
        issuer="CN=Pebble Intermediate CA",
        not_before=now - timedelta(days=45),
        not_after=now + timedelta(days=45),
        issued_at=now - timedelta(days=45),
        renew_after=now + timedelta(days=15),
    )
    for day in range(10, 0, -1):  # ten nightly points, growing a little every day
        make_point(
            acme_jira,
            taken_at=now - timedelta(days=day - 1, hours=3),
            label=f"daily.{day - 1}",
            logical_bytes=int((2.1 + 0.05 * (10 - day)) * 1024**3),
            disk_bytes=int((0.12 + 0.01 * (day % 3)) * 1024**3),
            dump_bytes=350 * 1024**2,
            file_count=48_000 + 120 * (10 - day),
        )
    make_instance(acme, "acme-wiki", product="confluence", version="8.5.0", status="stopped")
    make_instance(acme, "acme-code", product="bitbucket", version="8.19.0", health="degraded")

    login(bob)
    rows = page.get_by_test_id("instance-row")
    expect(rows).to_have_count(3)
    expect(page.locator('[data-instance="globex-wiki"]')).to_have_count(0)
    expect(page.locator('[data-instance="acme-code"]').get_by_test_id("status-badge")).to_have_text(
        "Degraded"
    )
    expect(page.get_by_test_id("stat-licenses-30")).to_contain_text("1")
    screenshot("dashboard", docs="dashboard")

    page.get_by_role("link", name="acme-jira", exact=True).click()
    expect(page.locator("#instance-name")).to_have_text("acme-jira")
    facts = page.get_by_test_id("instance-facts")
    expect(facts.get_by_test_id("status-badge").first).to_have_text("Running")
    expect(facts.locator('[data-status="healthy"]')).to_have_text("Healthy")
    license_box = page.get_by_test_id("license")
    expect(license_box).to_contain_text("SEN-4711")
    expect(license_box.get_by_test_id("expiry-badge").first).to_have_text("20 days left")
    certificate = page.get_by_test_id("certificate")
    expect(certificate).to_contain_text(acme_jira.hostname)
    expect(certificate).to_contain_text(f"{now + timedelta(days=45):%Y-%m-%d}")
    chart = page.get_by_test_id("health-chart")
    expect(chart).to_have_attribute("data-checks", "72")
    expect(chart.locator('rect[data-tone="warn"], rect[data-tone="bad"]')).not_to_have_count(0)
    expect(page.get_by_test_id("health-percent")).to_have_text("95.8%")
    backups = page.get_by_test_id("instance-backups")
    expect(backups.get_by_test_id("rpo-state")).to_have_text("Within RPO")
    expect(backups.get_by_test_id("point-count")).to_have_text(re.compile(r"^10\b"))
    expect(backups.get_by_test_id("size-chart")).to_be_visible()
    # a viewer has no lifecycle buttons
    expect(page.locator("#actions")).to_have_count(0)
    screenshot("instance", docs="instance")

    # every point with its date and size
    page.locator("#backups-link").click()
    points = page.get_by_test_id("points-table").get_by_test_id("point-row")
    expect(points).to_have_count(10)
    expect(points.first).to_contain_text("2.5\xa0GB")
    expect(points.first).to_contain_text(f"{now - timedelta(hours=3):%Y-%m-%d}")
    expect(page.locator("#restore-request-form")).to_have_count(0)  # viewers cannot ask
    screenshot("backups")

    # another tenant's instance does not exist for Bob, even by its address
    page_problems.allowed_statuses.add(404)
    response = page.goto(f"/instances/{globex_wiki.pk}/")
    assert response.status == 404
    expect(page.locator("body")).not_to_contain_text("globex-wiki")


def test_the_pages_work_on_a_narrow_screen_and_from_the_keyboard(
    page, login, screenshot, alice, acme, acme_jira
):
    page.set_viewport_size({"width": 375, "height": 800})
    login(alice)
    _history(acme_jira)
    for path in ("/", f"/instances/{acme_jira.pk}/", "/instances/new/", "/notifications/"):
        page.goto(path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"
    screenshot("narrow-notifications")
    page.goto(f"/instances/{acme_jira.pk}/")
    screenshot("narrow-instance")

    # keyboard: the first Tab reaches "Skip to content", which moves focus to the page
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    # every form control of the create form has a label a screen reader announces
    page.goto("/instances/new/")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll(
                 "#instance-create-form input:not([type=hidden]), "
                 + "#instance-create-form select, #instance-create-form textarea")]
             .filter(el => !el.labels || el.labels.length === 0).map(el => el.name)"""
    )
    assert unlabelled == []
