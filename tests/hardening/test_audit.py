"""The audit log: every mutating action recorded, scoped per tenant, filterable, exportable."""

from __future__ import annotations

import csv
import io

import pytest

from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(alice, charlie, acme_jira, globex_wiki, api, make_token):
    """Alice and Charlie each change something through the API and the UI."""
    a = api(token=make_token(alice, tenant=acme_jira.tenant))
    assert (
        a.post(
            "/api/licenses/", {"instance": str(acme_jira.pk), "key": "AAAB-audit-1"}, format="json"
        ).status_code
        == 201
    )
    c = api(charlie)
    assert (
        c.post(
            "/api/tokens/",
            {"name": "ci", "scope": "read", "tenant": str(globex_wiki.tenant_id)},
            format="json",
        ).status_code
        == 201
    )
    return a, c


def test_api_and_ui_changes_are_recorded_with_actor_source_and_ip(history, alice):
    event = AuditEvent.objects.get(action="license.add")
    assert event.actor == alice and event.source == "api" and event.source_ip == "127.0.0.1"
    assert event.token is not None and "token" in event.actor_label
    assert event.changes["instance"] == "acme-jira"
    assert "AAAB-audit-1" not in str(event.changes)  # never the key itself


def test_tenant_admins_see_only_their_tenants_events_and_viewers_none(
    history, api, alice, bob, charlie, sam
):
    actions = {e["action"] for e in api(alice).get("/api/audit-events/").json()["results"]}
    assert "license.add" in actions and "token.create" not in actions
    assert api(charlie).get("/api/audit-events/").json()["results"][0]["action"] == "token.create"
    assert api(bob).get("/api/audit-events/").json()["results"] == []
    staff = {e["action"] for e in api(sam).get("/api/audit-events/").json()["results"]}
    assert {"license.add", "token.create"} <= staff


def test_the_log_filters_and_exports_as_csv(history, api, sam, client):
    rows = api(sam).get("/api/audit-events/", {"action": "license."}).json()["results"]
    assert [r["action"] for r in rows] == ["license.add"]
    exported = api(sam).get("/api/audit-events/export/", {"action": "token."})
    assert exported["Content-Type"] == "text/csv"
    table = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert table[0][:3] == ["time", "actor", "source"]
    assert [r[5] for r in table[1:]] == ["token.create"]
    client.force_login(sam)
    page = client.get("/audit/?action=license.")
    assert page.status_code == 200 and b"license.add" in page.content
    assert b"token.create" not in page.content
    download = client.get("/audit/export.csv")
    assert b"license.add" in b"".join(download.streaming_content)


def test_the_audit_log_is_append_only_through_the_api(history, api, sam):
    event = AuditEvent.objects.first()
    for method in ("put", "patch", "delete"):
        response = getattr(api(sam), method)(f"/api/audit-events/{event.public_id}/")
        assert response.status_code in (404, 405)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_customers_without_admin_rights_get_404_on_the_audit_page(bob, charlie, client):
    client.force_login(bob)
    assert client.get("/audit/").status_code == 404
    assert client.get("/audit/export.csv").status_code == 404
