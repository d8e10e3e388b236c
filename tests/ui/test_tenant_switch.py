"""The header says which tenant the pages show; a member of several tenants switches there
(a CSRF-protected POST), and every page then shows that tenant only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from panel.access import ACTIVE_TENANT_SESSION_KEY
from tenants.models import AuditEvent, Membership, Tenant

pytestmark = pytest.mark.django_db

SWITCH = reverse("tenants:tenant_switch")


@pytest.fixture
def alice_in_globex(alice, globex):
    """Alice, admin of Acme, is also a viewer in Globex."""
    Membership.objects.create(user=alice, tenant=globex, role=Membership.Role.VIEWER)
    return alice


def _indicator(html: str) -> str:
    """The tenant name the header shows."""
    start = html.index('data-testid="tenant-indicator"')
    name = html.index('class="tenant-name">', start) + len('class="tenant-name">')
    return html[name : html.index("</span>", name)]


def _header(client: Client) -> str:
    return client.get(reverse("dashboard")).content.decode()


def test_a_member_of_one_tenant_sees_its_name_in_the_header_and_no_switcher(browser, bob):
    html = _header(browser(bob))
    assert "Acme" in _indicator(html)
    assert 'id="tenant-switcher"' not in html


def test_staff_see_that_they_work_across_all_tenants(browser, sam, acme):
    Membership.objects.create(user=sam, tenant=acme)  # even as a member of one
    html = _header(browser(sam))
    assert "All tenants" in _indicator(html)
    assert 'id="tenant-switcher"' not in html
    assert browser(sam).post(SWITCH, {"tenant": str(acme.pk)}).status_code == 404


def test_a_member_of_several_tenants_sees_all_of_them_until_they_switch(
    browser, alice_in_globex, acme, globex, acme_jira, globex_wiki
):
    client = browser(alice_in_globex)
    html = _header(client)
    assert "All my tenants" in _indicator(html)
    assert 'id="tenant-switcher"' in html
    assert f'value="{globex.pk}"' in html and f'value="{acme.pk}"' in html
    listing = client.get(reverse("provisioning:instance_list")).content.decode()
    assert 'data-instance="acme-jira"' in listing and 'data-instance="globex-wiki"' in listing


def test_switching_shows_only_that_tenant_on_every_page_and_in_the_session_api(
    browser, api, alice_in_globex, globex, acme_jira, globex_wiki
):
    client = browser(alice_in_globex)
    response = client.post(SWITCH, {"tenant": str(globex.pk)}, follow=True)
    assert response.redirect_chain == [(reverse("dashboard"), 302)]
    html = response.content.decode()
    assert "Globex" in _indicator(html)
    assert "Showing Globex only." in html
    listing = client.get(reverse("provisioning:instance_list")).content.decode()
    assert 'data-instance="globex-wiki"' in listing
    assert 'data-instance="acme-jira"' not in listing
    detail = reverse("provisioning:instance_detail", args=[acme_jira.pk])
    assert client.get(detail).status_code == 404
    # A viewer in Globex: nothing to create there, though she administers Acme.
    assert client.get(reverse("provisioning:instance_create")).status_code == 403
    # The browser's session calls to the API follow the same choice.
    names = [row["name"] for row in client.get("/api/instances/").json()["results"]]
    assert names == ["globex-wiki"]


def test_switching_back_shows_all_the_tenants_again(
    browser, alice_in_globex, globex, acme_jira, globex_wiki
):
    client = browser(alice_in_globex)
    client.post(SWITCH, {"tenant": str(globex.pk)})
    response = client.post(SWITCH, {"tenant": ""}, follow=True)
    assert "All my tenants" in _indicator(response.content.decode())
    assert ACTIVE_TENANT_SESSION_KEY not in client.session
    listing = client.get(reverse("provisioning:instance_list")).content.decode()
    assert 'data-instance="acme-jira"' in listing and 'data-instance="globex-wiki"' in listing


@pytest.mark.parametrize("value", ["initech", "not-a-uuid", "00000000-0000-4000-8000-000000000000"])
def test_a_tenant_the_user_does_not_belong_to_is_not_found(browser, alice_in_globex, value):
    other = Tenant.objects.create(name="Initech", slug="initech", contact_email="i@x.example")
    client = browser(alice_in_globex)
    posted = str(other.pk) if value == "initech" else value
    response = client.post(SWITCH, {"tenant": posted})
    assert response.status_code == 404
    assert b"Initech" not in response.content
    assert ACTIVE_TENANT_SESSION_KEY not in client.session


def test_someone_of_one_tenant_has_no_switch_to_post_to(browser, bob, acme):
    assert browser(bob).post(SWITCH, {"tenant": str(acme.pk)}).status_code == 404


def test_the_switch_is_a_csrf_protected_post(alice_in_globex, globex):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice_in_globex)
    assert client.get(SWITCH).status_code == 405
    assert client.post(SWITCH, {"tenant": str(globex.pk)}).status_code == 403
    assert ACTIVE_TENANT_SESSION_KEY not in client.session


def test_switching_changes_no_data_so_it_is_not_audited(browser, alice_in_globex, globex):
    before = AuditEvent.objects.count()
    browser(alice_in_globex).post(SWITCH, {"tenant": str(globex.pk)})
    assert AuditEvent.objects.count() == before


def test_a_choice_whose_membership_is_gone_falls_back_to_the_remaining_tenants(
    browser, alice_in_globex, globex, acme_jira, globex_wiki
):
    client = browser(alice_in_globex)
    client.post(SWITCH, {"tenant": str(globex.pk)})
    Membership.objects.filter(user=alice_in_globex, tenant=globex).delete()
    html = client.get(reverse("provisioning:instance_list")).content.decode()
    assert 'data-instance="acme-jira"' in html
    assert 'data-instance="globex-wiki"' not in html
    assert "Acme" in _indicator(html)


def _queries(client: Client, url: str) -> int:
    client.get(url)  # the session's first read is not part of the page
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("name", ["dashboard", "provisioning:instance_list"])
def test_the_indicator_and_the_switcher_cost_no_query(
    browser, alice, acme, globex, acme_jira, globex_wiki, name
):
    url = reverse(name)
    client = browser(alice)
    one_tenant = _queries(client, url)
    Membership.objects.create(user=alice, tenant=globex, role=Membership.Role.VIEWER)
    assert _queries(client, url) == one_tenant
    # Back to what the page showed with one tenant: Acme's rows, Alice its admin.
    client.post(SWITCH, {"tenant": str(acme.pk)})
    assert _queries(client, url) == one_tenant
