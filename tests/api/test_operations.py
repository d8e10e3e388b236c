"""Operations through the API: progress, the step log (whole and incremental), cancel."""

from __future__ import annotations

import pytest

from provisioning.models import Operation, OperationStep

pytestmark = pytest.mark.django_db


@pytest.fixture
def rollout(acme_jira, alice) -> Operation:
    op = Operation.objects.create(
        kind="instance.create",
        tenant=acme_jira.tenant,
        instance=acme_jira,
        status="running",
        requested_by=alice,
        progress_current=1,
        progress_total=4,
        lock_key=f"instance:{acme_jira.pk}",
    )
    for i in range(3):
        OperationStep.objects.create(
            operation=op, message=f"step {i}", command=f"echo {i}", exit_code=0, duration_ms=5
        )
    return op


def test_it_shows_an_operation_with_its_steps_and_progress(api, bob, rollout):
    data = api(bob).get(f"/api/operations/{rollout.pk}/").json()
    assert data["status"] == "running" and data["progress_percent"] == 25
    assert data["kind"] == "instance.create" and data["kind_label"] == "Instance create"
    assert data["requested_by"] == "alice" and data["is_terminal"] is False
    assert data["target"] == {
        "instance": str(rollout.instance_id),
        "instance_name": "acme-jira",
        "host_name": None,
    }
    assert [s["message"] for s in data["steps"]] == ["step 0", "step 1", "step 2"]
    assert data["steps"][0]["command"] == "echo 0" and data["steps"][0]["exit_code"] == 0


def test_lists_leave_the_step_log_out(api, bob, rollout):
    rows = api(bob).get("/api/operations/").json()["results"]
    assert [r["id"] for r in rows] == [str(rollout.pk)] and rows[0]["steps"] is None


def test_it_serves_only_new_steps_for_polling(api, bob, rollout):
    client = api(bob)
    first = client.get(f"/api/operations/{rollout.pk}/steps/").json()
    assert [s["message"] for s in first["steps"]] == ["step 0", "step 1", "step 2"]
    assert first["operation_status"] == "running" and first["is_terminal"] is False
    OperationStep.objects.create(operation=rollout, message="step 3")
    again = client.get(f"/api/operations/{rollout.pk}/steps/?after={first['next_after']}").json()
    assert [s["message"] for s in again["steps"]] == ["step 3"]
    idle = client.get(f"/api/operations/{rollout.pk}/steps/?after={again['next_after']}").json()
    assert idle["steps"] == [] and idle["next_after"] == again["next_after"]


@pytest.mark.parametrize("after", ["-1", "abc", "1e9", "99999999999999999999999"])
def test_a_bad_after_is_a_400(api, bob, rollout, after):
    assert api(bob).get(f"/api/operations/{rollout.pk}/steps/?after={after}").status_code == 400


def test_it_filters_operations(api, sam, rollout, globex_wiki):
    other = Operation.objects.create(
        kind="instance.stop", tenant=globex_wiki.tenant, instance=globex_wiki, status="failed"
    )
    client = api(sam)
    ids = lambda r: [x["id"] for x in r.json()["results"]]  # noqa: E731
    assert ids(client.get("/api/operations/?status=failed")) == [str(other.pk)]
    assert ids(client.get("/api/operations/?kind=instance.create")) == [str(rollout.pk)]
    assert ids(client.get(f"/api/operations/?instance={globex_wiki.pk}")) == [str(other.pk)]
    assert ids(client.get(f"/api/operations/?tenant={rollout.tenant_id}")) == [str(rollout.pk)]
    assert client.get("/api/operations/?status=bogus").status_code == 400


def test_host_names_are_shown_to_staff_only(api, alice, sam, rollout, app_host):
    Operation.objects.filter(pk=rollout.pk).update(host=app_host)
    assert api(alice).get(f"/api/operations/{rollout.pk}/").json()["target"]["host_name"] is None
    assert api(sam).get(f"/api/operations/{rollout.pk}/").json()["target"]["host_name"] == "app-one"


def test_host_operations_are_invisible_to_customers(api, alice, sam, app_host):
    op = Operation.objects.create(kind="host.provision", host=app_host, status="running")
    assert api(alice).get(f"/api/operations/{op.pk}/").status_code == 404
    assert api(sam).get(f"/api/operations/{op.pk}/").status_code == 200
    # a host operation belongs to the platform: support may watch it but not cancel it
    assert api(sam).post(f"/api/operations/{op.pk}/cancel/").status_code == 403


def test_a_tenant_admin_cancels_a_pending_operation_at_once(api, alice, acme_jira):
    op = Operation.objects.create(
        kind="instance.restart", tenant=acme_jira.tenant, instance=acme_jira, status="pending"
    )
    response = api(alice).post(f"/api/operations/{op.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_cancelling_a_running_operation_asks_it_to_stop(api, alice, rollout):
    response = api(alice).post(f"/api/operations/{rollout.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "running" and response.json()["cancel_requested"]


def test_cancelling_a_finished_operation_is_a_409(api, alice, rollout):
    Operation.objects.filter(pk=rollout.pk).update(status="succeeded")
    assert api(alice).post(f"/api/operations/{rollout.pk}/cancel/").status_code == 409


def test_a_viewer_cannot_cancel(api, bob, rollout):
    assert api(bob).post(f"/api/operations/{rollout.pk}/cancel/").status_code == 403
    rollout.refresh_from_db()
    assert not rollout.cancel_requested


def test_support_may_cancel_a_tenants_operation(api, sam, rollout):
    assert api(sam).post(f"/api/operations/{rollout.pk}/cancel/").status_code == 200


def test_foreign_operations_are_not_found(api, charlie, rollout):
    client = api(charlie)
    assert client.get("/api/operations/").json()["results"] == []
    for url in (f"/api/operations/{rollout.pk}/", f"/api/operations/{rollout.pk}/steps/"):
        assert client.get(url).status_code == 404
    assert client.post(f"/api/operations/{rollout.pk}/cancel/").status_code == 404
    rollout.refresh_from_db()
    assert not rollout.cancel_requested


def test_secret_looking_parameters_are_never_shown(api, pat, app_host):
    op = Operation.objects.create(
        kind="host.connect",
        host=app_host,
        status="pending",
        params={"root_password": "fernet:gAAAAABsecret", "note": "postgres://u:hunter22@db/x"},
        result={"token": "pnl_abcdefghijklmnopqrstuvwxyz"},
    )
    body = api(pat).get(f"/api/operations/{op.pk}/").content.decode()
    assert "gAAAAABsecret" not in body and "hunter22" not in body and "pnl_abc" not in body
    assert "[redacted]" in body


def test_the_detail_embeds_a_bounded_step_log(api, alice, rollout, monkeypatch):
    from provisioning.api import serializers

    monkeypatch.setattr(serializers, "STEPS_IN_DETAIL", 2)
    data = api(alice).get(f"/api/operations/{rollout.pk}/").json()
    assert [s["message"] for s in data["steps"]] == ["step 0", "step 1"]
    rest = api(alice).get(f"/api/operations/{rollout.pk}/steps/?after={data['steps'][-1]['id']}")
    assert [s["message"] for s in rest.json()["steps"]] == ["step 2"]
