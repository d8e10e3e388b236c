"""Changes made through the API are audited by the services, marked as coming from the API."""

from __future__ import annotations

import pytest

from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_an_instance_created_with_a_token_is_audited_with_the_token(api, make_token, alice, acme):
    client = api(token=make_token(alice, acme))
    response = client.post(
        "/api/instances/",
        {
            "name": "acme-wiki",
            "product": "confluence",
            "version": "8.5.0",
            "hostname": "wiki.acme.example",
        },
        format="json",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 202
    event = AuditEvent.objects.get(action="instance.create")
    assert event.source == "api" and event.source_ip == "203.0.113.9"
    assert event.actor == alice and event.token is not None and "token test" in event.actor_label
    assert event.tenant == acme and event.target_label == "acme-wiki"
    assert AuditEvent.objects.filter(action="operation.request.instance.create").exists()


def test_lifecycle_actions_cancels_and_licenses_are_audited(api, alice, acme_jira):
    client = api(alice)
    op = client.post(f"/api/instances/{acme_jira.pk}/restart/").json()
    client.post(f"/api/operations/{op['id']}/cancel/")
    client.post("/api/licenses/", {"instance": str(acme_jira.pk), "key": "k-123"}, format="json")
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"operation.request.instance.restart", "operation.cancel", "license.add"} <= actions
    assert set(AuditEvent.objects.values_list("source", flat=True)) == {"api"}


def test_refused_requests_change_nothing_and_audit_nothing(api, bob, charlie, acme_jira):
    api(bob).post(f"/api/instances/{acme_jira.pk}/restart/")
    api(charlie).post(f"/api/instances/{acme_jira.pk}/restart/")
    assert not AuditEvent.objects.exists()
