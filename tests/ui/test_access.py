"""Who sees which page: every role gets the right pages and nothing of another tenant."""

from __future__ import annotations

import pytest
from django.urls import reverse

from provisioning.models import AtlassianInstance, Operation
from tenants.models import Membership

pytestmark = pytest.mark.django_db


def _pages(instance: AtlassianInstance, op: Operation) -> list[str]:
    return [
        reverse("dashboard"),
        reverse("provisioning:instance_list"),
        reverse("provisioning:instance_detail", args=[instance.pk]),
        reverse("provisioning:operation_list"),
        reverse("provisioning:operation_detail", args=[op.pk]),
        reverse("provisioning:operation_log", args=[op.pk]),
        reverse("tenants:token_list"),
    ]


def test_anonymous_visitors_are_sent_to_the_login_page(browser, acme_jira, acme_op):
    pages = _pages(acme_jira, acme_op) + [
        reverse("provisioning:instance_create"),
        reverse("tenants:staff_tenants"),
        reverse("provisioning:staff_instances"),
    ]
    for url in pages:
        response = browser(None).get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


def test_anonymous_posts_change_nothing_and_go_to_login(browser, acme_jira):
    url = reverse("provisioning:instance_action", args=[acme_jira.pk, "stop"])
    response = browser(None).post(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Operation.objects.exists()


def test_the_login_page_logs_a_user_in_and_logout_is_a_post(alice, client):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'id="login-submit"' in page.content
    wrong = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert b'data-testid="login-error"' in wrong.content
    from tests.support.factories import PASSWORD

    ok = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert ok.status_code == 302 and ok["Location"] == reverse("dashboard")
    dashboard = client.get(reverse("dashboard"))
    assert b'id="logout-button"' in dashboard.content
    assert client.get(reverse("logout")).status_code == 405  # a link cannot log you out
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_every_page_renders_for_alice(browser, alice, acme_jira, acme_op):
    client = browser(alice)
    expected = {
        reverse("dashboard"): "acme-jira",
        reverse("provisioning:instance_list"): "acme-jira",
        reverse(
            "provisioning:instance_detail", args=[acme_jira.pk]
        ): "https://acme-jira.example.com",
        reverse("provisioning:instance_create"): "Create instance",
        reverse("provisioning:operation_list"): "Instance restart",
        reverse("provisioning:operation_detail", args=[acme_op.pk]): "Pulling image",
        reverse("provisioning:operation_log", args=[acme_op.pk]): "Pulling image",
        reverse("tenants:token_list"): "New token",
    }
    for url, text in expected.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert text in response.content.decode(), url


def test_alice_sees_create_and_lifecycle_buttons(browser, alice, acme_jira):
    client = browser(alice)
    assert b'id="create-instance"' in client.get(reverse("dashboard")).content
    page = client.get(reverse("provisioning:instance_detail", args=[acme_jira.pk])).content
    for button in (
        b'id="action-stop"',
        b'id="action-restart"',
        b'id="action-upgrade"',
        b'id="action-resize"',
        b'id="action-delete"',
        b'id="license-submit"',
    ):
        assert button in page
    # A running instance cannot be started again.
    assert b'id="action-start"' not in page


def test_bob_the_viewer_sees_every_page_but_no_buttons_that_change_things(
    browser, bob, acme_jira, acme_op
):
    client = browser(bob)
    for url in _pages(acme_jira, acme_op):
        assert client.get(url).status_code == 200, url
    dashboard = client.get(reverse("dashboard")).content
    assert b'id="create-instance"' not in dashboard
    page = client.get(reverse("provisioning:instance_detail", args=[acme_jira.pk])).content
    assert b"acme-jira" in page
    for marker in (b"action-", b'id="license-form"', b'id="actions"'):
        assert marker not in page
    op_page = client.get(reverse("provisioning:operation_detail", args=[acme_op.pk])).content
    assert b'id="operation-cancel"' not in op_page


def test_bob_is_refused_every_change(browser, bob, acme_jira, acme_op):
    client = browser(bob)
    assert client.get(reverse("provisioning:instance_create")).status_code == 403
    assert client.post(reverse("provisioning:instance_create"), {}).status_code == 403
    for action in ("start", "stop", "restart", "upgrade", "resize", "delete", "retry"):
        url = reverse("provisioning:instance_action", args=[acme_jira.pk, action])
        assert client.post(url, {"confirm_name": "acme-jira"}).status_code == 403, action
    url = reverse("provisioning:license_add", args=[acme_jira.pk])
    assert client.post(url, {"license-key": "AAAB"}).status_code == 403
    url = reverse("provisioning:operation_cancel", args=[acme_op.pk])
    assert client.post(url).status_code == 403
    acme_op.refresh_from_db()
    assert not acme_op.cancel_requested
    assert Operation.objects.count() == 1
    assert not acme_jira.licenses.exists()


def test_charlie_gets_404_for_acme_instance_and_operation_pages(
    browser, charlie, acme_jira, acme_op, acme_license
):
    client = browser(charlie)
    for url in (
        reverse("provisioning:instance_detail", args=[acme_jira.pk]),
        reverse("provisioning:operation_detail", args=[acme_op.pk]),
        reverse("provisioning:operation_log", args=[acme_op.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"acme" not in response.content.lower(), url
    for url in (
        reverse("provisioning:instance_action", args=[acme_jira.pk, "stop"]),
        reverse("provisioning:license_add", args=[acme_jira.pk]),
        reverse("provisioning:operation_cancel", args=[acme_op.pk]),
    ):
        assert client.post(url, {"license-key": "AAAB"}).status_code == 404, url
    assert Operation.objects.count() == 1
    assert acme_jira.licenses.count() == 1


def test_acme_names_appear_nowhere_on_charlies_pages(
    browser, charlie, acme_jira, acme_op, acme_license, globex_wiki, globex_op
):
    client = browser(charlie)
    for url in (
        reverse("dashboard"),
        reverse("provisioning:instance_list"),
        reverse("provisioning:operation_list"),
        reverse("provisioning:instance_create"),
        reverse("tenants:token_list"),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        content = response.content.decode().lower()
        assert "acme" not in content, url
    assert b"globex-wiki" in client.get(reverse("dashboard")).content
    search = client.get(reverse("provisioning:instance_list"), {"q": "jira"}).content
    assert b"acme-jira" not in search


def test_sam_from_support_sees_both_tenants_and_the_staff_pages(
    browser, sam, acme_jira, acme_op, globex_wiki, globex_op
):
    client = browser(sam)
    dashboard = client.get(reverse("dashboard")).content
    assert b"acme-jira" in dashboard and b"globex-wiki" in dashboard
    for url in _pages(acme_jira, acme_op) + _pages(globex_wiki, globex_op):
        # 286: the log of an operation that has ended (htmx stops polling).
        assert client.get(url).status_code in (200, 286), url
    tenants = client.get(reverse("tenants:staff_tenants"))
    assert tenants.status_code == 200
    assert b'data-tenant="acme"' in tenants.content and b'data-tenant="globex"' in tenants.content
    assert b'id="nav-staff-tenants"' in dashboard
    # Support acts on any instance but does not manage hosts.
    assert b'id="nav-hosts"' not in dashboard
    page = client.get(reverse("provisioning:instance_detail", args=[acme_jira.pk])).content
    assert b'id="action-restart"' in page


def test_staff_instance_search_finds_instances_by_name_hostname_and_tenant(
    browser, sam, acme_jira, globex_wiki
):
    client = browser(sam)
    url = reverse("provisioning:staff_instances")
    by_tenant = client.get(url, {"q": "globex"}).content
    assert b'data-instance="globex-wiki"' in by_tenant
    assert b'data-instance="acme-jira"' not in by_tenant
    by_host = client.get(url, {"q": "acme-jira.example"}).content
    assert b'data-instance="acme-jira"' in by_host
    assert b'data-instance="globex-wiki"' not in by_host
    everyone = client.get(url).content
    assert b'data-instance="acme-jira"' in everyone and b'data-instance="globex-wiki"' in everyone


def test_customers_get_404_on_staff_pages(browser, alice, bob, charlie):
    for user in (alice, bob, charlie):
        client = browser(user)
        assert client.get(reverse("tenants:staff_tenants")).status_code == 404
        assert client.get(reverse("provisioning:staff_instances")).status_code == 404
        nav = client.get(reverse("dashboard")).content
        assert b'id="nav-staff-tenants"' not in nav and b'id="nav-hosts"' not in nav


def test_pat_the_platform_admin_sees_everything_and_a_hosts_link(
    browser, pat, acme_jira, acme_op, globex_wiki
):
    client = browser(pat)
    dashboard = client.get(reverse("dashboard")).content
    assert b'id="nav-hosts"' in dashboard
    assert b"acme-jira" in dashboard and b"globex-wiki" in dashboard
    for url in _pages(acme_jira, acme_op):
        assert client.get(url).status_code == 200, url
    assert client.get(reverse("tenants:staff_tenants")).status_code == 200


def test_a_user_of_two_tenants_sees_both_with_their_tenant_named(
    browser, alice, globex, acme_jira, globex_wiki
):
    Membership.objects.create(user=alice, tenant=globex, role=Membership.Role.VIEWER)
    page = browser(alice).get(reverse("provisioning:instance_list")).content.decode()
    assert "acme-jira" in page and "globex-wiki" in page
    assert ">Tenant</th>" in page
