"""A tenant admin creates an instance with the form and watches its rollout on a lab host,
carried out by the real worker."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from provisioning.models import AtlassianInstance

ROLLOUT_TIMEOUT_MS = 150_000
ENDED = re.compile(r"^(succeeded|failed|cancelled)$")


def test_a_tenant_admin_creates_an_instance_and_watches_its_rollout(
    page, login, screenshot, alice, acme, lab_app_host, unique_name, cleanup_projects
):
    name = unique_name("jira")
    login(alice)
    expect(page.get_by_test_id("empty-instances")).to_be_visible()
    page.locator("#create-instance").click()
    expect(page.get_by_role("heading", name="New instance")).to_be_visible()

    # first attempt: a name that is not a slug and a heap upside down
    page.get_by_label("Name", exact=True).fill("Sales Jira!")
    page.get_by_label("Product").select_option("jira-software")
    version = page.get_by_label("Version")
    # choosing the product loads its versions (htmx) in place of every product's
    expect(version.locator("option").first).to_have_text("Choose a version…")
    expect(version.locator("option", has_text="8.5.0")).to_have_count(0)
    version.select_option("9.12.0")
    page.get_by_label("Hostname (FQDN)").fill(f"{name}.acme.example")
    page.get_by_label("Context path").fill("/jira")
    page.get_by_label("Minimum heap (MB)").fill("2048")
    page.get_by_label("Maximum heap (MB)").fill("1024")
    page.locator("#instance-create-submit").click()

    expect(page.get_by_test_id("form-errors")).to_contain_text("nothing was saved")
    expect(page.get_by_test_id("error-name")).to_be_visible()
    expect(page.get_by_test_id("error-heap_min_mb")).to_contain_text(
        "cannot exceed the maximum heap"
    )
    # what was typed is kept, and the product's versions are still offered
    expect(page.get_by_label("Hostname (FQDN)")).to_have_value(f"{name}.acme.example")
    expect(page.get_by_label("Version")).to_have_value("9.12.0")
    screenshot("validation-errors")
    assert not AtlassianInstance.objects.exists()

    # second attempt: fixed
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Minimum heap (MB)").fill("512")
    page.locator("#instance-create-submit").click()

    expect(page.locator("#operation-title")).to_contain_text("Instance create")
    instance = AtlassianInstance.objects.get(name=name)
    cleanup_projects.append(instance)
    expect(page.get_by_test_id("message")).to_contain_text(f"{name} is being created")
    status = page.locator("#op-status")
    expect(status).to_have_attribute("data-status", "running", timeout=30_000)
    expect(page.get_by_test_id("progress-steps")).to_contain_text("of 5 stages done")
    # the log fills in live while the worker rolls the instance out
    expect(page.locator("#op-log li").nth(2)).to_be_visible(timeout=60_000)
    screenshot("rollout-running", docs="operation-log")
    expect(status).to_have_attribute("data-status", ENDED, timeout=ROLLOUT_TIMEOUT_MS)
    assert status.get_attribute("data-status") == "succeeded", status.inner_text()
    expect(page.locator("#op-log-poller")).to_have_attribute("data-state", "ended")
    expect(page.locator("#op-status progress")).to_have_attribute("value", "100")
    expect(page.locator("#op-outcome")).to_contain_text("Finished successfully")
    steps = page.locator("#op-log li").count()
    assert steps >= 5
    screenshot("rollout-succeeded")

    page.locator("#operation-instance").click()
    expect(page.locator("#instance-status")).to_contain_text("Running")
    expect(page.locator("#instance-host")).to_have_text(lab_app_host.name)
    expect(page.locator("#instance-heap")).to_have_text("512–1024 MB")
    instance.refresh_from_db()
    assert instance.status == "running" and instance.health == "healthy"
    screenshot("instance-running")
