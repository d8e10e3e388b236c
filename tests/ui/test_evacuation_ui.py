"""Evacuation in the UI: the host page's panel (platform admins), the confirm page (staff: the
plan, the host's name typed to confirm, form errors, never a 500), the purge of fenced copies
and the DR dashboard's last evacuation. Customers see none of it (404)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from backups.evacuate import host_evacuate_start
from backups.models import BackupOperationKind
from panel.access import access_for_user
from panel.registry import registry
from provisioning.models import EvacuatedCopy, Host, Operation, OperationKind
from tests.backups.evacuation_world import evacuation_finished, evacuation_world, instance_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(acme, app_host):
    world = evacuation_world(app_host)
    instance_on(acme, "acme-jira", world.down, tier="tier1")
    instance_on(acme, "acme-new", world.down, point=False)
    return world


def _evacuate_url(host: Host) -> str:
    return reverse("backups:host_evacuate", args=[host.pk])


def test_the_host_panel_is_registered_by_backups():
    assert registry["host_panels"] == ["backups/_host_evacuation.html"]


def test_a_down_hosts_page_offers_evacuate_to_platform_admins(browser, pat, world):
    html = browser(pat).get(reverse("hosts:detail", args=[world.down.pk])).content.decode()
    assert 'data-testid="host-evacuation"' in html
    assert 'data-testid="host-down"' in html
    assert _evacuate_url(world.down) in html
    assert 'data-testid="no-evacuation"' in html


def test_a_ready_hosts_page_has_the_panel_without_evacuate(browser, pat, world):
    html = browser(pat).get(reverse("hosts:detail", args=[world.target.pk])).content.decode()
    assert 'data-testid="evacuation-not-down"' in html
    assert 'id="evacuate-link"' not in html


def test_a_backup_hosts_page_has_no_evacuation_panel(browser, pat, world):
    html = browser(pat).get(reverse("hosts:detail", args=[world.backup.pk])).content.decode()
    assert 'data-testid="host-evacuation"' not in html


def test_the_panel_shows_the_last_evacuations_figures_and_the_copies_to_purge(
    browser, sam, pat, world
):
    evacuation_finished(sam, world)
    EvacuatedCopy.objects.create(
        host=world.down,
        instance_name="acme-jira",
        project="acme-jira",
        directory="/srv/atlassian/instances/acme-jira",
        status=EvacuatedCopy.Status.FENCED,
        detail="Stopped 2 container(s); restart policy off.",
    )
    html = browser(pat).get(reverse("hosts:detail", args=[world.down.pk])).content.decode()
    assert 'data-testid="evacuation-instance" data-instance="acme-jira"' in html
    assert "612 s" in html and "3000 s" in html
    assert 'data-testid="evacuated-copy" data-instance="acme-jira" data-status="fenced"' in html
    assert 'id="purge-fenced"' in html


def test_the_confirm_page_shows_the_plan_with_targets_points_and_problems(browser, sam, world):
    html = browser(sam).get(_evacuate_url(world.down)).content.decode()
    assert 'data-testid="plan-row" data-instance="acme-jira" data-target="app-one"' in html
    assert 'data-testid="plan-row" data-instance="acme-new" data-problem="true"' in html
    assert "No restorable backup point." in html
    assert 'id="evacuate-form"' in html


def test_the_confirm_page_refuses_a_wrong_name_with_a_form_error(browser, sam, world):
    response = browser(sam).post(
        _evacuate_url(world.down), {"confirm_name": "app-one", "idempotency_key": "ui-1"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="error-confirm_name"' in html and "app-down" in html
    assert not Operation.objects.exists()


def test_the_name_typed_starts_it_and_lands_on_its_operation_page(browser, sam, world):
    response = browser(sam).post(
        _evacuate_url(world.down), {"confirm_name": "app-down", "idempotency_key": "ui-2"}
    )
    op = Operation.objects.get(kind=BackupOperationKind.HOST_EVACUATE)
    assert response.status_code == 302
    assert response["Location"] == reverse("provisioning:operation_detail", args=[op.pk])


def test_a_refusal_of_the_service_comes_back_as_a_form_error(browser, sam, world):
    # The host answered again between the page and the submit.
    Host.objects.filter(pk=world.down.pk).update(status=Host.Status.READY)
    response = browser(sam).post(
        _evacuate_url(world.down), {"confirm_name": "app-down", "idempotency_key": "ui-3"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="form-errors"' in html and "evacuate only a host that is down" in html
    assert not Operation.objects.exists()


def test_a_running_evacuation_is_named_on_a_second_submit(browser, sam, world):
    host_evacuate_start(actor=access_for_user(sam), host=world.down)
    response = browser(sam).post(
        _evacuate_url(world.down), {"confirm_name": "app-down", "idempotency_key": "ui-4"}
    )
    assert response.status_code == 200
    assert "already" in response.content.decode()
    assert Operation.objects.filter(kind=BackupOperationKind.HOST_EVACUATE).count() == 1


def test_customers_get_404_on_the_evacuation_pages(browser, alice, charlie, world):
    for user in (alice, charlie):
        client = browser(user)
        assert client.get(_evacuate_url(world.down)).status_code == 404
        assert (
            client.post(_evacuate_url(world.down), {"confirm_name": "app-down"}).status_code == 404
        )
        purge = reverse("backups:host_purge_fenced", args=[world.down.pk])
        assert client.post(purge).status_code == 404
    assert not Operation.objects.exists()


def test_only_platform_admins_purge_fenced_copies(browser, sam, pat, world):
    EvacuatedCopy.objects.create(
        host=world.down,
        instance_name="acme-jira",
        project="acme-jira",
        directory="/x",
        status=EvacuatedCopy.Status.FENCED,
    )
    url = reverse("backups:host_purge_fenced", args=[world.down.pk])
    assert browser(sam).post(url, {"idempotency_key": "ui-5"}).status_code == 403
    response = browser(pat).post(url, {"idempotency_key": "ui-6"})
    op = Operation.objects.get(kind=OperationKind.HOST_FENCE_PURGE)
    assert response["Location"] == reverse("provisioning:operation_detail", args=[op.pk])


def test_the_dr_dashboard_shows_the_last_evacuation_and_the_hosts_down(browser, sam, world):
    client = browser(sam)
    html = client.get(reverse("backups:dr_dashboard")).content.decode()
    assert 'data-testid="no-evacuation"' in html
    assert 'data-testid="dr-hosts-down"' in html and _evacuate_url(world.down) in html
    parent = evacuation_finished(sam, world)
    html = client.get(reverse("backups:dr_dashboard")).content.decode()
    assert f'data-operation="{parent.pk}"' in html
    assert 'data-testid="evacuation-host">app-down<' in html
    assert 'data-testid="evacuation-instance" data-instance="acme-jira"' in html
    assert "612 s" in html and "3000 s" in html
    assert "acme-new (No restorable backup point.)" in html
