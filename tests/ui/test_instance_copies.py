"""Copies (issue #13 P4): the instance page and API say what an instance is a copy of and that
its mail is off; only staff turn a copy's mail back on, audited, through an operation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from provisioning.models import AtlassianInstance, Operation
from provisioning.services import instance_outbound_enable
from tenants.models import AuditEvent, Tenant
from tests.support.factories import make_instance, make_operation

pytestmark = pytest.mark.django_db

POINT = "5f0c1e2d-0000-4000-8000-000000000001"
TAKEN = datetime(2026, 11, 30, 3, 15, tzinfo=UTC)


def _copy(
    tenant: Tenant, source: AtlassianInstance, name: str = "acme-jira-copy", **fields: Any
) -> AtlassianInstance:
    return make_instance(
        tenant,
        name,
        outbound_disabled=True,
        copy_of=source,
        copy_of_name=source.name,
        copy_point=POINT,
        copy_point_taken_at=TAKEN,
        **fields,
    )


def _page(client: Any, instance: AtlassianInstance) -> str:
    response = client.get(reverse("provisioning:instance_detail", args=[instance.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_copy_says_of_what_from_which_point_and_that_its_mail_is_off(
    browser: Any, alice: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    page = _page(browser(alice), _copy(acme, acme_jira))
    assert 'data-testid="copy-banner"' in page
    assert "Copy of" in page and "acme-jira</a>" in page
    assert "5f0c1e2d" in page and "2026-11-30 03:15 UTC" in page
    assert "mail off" in page and "application links neutralised" in page
    # production itself carries no banner
    assert 'data-testid="copy-banner"' not in _page(browser(alice), acme_jira)


def test_a_copy_whose_source_was_deleted_still_names_it(
    browser: Any, alice: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    copy = _copy(acme, acme_jira)
    AtlassianInstance.objects.filter(pk=copy.pk).update(copy_of=None)
    page = _page(browser(alice), copy)
    assert "Copy of acme-jira</strong>" in page


def test_a_bitbucket_copy_says_its_links_are_left_to_do_by_hand(
    browser: Any, alice: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    page = _page(browser(alice), _copy(acme, acme_jira, product="bitbucket", version="8.19.0"))
    assert "application links not rewritten" in page


def test_only_staff_see_the_button_that_turns_a_copys_mail_back_on(
    browser: Any, alice: User, sam: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    copy = _copy(acme, acme_jira)
    assert 'id="action-outbound-enable"' in _page(browser(sam), copy)
    assert 'id="action-outbound-enable"' not in _page(browser(alice), copy)


def test_staff_turn_a_copys_mail_back_on_with_an_audited_operation(
    browser: Any, sam: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    copy = _copy(acme, acme_jira)
    url = reverse("provisioning:instance_outbound_enable", args=[copy.pk])
    response = browser(sam).post(url, {"idempotency_key": "k-mail-1"})
    op = Operation.objects.get(instance=copy, kind="instance.outbound_enable")
    assert response.status_code == 302 and str(op.pk) in response["Location"]
    assert op.requested_by == sam and op.params == {"copy_of": "acme-jira"}
    assert AuditEvent.objects.filter(
        action="operation.request.instance.outbound_enable", actor=sam
    ).exists()
    # the flag is cleared by the operation once the rollout ran, not by the request
    copy.refresh_from_db()
    assert copy.outbound_disabled is True


def test_customers_cannot_turn_a_copys_mail_on_and_get_404(
    browser: Any, alice: User, charlie: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    copy = _copy(acme, acme_jira)
    url = reverse("provisioning:instance_outbound_enable", args=[copy.pk])
    # a staff action: even the copy's own tenant admin is not told it exists
    assert browser(alice).post(url, {"idempotency_key": "k-a"}).status_code == 404
    assert browser(charlie).post(url, {"idempotency_key": "k-c"}).status_code == 404
    assert browser(None).post(url).status_code in (302, 401)
    assert not Operation.objects.filter(instance=copy).exists()


def test_the_service_refuses_production_a_busy_copy_and_a_non_staff_caller(
    access_of: Any, alice: User, sam: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    with pytest.raises(ValidationError, match="already sends and fetches mail"):
        instance_outbound_enable(actor=access_of(sam), instance=acme_jira)
    copy = _copy(acme, acme_jira)
    with pytest.raises(PermissionDenied):
        instance_outbound_enable(actor=access_of(alice), instance=copy)
    AtlassianInstance.objects.filter(pk=copy.pk).update(status="provisioning")
    copy.refresh_from_db()
    with pytest.raises(ValidationError, match="while it is"):
        instance_outbound_enable(actor=access_of(sam), instance=copy)


def test_a_running_operation_on_the_copy_is_named_first(
    access_of: Any, sam: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    from panel.operations import OperationConflict

    copy = _copy(acme, acme_jira)
    busy = make_operation(copy)
    with pytest.raises(OperationConflict) as raised:
        instance_outbound_enable(actor=access_of(sam), instance=copy)
    assert raised.value.running == busy


def test_the_api_shows_what_an_instance_is_a_copy_of(
    api: Any, alice: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    copy = _copy(acme, acme_jira)
    data = api(alice).get(f"/api/instances/{copy.pk}/").json()
    assert data["copy_of"] == str(acme_jira.pk) and data["copy_of_name"] == "acme-jira"
    assert data["copy_point"] == POINT
    assert data["copy_point_taken_at"].startswith("2026-11-30T03:15")
    assert data["outbound_disabled"] is True
    prod = api(alice).get(f"/api/instances/{acme_jira.pk}/").json()
    assert prod["copy_of"] is None and prod["outbound_disabled"] is False
    # read-only: a PATCH cannot turn a copy's mail on
    api(alice).patch(f"/api/instances/{copy.pk}/", {"outbound_disabled": False}, format="json")
    copy.refresh_from_db()
    assert copy.outbound_disabled is True


def test_the_api_turns_a_copys_mail_on_for_staff_only(
    api: Any, alice: User, sam: User, acme: Tenant, acme_jira: AtlassianInstance
) -> None:
    copy = _copy(acme, acme_jira)
    url = f"/api/instances/{copy.pk}/outbound-enable/"
    assert api(alice).post(url, HTTP_IDEMPOTENCY_KEY="k-alice").status_code == 403
    response = api(sam).post(url, HTTP_IDEMPOTENCY_KEY="k-sam")
    assert response.status_code == 202
    op = Operation.objects.get(instance=copy, kind="instance.outbound_enable")
    assert str(op.pk) in response["Location"] and op.requested_by == sam
    # a repeated request answers with the same operation; a field it does not take is a 400
    assert api(sam).post(url, HTTP_IDEMPOTENCY_KEY="k-sam").status_code in (200, 202)
    assert Operation.objects.filter(instance=copy, kind="instance.outbound_enable").count() == 1
    other = _copy(acme, acme_jira, name="acme-jira-copy2", hostname="copy2.acme.example")
    bad = api(sam).post(
        f"/api/instances/{other.pk}/outbound-enable/", {"force": True}, format="json"
    )
    assert bad.status_code == 400
