"""A platform admin enrols lab host app2 in the browser, confirms its host key fingerprint
against the one the host itself reports, and provisions it; the real worker does the work."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from provisioning.models import Host
from tests.support.lab import lab_admin_connection

ENDED = re.compile(r"^(succeeded|failed|cancelled)$")


@pytest.fixture
def forget_panel_key(lab_state) -> Iterator[list[str]]:
    """Names of hosts whose panel key is removed from the lab host afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        host = Host.objects.filter(name=f"lab-{name}").first()
        if host is None or not host.ssh_public_key:
            continue
        try:
            with lab_admin_connection(lab_state, name) as conn:
                conn.run(
                    [
                        "sh",
                        "-c",
                        'f="$HOME/.ssh/authorized_keys"; grep -vxF "$1" "$f" > "$f.panel-test" '
                        '|| true; cat "$f.panel-test" > "$f"; rm -f "$f.panel-test"',
                        "sh",
                        host.ssh_public_key,
                    ]
                )
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's result
            print(f"could not remove the test key from {name}: {exc}")


def wait_for_operation_end(page, timeout: int = 120_000) -> None:
    status = page.locator("#op-status")
    expect(status).to_have_attribute("data-status", ENDED, timeout=timeout)
    assert status.get_attribute("data-status") == "succeeded", status.inner_text()


def test_an_admin_enrols_and_provisions_a_host_after_confirming_its_fingerprint(
    page, login, screenshot, page_problems, pat, lab_hosts, forget_panel_key
):
    spec = lab_hosts["app2"]
    forget_panel_key.append("app2")
    # two hosts the panel already manages (never contacted here), one with a nearly full disk
    Host.objects.create(
        name="backup-fra-1",
        role="backup",
        address="127.0.0.31",
        status="ready",
        disk_total_bytes=4000 * 1024**3,
        disk_free_bytes=2600 * 1024**3,
    )
    Host.objects.create(
        name="app-fra-1",
        role="app",
        address="127.0.0.32",
        status="ready",
        memory_mb=65536,
        disk_total_bytes=500 * 1024**3,
        disk_free_bytes=40 * 1024**3,
    )
    login(pat)
    page.locator("#nav-hosts").click()
    expect(page.get_by_role("heading", name="Hosts", exact=True)).to_be_visible()
    page.locator("#enrol-host").click()

    page.get_by_label("Name", exact=True).fill("lab-app2")
    page.get_by_label("Role").select_option("app")
    page.get_by_label("Address", exact=True).fill(spec["address"])
    page.get_by_label("SSH port", exact=True).fill(str(spec["ssh_port"]))
    page.get_by_label("SSH user").fill(spec["ssh_user"])
    page.get_by_label("Data root").fill(spec["data_root"])
    page.get_by_label("Private address", exact=True).fill(spec["private_address"])
    page.get_by_label("SSH port at the private address").fill("22")
    screenshot("enrol-form")
    page.locator("#host-enrol-submit").click()

    # first contact fetches the host key without logging in; the panel then asks to confirm it
    expect(page.locator("#host-name")).to_have_text("lab-app2")
    seen = page.locator("#seen-fingerprint")
    expect(seen).to_be_visible(timeout=60_000)
    expect(seen).to_have_text(spec["host_key_fingerprint"])
    expect(page.get_by_test_id("no-actions")).to_contain_text("Confirm the host key first")
    screenshot("confirm-fingerprint")

    # a fingerprint that is not the one the host showed is refused and explained
    page_problems.allowed_statuses.add(400)
    page.get_by_label("Fingerprint").fill("SHA256:" + "A" * 43)
    page.get_by_label("One-time password").fill(spec["root_password"])
    page.locator("#host-trust-submit").click()
    expect(page.get_by_test_id("error-fingerprint")).to_contain_text("is not the key lab-app2")
    assert Host.objects.get(name="lab-app2").host_key_fingerprint == ""

    # the fingerprint the admin compared with the host's own console
    page.get_by_label("Fingerprint").fill(spec["host_key_fingerprint"])
    page.get_by_label("One-time password").fill(spec["root_password"])
    page.locator("#host-trust-submit").click()
    expect(page.locator("#operation-title")).to_contain_text("Host first contact")
    wait_for_operation_end(page)

    page.locator("#operation-host").click()
    expect(page.locator("#pinned-fingerprint")).to_have_text(spec["host_key_fingerprint"])
    page.locator("#action-provision").click()
    expect(page.locator("#operation-title")).to_contain_text("Host provision")
    wait_for_operation_end(page, timeout=180_000)
    screenshot("provisioned-log")

    page.locator("#nav-hosts").click()
    row = page.locator("tr", has_text="lab-app2")
    expect(row.get_by_test_id("status-badge")).to_have_text("Ready")
    expect(page.get_by_test_id("disk-warnings")).to_contain_text("1 host has a data disk")
    screenshot("hosts", docs="hosts")
    host = Host.objects.get(name="lab-app2")
    assert host.status == Host.Status.READY
    assert host.host_key_fingerprint == spec["host_key_fingerprint"]
