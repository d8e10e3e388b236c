"""A customer sees an instance's backups and asks for a restore; support finds the instance
across tenants, restores the chosen point in place (typing its name) and watches the real
worker bring it back, live, on the lab."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from backups.models import Backup, RestoreRequest
from backups.services import backup_start
from panel.access import access_for_user
from panel.registry import registry
from provisioning.hosts import host_provision
from provisioning.models import AtlassianInstance
from provisioning.services import instance_create
from tests.support.lab import run_operation, step_text

ENDED = re.compile(r"^(succeeded|failed|cancelled)$")
FAST = {"STANDIN_STARTUP_SECONDS": "2", "STANDIN_ACCESS_LOG": "0"}


def _ok(op):
    op = run_operation(op)
    assert op.status == "succeeded", f"{op.error}\n{step_text(op)}"
    return op


@pytest.fixture
def backed_up_instance(
    enrol_lab_host, pat, alice, acme, unique_name, cleanup_projects
) -> Iterator[AtlassianInstance]:
    """A running Jira stand-in of Acme on lab app1 with two backup points on lab backup1, all
    made through the panel's services in this process (kept off the broker and the worker)."""
    actor = access_for_user(pat)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("panel.operations.operation_enqueue", lambda op_id: None)
        # DNS, certificates and the proxy have their own tests; here they only add time.
        mp.setitem(registry["instance_hooks"], "publish", [])
        mp.setitem(registry["instance_hooks"], "unpublish", [])
        backup_host = enrol_lab_host("backup1")
        _ok(host_provision(actor=actor, host=backup_host))
        app_host = enrol_lab_host("app1", backup_host=backup_host)
        _ok(host_provision(actor=actor, host=app_host))
        name = unique_name("jira")
        op = instance_create(
            actor=access_for_user(alice),
            tenant=acme,
            name=name,
            product="jira-software",
            version="9.12.0",
            hostname=f"{name}.acme.example",
            host=app_host,
            heap_min_mb=512,
            heap_max_mb=1024,
            extra_env=FAST,
            tier="tier3",
        )
        instance = AtlassianInstance.objects.get(pk=op.instance_id)
        cleanup_projects.append(instance)
        _ok(op)
        instance.refresh_from_db()
        for _ in range(2):
            _ok(backup_start(actor=access_for_user(alice), instance=instance))
    instance.refresh_from_db()
    yield instance
    area = f"{backup_host.data_root}/hosts/{app_host.name}/{instance.name}"
    subprocess.run(
        ["docker", "exec", "panel-lab-backup1", "rm", "-rf", area],
        capture_output=True,
        timeout=60,
    )


def _log_out(page: Page) -> None:
    page.locator("#logout-button").click()
    expect(page.locator("#login-form")).to_be_visible()


def test_a_customer_asks_for_a_restore_and_support_restores_the_point_in_place(
    page, login, screenshot, page_problems, alice, sam, acme, globex, backed_up_instance
):
    instance = backed_up_instance
    older, newer = Backup.objects.filter(instance=instance).order_by("taken_at")
    assert older.status == newer.status == "succeeded"

    # --- the customer: the instance's backups, with sizes and dates, and a restore request
    login(alice)
    page.get_by_role("link", name=instance.name, exact=True).click()
    card = page.get_by_test_id("instance-backups")
    expect(card.get_by_test_id("point-count")).to_have_text(re.compile(r"^2\b"))
    expect(card.get_by_test_id("rpo-state")).to_have_text("Within RPO")
    card.locator("#backups-link").click()
    points = page.get_by_test_id("points-table").get_by_test_id("point-row")
    expect(points).to_have_count(2)
    row = page.get_by_test_id("points-table").locator(f'[data-point="{older.point_name}"]')
    expect(row).to_contain_text(f"{older.taken_at:%Y-%m-%d %H:%M} UTC")
    expect(row).to_contain_text(re.compile(r"\d+(\.\d+)?\s(bytes|KB|MB)"))  # its size
    expect(row).to_contain_text("Retained")
    screenshot("customer-backups")
    page.get_by_label("Point", exact=True).select_option(str(older.pk))
    page.get_by_label("What should come back, and why?").fill(
        "Someone deleted project SALES this morning; please bring back the earlier point."
    )
    page.locator("#restore-request").click()
    expect(page.get_by_test_id("message")).to_contain_text("Restore requested")
    assert RestoreRequest.objects.get(instance=instance).backup == older
    _log_out(page)

    # --- support: find the instance across tenants, restore the requested point in place
    login(sam)
    page.locator("#nav-staff-search").click()
    page.get_by_label("Search").fill(instance.name)
    expect(page.locator("#instance-table")).to_contain_text(instance.name)
    expect(page.locator("#instance-table")).to_contain_text("Acme")
    page.locator("#instance-table").get_by_role("link", name=instance.name, exact=True).click()
    expect(page.locator("#instance-name")).to_have_text(instance.name)
    expect(page.get_by_test_id("open-requests")).to_contain_text("1 restore request open")
    page.locator("#restore-link").click()

    page.get_by_label("Point", exact=True).select_option(str(older.pk))
    page.get_by_label("In place").check()
    # a name that does not match refuses the restore and says why
    page_problems.allowed_statuses.add(400)
    page.get_by_label("Type the instance's name to confirm an in-place restore").fill("acme")
    page.locator("#restore-submit").click()
    expect(page.get_by_test_id("error-confirm_name")).to_be_visible()
    assert instance.operations.filter(kind="backup.restore").count() == 0

    page.get_by_label("Point", exact=True).select_option(str(older.pk))
    page.get_by_label("In place").check()
    page.get_by_label("Type the instance's name to confirm an in-place restore").fill(instance.name)
    page.locator("#restore-submit").click()
    expect(page.locator("#operation-title")).to_contain_text("Restore")
    status = page.locator("#op-status")
    expect(status).to_have_attribute("data-status", "running", timeout=30_000)
    expect(page.locator("#op-log li").nth(3)).to_be_visible(timeout=60_000)
    screenshot("restore-running")
    expect(status).to_have_attribute("data-status", ENDED, timeout=180_000)
    assert status.get_attribute("data-status") == "succeeded", status.inner_text()
    expect(page.locator("#op-status progress")).to_have_attribute("value", "100")
    expect(page.locator("#op-log")).to_contain_text(older.point_name)
    screenshot("restore-succeeded")

    page.locator("#operation-instance").click()
    expect(page.locator("#instance-status")).to_contain_text("Running")
    instance.refresh_from_db()
    assert instance.status == "running"
