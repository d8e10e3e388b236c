"""The evacuation API (``/api/evacuations/<host id>/``): staff read a host's plan, last
evacuation and copies, start an evacuation of a host that is down (202 with the operation, a
400 on ``host`` otherwise) and platform admins purge its fenced copies; customers see no host
(404) and change nothing."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

from backups.models import BackupOperationKind
from provisioning.models import EvacuatedCopy, Host, Operation, OperationKind
from tests.backups.evacuation_world import evacuation_world, instance_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(acme, app_host):
    world = evacuation_world(app_host)
    instance_on(acme, "acme-jira", world.down, tier="tier1")
    instance_on(acme, "acme-new", world.down, point=False)
    return world


def _urls(host: Host) -> dict[str, str]:
    base = f"/api/evacuations/{host.pk}/"
    return {"state": base, "start": f"{base}start/", "purge": f"{base}purge-fenced/"}


def test_customers_get_404_on_every_route_and_nothing_starts(api, alice, charlie, world):
    urls = _urls(world.down)
    for user in (alice, charlie):  # even the tenant whose instances run on the host
        client = api(user)
        assert client.get(urls["state"]).status_code == 404
        assert client.post(urls["start"]).status_code == 404
        assert client.post(urls["purge"]).status_code == 404
    assert not Operation.objects.exists()


def test_anonymous_callers_get_401(api, world):
    assert api().get(_urls(world.down)["state"]).status_code == 401


def test_staff_read_the_plan_and_what_the_host_keeps(api, sam, pat, world):
    for user in (sam, pat):
        body = api(user).get(_urls(world.down)["state"]).json()
        assert (body["name"], body["status"], body["down"]) == ("app-down", "unreachable", True)
        assert [(r["name"], r["target"]) for r in body["plan"]] == [
            ("acme-jira", "app-one"),
            ("acme-new", ""),
        ]
        assert body["plan"][1]["problem"] == "No restorable backup point."
        assert body["plan"][1]["point"] is None
        assert body["last_evacuation"] is None and body["copies"] == []


def test_a_backup_host_is_not_found(api, pat, world):
    assert api(pat).get(_urls(world.backup)["state"]).status_code == 404


def test_staff_start_an_evacuation_of_a_down_host_and_get_202_with_the_operation(api, sam, world):
    client = api(sam)
    response = client.post(_urls(world.down)["start"], HTTP_IDEMPOTENCY_KEY="evac-1")
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=response.json()["id"])
    assert response["Location"] == f"/api/operations/{op.pk}/"
    assert op.kind == BackupOperationKind.HOST_EVACUATE and op.host == world.down
    assert Operation.objects.filter(parent=op).count() == 1
    # The same key again replays the same evacuation.
    again = client.post(_urls(world.down)["start"], HTTP_IDEMPOTENCY_KEY="evac-1")
    assert again.status_code == 202 and again.json()["id"] == str(op.pk)
    # The state shows it, each part with its planned target.
    last = client.get(_urls(world.down)["state"]).json()["last_evacuation"]
    assert last["operation"] == str(op.pk) and last["status"] == "pending"
    assert [(i["instance"], i["to_host"]) for i in last["instances"]] == [("acme-jira", "app-one")]
    assert [r["name"] for r in last["not_moved"]] == ["acme-new"]


def test_a_ready_host_is_refused_with_a_message_on_host(api, sam, acme, world):
    instance_on(acme, "acme-wiki", world.target)
    response = api(sam).post(_urls(world.target)["start"])
    assert response.status_code == 400
    assert "ready" in response.json()["host"][0]
    assert not Operation.objects.exists()


def test_a_body_is_refused_naming_the_field(api, sam, world):
    response = api(sam).post(_urls(world.down)["start"], {"force": True}, format="json")
    assert response.status_code == 400 and "force" in response.json()
    assert not Operation.objects.exists()


def test_only_platform_admins_purge_fenced_copies(api, sam, pat, world):
    url = _urls(world.down)["purge"]
    EvacuatedCopy.objects.create(
        host=world.down,
        instance_name="acme-jira",
        project="acme-jira",
        directory="/srv/atlassian/instances/acme-jira",
        status=EvacuatedCopy.Status.FENCED,
    )
    assert api(sam).post(url).status_code == 403
    response = api(pat).post(url)
    assert response.status_code == 202, response.content
    assert Operation.objects.get(pk=response.json()["id"]).kind == OperationKind.HOST_FENCE_PURGE


def test_a_purge_with_no_fenced_copy_is_a_400(api, pat, world):
    response = api(pat).post(_urls(world.down)["purge"])
    assert response.status_code == 400
    assert "keeps no fenced copies" in response.json()["detail"]


def test_the_schema_documents_the_evacuation_routes(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    paths = schema["paths"]
    state = paths["/api/evacuations/{id}/"]["get"]["responses"]["200"]
    assert state["content"]["application/json"]["schema"]["$ref"].endswith("/EvacuationState")
    start = paths["/api/evacuations/{id}/start/"]["post"]
    assert "202" in start["responses"] and "400" in start["responses"]
    assert any(p["name"] == "Idempotency-Key" for p in start["parameters"])
    assert "202" in paths["/api/evacuations/{id}/purge-fenced/"]["post"]["responses"]
    components = schema["components"]["schemas"]
    assert "rto_seconds" in components["EvacuationOutcome"]["properties"]
    assert "last_evacuation" in components["EvacuationState"]["properties"]
