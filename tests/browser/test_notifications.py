"""A tenant admin chooses who is notified of what, adds a signed webhook, sends a test and sees
it delivered by the real worker to a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json

from playwright.sync_api import expect

from notifications.models import NotificationPreference

SECRET = "browser-test-webhook-secret"


def test_a_tenant_admin_sets_up_notifications_and_a_test_arrives_signed(
    page, login, screenshot, page_problems, alice, acme, browser_webhook, live
):
    browser_webhook.clear()
    login(alice)
    page.locator("#nav-notifications").click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    expect(page.get_by_label("Email recipients")).to_have_value("ops@acme.example")
    expect(page.get_by_test_id("empty-deliveries")).to_be_visible()

    # a mistake first: a webhook without a secret is explained next to the field
    page_problems.allowed_statuses.add(400)
    page.get_by_label("Email recipients").fill("oncall@acme.example\nops@acme.example")
    page.get_by_label("A license expires soon").uncheck()
    page.get_by_label("Call a webhook").check()
    page.get_by_label("Webhook URL").fill(browser_webhook.url)
    page.locator("#notification-save").click()
    expect(page.get_by_test_id("error-webhook_secret")).to_contain_text("Set a shared secret")
    assert not NotificationPreference.objects.exists()

    page.get_by_label("Shared secret").fill(SECRET)
    page.locator("#notification-save").click()
    expect(page.get_by_test_id("message")).to_have_text("Notification settings saved.")
    expect(page.get_by_label("A license expires soon")).not_to_be_checked()
    expect(page.get_by_label("An operation failed")).to_be_checked()
    expect(page.get_by_label("Shared secret")).to_have_value("")  # never shown again

    page.locator("#notification-test").click()
    expect(page.get_by_test_id("message")).to_contain_text("queued on 2 channels")
    # the worker delivers; the log shows it after a reload
    rows = page.get_by_test_id("delivery-row")
    for _ in range(30):
        if rows.count() == 2 and all(
            r.get_attribute("data-status") == "delivered" for r in rows.all()
        ):
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(page.locator('[data-testid="delivery-row"][data-status="delivered"]')).to_have_count(2)
    screenshot("notifications", docs="notifications")

    [request] = browser_webhook.wait_for(1)
    signature = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Panel-Signature"] == signature
    payload = json.loads(request.body)
    assert payload["event"] == "test" and payload["tenant"]["slug"] == "acme"
    assert payload["url"] == f"{live}/notifications/?tenant={acme.pk}"
