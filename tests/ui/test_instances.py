"""Instance pages: list and search, the create form, lifecycle buttons and licenses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from provisioning.models import AtlassianInstance, License, Operation
from tenants.models import Membership
from tests.backups.factories import backup_host, with_backup_host
from tests.support.factories import make_instance, make_operation

pytestmark = pytest.mark.django_db

GOOD = {
    "tenant": None,  # filled in per test
    "name": "acme-wiki",
    "product": "confluence",
    "version": "8.5.0",
    "hostname": "wiki.acme.example",
    "context_path": "",
    "heap_min_mb": "1024",
    "heap_max_mb": "2048",
    "tier": "",
}


def _form(tenant, **changes) -> dict:
    return {**GOOD, "tenant": str(tenant.pk), **changes}


# --- list and search ------------------------------------------------------------------------


def test_the_instance_list_searches_by_name_and_hostname(browser, alice, acme):
    make_instance(acme, "acme-jira")
    make_instance(acme, "acme-wiki", hostname="docs.acme.example")
    client = browser(alice)
    url = reverse("provisioning:instance_list")
    by_name = client.get(url, {"q": "jira"}).content
    assert b'data-instance="acme-jira"' in by_name
    assert b'data-instance="acme-wiki"' not in by_name
    by_host = client.get(url, {"q": "docs.acme"}).content
    assert b'data-instance="acme-wiki"' in by_host
    assert b'data-instance="acme-jira"' not in by_host
    nothing = client.get(url, {"q": "zzz"}).content
    assert b"No instance matches" in nothing


def test_the_status_filter_shows_degraded_and_failed_instances(browser, alice, acme):
    make_instance(acme, "acme-ok")
    make_instance(acme, "acme-slow", health="degraded")
    make_instance(acme, "acme-broken", status="failed")
    client = browser(alice)
    url = reverse("provisioning:instance_list")
    degraded = client.get(url, {"status": "degraded"}).content.decode()
    assert 'data-instance="acme-slow"' in degraded
    assert 'data-instance="acme-ok"' not in degraded
    assert 'data-status="degraded"' in degraded and "badge-warn" in degraded
    failed = client.get(url, {"status": "failed"}).content.decode()
    assert 'data-instance="acme-broken"' in failed and "badge-bad" in failed
    assert 'data-instance="acme-ok"' not in failed


def test_an_htmx_search_answers_with_only_the_table(browser, alice, acme_jira):
    response = browser(alice).get(
        reverse("provisioning:instance_list"),
        {"q": "acme"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="instance-table",
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="instance-table"')
    assert "<html" not in content and 'data-instance="acme-jira"' in content
    assert "HX-Request" in response["Vary"]


def test_the_instance_list_is_paginated(browser, alice, acme):
    for i in range(30):
        make_instance(acme, f"acme-app{i:02d}")
    client = browser(alice)
    url = reverse("provisioning:instance_list")
    first = client.get(url).content.decode()
    assert first.count('data-testid="instance-row"') == 25
    assert "Page 1 of 2" in first and 'id="page-next"' in first
    second = client.get(url, {"page": 2}).content.decode()
    assert second.count('data-testid="instance-row"') == 5


def test_deleted_instances_are_not_listed(browser, alice, acme):
    make_instance(acme, "acme-gone", status="deleted")
    page = browser(alice).get(reverse("provisioning:instance_list")).content
    assert b"acme-gone" not in page


def test_the_dashboard_tells_a_new_tenant_admin_how_to_create_the_first_instance(
    browser, alice, bob
):
    page = browser(alice).get(reverse("dashboard")).content.decode()
    assert 'data-testid="empty-instances"' in page
    assert 'id="create-first-instance"' in page
    viewer = browser(bob).get(reverse("dashboard")).content.decode()
    assert "An administrator of your tenant can create one" in viewer
    assert 'id="create-first-instance"' not in viewer


def test_the_dashboard_counts_expiring_licenses(browser, alice, acme_jira, acme_license):
    License.objects.create(
        instance=acme_jira,
        product="jira-software",
        key="AAAB-other",
        expiry_date=timezone.now().date() + timedelta(days=5),
    )
    page = browser(alice).get(reverse("dashboard")).content.decode()
    # acme_license expires in 20 days, the other in 5.
    assert _stat(page, "stat-licenses-7") == "1"
    assert _stat(page, "stat-licenses-30") == "2"
    assert _stat(page, "stat-licenses-60") == "2"
    assert 'data-instance="acme-jira"' in page and "https://acme-jira.example.com" in page


def _stat(page: str, testid: str) -> str:
    start = page.index(f'data-testid="{testid}"')
    value = page.index('class="stat-value">', start) + len('class="stat-value">')
    return page[value : page.index("<", value)]


# --- instance detail ------------------------------------------------------------------------


def test_the_instance_page_shows_facts_and_the_host_name_but_not_its_address(
    browser, alice, acme, app_host
):
    instance = make_instance(
        acme,
        "acme-jira",
        host=app_host,
        heap_min_mb=1024,
        heap_max_mb=3072,
        tier="tier1",
        context_path="/jira",
    )
    page = browser(alice).get(reverse("provisioning:instance_detail", args=[instance.pk]))
    content = page.content.decode()
    assert "https://acme-jira.example.com/jira" in content
    assert 'id="instance-host">app-one<' in content
    assert app_host.address not in content
    assert "1024–3072 MB" in content
    assert "Tier 1 (production)" in content
    assert "pw-acme-jira-secret" not in content


def test_the_instance_page_shows_license_facts_with_an_expiry_badge_but_never_the_key(
    browser, alice, acme_jira, acme_license
):
    content = (
        browser(alice)
        .get(reverse("provisioning:instance_detail", args=[acme_jira.pk]))
        .content.decode()
    )
    assert "SEN-123" in content
    assert 'data-testid="expiry-badge" data-days="20"' in content
    assert "20 days left" in content
    assert "AAAB-secret-license-key" not in content


def test_the_instance_page_explains_why_a_failed_instance_failed(browser, alice, acme):
    instance = make_instance(
        acme, "acme-jira", status="failed", status_reason="No ready app host has enough memory."
    )
    content = (
        browser(alice)
        .get(reverse("provisioning:instance_detail", args=[instance.pk]))
        .content.decode()
    )
    assert "No ready app host has enough memory." in content
    assert 'id="action-retry"' in content


# --- create ---------------------------------------------------------------------------------


def test_the_create_form_shows_field_errors_and_creates_nothing(browser, alice, acme):
    client = browser(alice)
    url = reverse("provisioning:instance_create")
    bad = _form(
        acme, hostname="not a host", heap_min_mb="4096", heap_max_mb="2048", version="1.0.0"
    )
    response = client.post(url, bad)
    content = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="error-hostname"' in content
    assert "Enter a fully qualified domain name" in content
    assert 'data-testid="error-version"' in content
    assert "1.0.0 is not an offered version of Confluence; choose 8.5.0, 8.9.0" in content
    assert 'data-testid="error-heap_min_mb"' in content
    assert "The minimum heap cannot exceed the maximum heap." in content
    assert 'aria-invalid="true"' in content
    assert not AtlassianInstance.objects.exists()
    assert not Operation.objects.exists()


def test_the_create_form_refuses_a_version_of_another_product(browser, alice, acme):
    response = browser(alice).post(
        reverse("provisioning:instance_create"), _form(acme, version="9.12.0")
    )
    assert 'data-testid="error-version"' in response.content.decode()
    assert not AtlassianInstance.objects.exists()


def test_the_create_form_refuses_a_taken_name_or_hostname(browser, alice, acme, globex_wiki):
    response = browser(alice).post(
        reverse("provisioning:instance_create"),
        _form(acme, name="globex-wiki", hostname="globex-wiki.example.com"),
    )
    content = response.content.decode()
    assert 'data-testid="error-name"' in content and 'data-testid="error-hostname"' in content
    assert AtlassianInstance.objects.count() == 1


def test_the_create_form_creates_the_instance_and_opens_its_pending_operation(browser, alice, acme):
    client = browser(alice)
    url = reverse("provisioning:instance_create")
    assert client.post(url, _form(acme, hostname="bad")).status_code == 200
    response = client.post(url, _form(acme, idempotency_key="ui-test-1"))
    instance = AtlassianInstance.objects.get(name="acme-wiki")
    operation = Operation.objects.get(instance=instance)
    assert response.status_code == 302
    assert response["Location"] == reverse("provisioning:operation_detail", args=[operation.pk])
    assert operation.status == "pending" and operation.kind == "instance.create"
    assert operation.requested_by == alice
    assert instance.tenant == acme and instance.status == "pending"
    assert instance.tier == acme.default_tier
    page = client.get(response["Location"]).content.decode()
    assert "acme-wiki is being created" in page
    assert 'id="op-log-poller"' in page and 'hx-trigger="every 1s"' in page


def test_submitting_the_create_form_twice_starts_one_rollout(browser, alice, acme):
    client = browser(alice)
    url = reverse("provisioning:instance_create")
    first = client.post(url, _form(acme, idempotency_key="ui-twice"))
    second = client.post(url, _form(acme, idempotency_key="ui-twice"))
    assert first["Location"] == second["Location"]
    assert Operation.objects.count() == 1


def test_the_create_form_offers_only_tenants_the_user_administers(
    browser, alice, globex, globex_wiki
):
    Membership.objects.create(user=alice, tenant=globex, role=Membership.Role.VIEWER)
    client = browser(alice)
    page = client.get(reverse("provisioning:instance_create")).content.decode()
    form = page.split("<main", 1)[1]  # the header's tenant switcher lists both tenants
    assert ">Acme<" in form and ">Globex<" not in form
    response = client.post(reverse("provisioning:instance_create"), _form(globex))
    assert 'data-testid="error-tenant"' in response.content.decode()
    assert AtlassianInstance.objects.filter(tenant=globex).count() == 1


def test_choosing_a_product_loads_its_versions(browser, alice):
    response = browser(alice).get(
        reverse("provisioning:instance_create"),
        {"product": "confluence"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="id_version",
        HTTP_HX_TRIGGER_NAME="product",
    )
    content = response.content.decode()
    assert content.strip().startswith("<select")
    assert 'value="8.5.0"' in content and 'value="8.9.0"' in content
    assert 'value="9.12.0"' not in content


def test_without_javascript_the_version_list_groups_every_products_versions(browser, alice):
    content = browser(alice).get(reverse("provisioning:instance_create")).content.decode()
    assert '<optgroup label="Confluence">' in content
    assert '<optgroup label="Jira Software">' in content
    assert 'hx-get="/instances/new/"' in content


def test_sam_from_support_can_create_an_instance_for_any_tenant(browser, sam, globex):
    response = browser(sam).post(reverse("provisioning:instance_create"), _form(globex))
    assert response.status_code == 302
    assert AtlassianInstance.objects.get(name="acme-wiki").tenant == globex


# --- lifecycle ------------------------------------------------------------------------------


def _act(client, instance, action, **data):
    return client.post(reverse("provisioning:instance_action", args=[instance.pk, action]), data)


def test_restart_starts_an_operation_and_redirects_to_it(browser, alice, acme_jira):
    response = _act(browser(alice), acme_jira, "restart")
    operation = Operation.objects.get()
    assert operation.kind == "instance.restart" and operation.status == "pending"
    assert response["Location"] == reverse("provisioning:operation_detail", args=[operation.pk])


def test_a_second_action_while_one_runs_explains_the_conflict_with_a_link(
    browser, alice, acme_jira
):
    running = make_operation(acme_jira, kind="instance.upgrade", status="running")
    client = browser(alice)
    response = _act(client, acme_jira, "restart")
    assert response["Location"] == reverse("provisioning:instance_detail", args=[acme_jira.pk])
    page = client.get(response["Location"]).content.decode()
    assert "An operation is already running on this instance" in page
    assert f'href="/operations/{running.pk}/"' in page
    assert Operation.objects.count() == 1


def test_an_action_the_status_does_not_allow_is_explained(browser, alice, acme_jira):
    client = browser(alice)
    response = _act(client, acme_jira, "start")
    page = client.get(response["Location"]).content.decode()
    assert "Cannot start acme-jira while it is running." in page
    assert not Operation.objects.exists()


def test_delete_requires_typing_the_instance_name(browser, alice, acme_jira):
    client = browser(alice)
    response = _act(client, acme_jira, "delete", confirm_name="acme")
    page = client.get(response["Location"]).content.decode()
    assert "Type acme-jira exactly to delete this instance" in page
    assert not Operation.objects.exists()
    response = _act(client, acme_jira, "delete", confirm_name="acme-jira")
    assert Operation.objects.get().kind == "instance.delete"


def test_upgrade_offers_other_versions_and_refuses_unknown_ones(
    browser, alice, acme_jira, app_host
):
    client = browser(alice)
    page = client.get(reverse("provisioning:instance_detail", args=[acme_jira.pk])).content
    assert b'<option value="9.17.0">' in page and b'<option value="9.12.0">' not in page
    _act(client, acme_jira, "upgrade", version="7.0.0")
    assert not Operation.objects.exists()
    # A host without a backup host: refused with the reason on the form (no point possible).
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    response = _act(client, acme_jira, "upgrade", version="9.17.0")
    page = client.get(response["Location"]).content.decode()
    assert "its app host app-one has no backup host" in page
    assert not Operation.objects.exists()
    with_backup_host(app_host, backup_host())
    _act(client, acme_jira, "upgrade", version="9.17.0")
    operation = Operation.objects.get()
    assert operation.kind == "instance.upgrade" and operation.params == {"version": "9.17.0"}


def test_resize_checks_the_heap(browser, alice, acme_jira):
    client = browser(alice)
    response = _act(client, acme_jira, "resize", heap_min_mb="4096", heap_max_mb="2048")
    page = client.get(response["Location"]).content.decode()
    assert "The minimum heap cannot exceed the maximum heap." in page
    assert not Operation.objects.exists()
    _act(client, acme_jira, "resize", heap_min_mb="2048", heap_max_mb="4096")
    assert Operation.objects.get().params == {"heap_min_mb": 2048, "heap_max_mb": 4096}


def test_actions_must_be_posted(browser, alice, acme_jira):
    url = reverse("provisioning:instance_action", args=[acme_jira.pk, "stop"])
    assert browser(alice).get(url).status_code == 405
    assert not Operation.objects.exists()


def test_an_unknown_action_is_not_found(browser, alice, acme_jira):
    assert _act(browser(alice), acme_jira, "explode").status_code == 404


def test_sam_from_support_can_restart_any_tenants_instance(browser, sam, globex_wiki):
    _act(browser(sam), globex_wiki, "restart")
    assert Operation.objects.get().instance == globex_wiki


# --- licenses -------------------------------------------------------------------------------


def test_a_tenant_admin_adds_a_license_and_its_key_is_never_shown(browser, alice, acme_jira):
    client = browser(alice)
    key = "AAAB-pasted-secret-key-0123456789"
    response = client.post(
        reverse("provisioning:license_add", args=[acme_jira.pk]),
        {"license-key": key, "license-sen": "SEN-999", "license-expiry_date": "2030-01-31"},
    )
    assert response.status_code == 302
    lic = License.objects.get(instance=acme_jira)
    assert lic.key == key and lic.sen == "SEN-999"
    assert lic.decode_status == "not_decoded"
    for url in (
        response["Location"],
        reverse("dashboard"),
        reverse("provisioning:instance_list"),
        reverse("provisioning:operation_list"),
    ):
        content = client.get(url).content.decode()
        assert key not in content and "pasted-secret" not in content, url
    detail = client.get(response["Location"]).content.decode()
    assert "SEN-999" in detail and "2030-01-31" in detail


def test_a_rejected_license_form_does_not_echo_the_key(browser, alice, acme_jira):
    key = "AAAB-echo-me-not-0123456789"
    response = browser(alice).post(
        reverse("provisioning:license_add", args=[acme_jira.pk]),
        {"license-key": key, "license-expiry_date": "not-a-date"},
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="error-expiry_date"' in content
    assert key not in content
    assert not License.objects.exists()


def test_an_empty_license_key_is_refused_next_to_the_field(browser, alice, acme_jira):
    response = browser(alice).post(
        reverse("provisioning:license_add", args=[acme_jira.pk]), {"license-key": "   "}
    )
    assert 'data-testid="error-key"' in response.content.decode()
    assert not License.objects.exists()


def test_a_degraded_instance_says_since_when_it_runs_not_since_when_it_degraded(
    browser, alice, acme
):
    # Degraded is the health of a running instance: the time beside it is the status's (when it
    # started running), so the page says "running since", not "degraded since" that long ago.
    inst = make_instance(acme, "acme-jira", health="degraded")
    AtlassianInstance.objects.filter(pk=inst.pk).update(
        status_changed_at=timezone.now() - timedelta(days=20)
    )
    page = browser(alice).get(reverse("provisioning:instance_detail", args=[inst.pk]))
    since = page.content.decode().split('data-testid="status-since">')[1].split("</small>")[0]
    assert since.startswith("running since 2")
    AtlassianInstance.objects.filter(pk=inst.pk).update(health="healthy")
    page = browser(alice).get(reverse("provisioning:instance_detail", args=[inst.pk]))
    since = page.content.decode().split('data-testid="status-since">')[1].split("</small>")[0]
    assert since.startswith("since 2")
