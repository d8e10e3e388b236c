"""Crowd's setup: a new Crowd answers at /crowd, and its page says what to type into Crowd's
setup wizard; the database password is shown only on an audited POST by the tenant's admins
and staff."""

from __future__ import annotations

import pytest
from django.urls import reverse

from panel.access import access_for_user
from provisioning.models import AtlassianInstance, InstanceHealthCheck
from provisioning.services import instance_create
from tenants.models import AuditEvent
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def _crowd(acme, **fields) -> AtlassianInstance:
    return make_instance(
        acme, "acme-crowd", product="crowd", version="5.3.0", context_path="/crowd", **fields
    )


def _reveal(client, inst, *, htmx: bool = False):
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "crowd-db-password"} if htmx else {}
    return client.post(reverse("provisioning:instance_db_password", args=[inst.pk]), **headers)


def test_a_new_crowd_without_a_context_gets_crowds_own(alice, acme, no_broker):
    op = instance_create(
        actor=access_for_user(alice),
        tenant=acme,
        name="acme-crowd",
        product="crowd",
        version="5.3.0",
        hostname="id.acme.example",
    )
    inst = AtlassianInstance.objects.get(pk=op.instance_id)
    assert inst.context_path == "/crowd"
    assert inst.base_url == "https://id.acme.example/crowd"
    other = instance_create(
        actor=access_for_user(alice),
        tenant=acme,
        name="acme-jira",
        product="jira-software",
        version="9.12.0",
        hostname="jira.acme.example",
    )
    assert AtlassianInstance.objects.get(pk=other.instance_id).context_path == ""


def test_the_crowd_page_shows_the_database_to_type_but_not_the_password(browser, alice, acme):
    inst = _crowd(acme)
    page = browser(alice).get(reverse("provisioning:instance_detail", args=[inst.pk]))
    html = page.content.decode()
    assert "Finish Crowd's setup" in html
    assert (
        '<code class="mono" id="db-setup-jdbc-url">jdbc:postgresql://db:5432/acme_crowd</code>'
        in html
    )
    assert '<code class="mono" id="db-setup-user">acme_crowd</code>' in html
    assert "pw-acme-crowd-secret" not in html
    assert 'id="action-db-password"' in html


def test_once_crowd_was_seen_running_the_panel_is_just_its_database(browser, alice, acme):
    inst = _crowd(acme)
    InstanceHealthCheck.objects.create(instance=inst, ok=True, state="RUNNING")
    html = browser(alice).get(reverse("provisioning:instance_detail", args=[inst.pk])).content
    assert b"Finish Crowd" not in html and b"Crowd's database</h2>" in html


def test_other_products_show_no_setup_panel(browser, alice, acme):
    inst = make_instance(acme, "acme-jira")
    html = browser(alice).get(reverse("provisioning:instance_detail", args=[inst.pk])).content
    assert b'data-testid="database-setup"' not in html
    assert _reveal(browser(alice), inst).status_code == 302
    assert not AuditEvent.objects.filter(action="instance.db_password_reveal").exists()


def test_a_tenant_admin_reveals_the_password_and_it_is_audited(browser, alice, acme):
    inst = _crowd(acme)
    response = _reveal(browser(alice), inst, htmx=True)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.content.decode()
    assert '<code class="mono" id="db-setup-password">pw-acme-crowd-secret</code>' in body
    assert "<html" not in body  # the fragment only
    event = AuditEvent.objects.get(action="instance.db_password_reveal")
    assert event.actor == alice and event.target_id == str(inst.pk)
    assert "pw-acme-crowd-secret" not in str(event.changes)


def test_without_htmx_the_whole_page_shows_the_password(browser, sam, acme):
    inst = _crowd(acme)
    response = _reveal(browser(sam), inst)  # support staff
    assert response.status_code == 200
    assert b'id="db-setup-password">pw-acme-crowd-secret<' in response.content
    assert b'id="instance-name"' in response.content
    assert AuditEvent.objects.filter(action="instance.db_password_reveal", actor=sam).count() == 1


def test_a_viewer_sees_no_button_and_cannot_reveal(browser, bob, acme):
    inst = _crowd(acme)
    client = browser(bob)
    html = client.get(reverse("provisioning:instance_detail", args=[inst.pk])).content
    assert b'id="action-db-password"' not in html and b"administrators can show it" in html
    assert _reveal(client, inst).status_code == 403
    assert not AuditEvent.objects.filter(action="instance.db_password_reveal").exists()


def test_another_tenant_gets_404_and_an_anonymous_caller_the_login(browser, charlie, acme):
    inst = _crowd(acme)
    assert _reveal(browser(charlie), inst).status_code == 404
    anonymous = _reveal(browser(None), inst)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    assert not AuditEvent.objects.filter(action="instance.db_password_reveal").exists()


def test_a_get_reveals_nothing(browser, alice, acme):
    inst = _crowd(acme)
    response = browser(alice).get(reverse("provisioning:instance_db_password", args=[inst.pk]))
    assert response.status_code == 405
    assert b"pw-acme-crowd-secret" not in response.content
