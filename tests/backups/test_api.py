"""The backups API: who may list, start, restore, change and request what; another tenant's
customers see none of it (404); a restore and a backup on one instance at once are refused."""

from __future__ import annotations

from typing import Any

import pytest

from backups.models import Backup, BackupPolicy, RestoreRequest
from backups.services import backup_start, policy_for, restore_start
from panel.access import access_for_user
from panel.operations import OperationConflict
from provisioning.models import AtlassianInstance, Host, Operation
from tests.backups.factories import backup_host, make_point, with_backup_host

pytestmark = pytest.mark.django_db


@pytest.fixture
def jira(acme_jira, app_host):
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    return acme_jira


@pytest.fixture
def point(jira) -> Backup:
    return make_point(jira)


def test_customers_list_their_points_and_another_tenant_sees_nothing(
    api, alice, bob, charlie, point
):
    for user in (alice, bob):
        body = api(user).get("/api/backups/?status=succeeded").json()
        assert [row["id"] for row in body["results"]] == [str(point.pk)]
        assert body["results"][0]["label"] == "daily.0"
        assert body["results"][0]["logical_bytes"] == 1000
    assert api(charlie).get("/api/backups/").json()["results"] == []
    assert api(charlie).get(f"/api/backups/{point.pk}/").status_code == 404
    assert (
        api(charlie)
        .post(f"/api/backups/{point.pk}/restore/", {"mode": "in_place", "confirm": "acme-jira"})
        .status_code
        == 404
    )


def test_a_tenant_admin_starts_a_backup_and_gets_202_with_the_operation(api, alice, jira):
    response = api(alice).post(
        "/api/backups/", {"instance": str(jira.pk), "mode": "cold"}, HTTP_IDEMPOTENCY_KEY="backup-1"
    )
    assert response.status_code == 202
    op = Operation.objects.get(pk=response.json()["id"])
    assert response["Location"] == f"/api/operations/{op.pk}/"
    assert op.kind == "backup.create" and op.params["mode"] == "cold"
    again = api(alice).post(
        "/api/backups/", {"instance": str(jira.pk), "mode": "cold"}, HTTP_IDEMPOTENCY_KEY="backup-1"
    )
    assert again.status_code == 202 and again.json()["id"] == str(op.pk)
    # the same key with another body is another request (tests/api/test_idempotency.py)
    other = api(alice).post(
        "/api/backups/", {"instance": str(jira.pk)}, HTTP_IDEMPOTENCY_KEY="backup-1"
    )
    assert other.status_code == 409


def test_viewers_and_other_tenants_cannot_start_a_backup(api, bob, charlie, jira):
    assert api(bob).post("/api/backups/", {"instance": str(jira.pk)}).status_code == 403
    foreign = api(charlie).post("/api/backups/", {"instance": str(jira.pk)})
    assert foreign.status_code == 400 and "Unknown instance" in foreign.content.decode()
    assert not Operation.objects.exists()


def test_support_restores_in_place_only_with_the_name_typed(api, sam, point):
    client = api(sam)
    wrong = client.post(
        f"/api/backups/{point.pk}/restore/", {"mode": "in_place", "confirm": "nope"}
    )
    assert wrong.status_code == 400 and "confirm" in wrong.json()
    response = client.post(
        f"/api/backups/{point.pk}/restore/", {"mode": "in_place", "confirm": "acme-jira"}
    )
    assert response.status_code == 202
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.kind == "backup.restore" and op.instance_id == point.instance_id
    assert op.params == {
        "backup": str(point.pk),
        "mode": "in_place",
        "source": str(point.instance_id),
    }
    Operation.objects.all().update(status="succeeded", lock_key=None)
    forced = client.post(
        f"/api/backups/{point.pk}/restore/",
        {"mode": "in_place", "confirm": "acme-jira", "skip_safety": True},
    )
    assert forced.status_code == 202
    assert Operation.objects.get(pk=forced.json()["id"]).params["skip_safety"] is True


def test_customers_cannot_restore_even_their_own_points(api, alice, point):
    response = api(alice).post(
        f"/api/backups/{point.pk}/restore/", {"mode": "in_place", "confirm": "acme-jira"}
    )
    assert response.status_code == 403
    assert not Operation.objects.exists()


def test_a_restore_into_a_new_instance_creates_it_with_its_own_hostname(api, sam, point, app_host):
    Host = type(app_host)
    Host.objects.filter(pk=app_host.pk).update(status="ready")
    response = api(sam).post(
        f"/api/backups/{point.pk}/restore/",
        {"mode": "new_instance", "name": "acme-jira-test", "hostname": "test.acme.example"},
    )
    assert response.status_code == 202, response.content
    copy = AtlassianInstance.objects.get(name="acme-jira-test")
    assert copy.tenant_id == point.instance.tenant_id and copy.hostname == "test.acme.example"
    assert copy.db_password != point.instance.db_password
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.instance_id == copy.pk and op.params["target"] == str(copy.pk)
    taken = api(sam).post(
        f"/api/backups/{point.pk}/restore/",
        {"mode": "new_instance", "name": "acme-jira-test", "hostname": "other.acme.example"},
    )
    assert taken.status_code == 400


@pytest.mark.parametrize(
    ("name", "hostname", "field"),
    [
        ("app", "copy.acme.example", "name"),
        ("panel-proxy", "copy.acme.example", "name"),
        ("acme-copy", "testserver", "hostname"),  # one of the panel's own names
        ("acme-copy", "not a hostname", "hostname"),
    ],
)
def test_a_copy_cannot_take_a_reserved_name_or_hostname(
    api, sam, point, app_host, name, hostname, field
):
    type(app_host).objects.filter(pk=app_host.pk).update(status="ready")
    response = api(sam).post(
        f"/api/backups/{point.pk}/restore/",
        {"mode": "new_instance", "name": name, "hostname": hostname},
    )
    assert response.status_code == 400 and field in response.json(), response.content
    assert not AtlassianInstance.objects.filter(name=name).exclude(pk=point.instance_id).exists()
    assert not Operation.objects.exists()


def test_a_restore_and_a_backup_on_one_instance_at_once_are_refused(api, alice, sam, point):
    started = api(alice).post("/api/backups/", {"instance": str(point.instance_id)})
    assert started.status_code == 202
    refused = api(sam).post(
        f"/api/backups/{point.pk}/restore/", {"mode": "in_place", "confirm": "acme-jira"}
    )
    assert refused.status_code == 409
    assert refused.json()["operation"] == started.json()["id"]
    Operation.objects.all().update(status="succeeded", lock_key=None)
    restore = restore_start(
        actor=access_for_user(sam), backup=point, mode="in_place", confirm_name="acme-jira"
    )
    with pytest.raises(OperationConflict) as exc:
        backup_start(actor=access_for_user(alice), instance=point.instance)
    assert exc.value.running.pk == restore.pk


def test_everyone_who_sees_an_instance_reads_its_policy_and_only_staff_change_it(
    api, alice, bob, charlie, sam, jira
):
    policy = policy_for(jira)
    url = f"/api/backup-policies/{policy.pk}/"
    assert api(bob).get(url).json()["retention"] == "6 hourly / 7 daily / 4 weekly / 12 monthly"
    assert api(alice).patch(url, {"keep_daily": 3}).status_code == 403
    assert api(charlie).get(url).status_code == 404
    assert api(charlie).patch(url, {"keep_daily": 3}).status_code == 404
    response = api(sam).patch(url, {"keep_daily": 14, "mode": "cold", "interval_minutes": 120})
    assert response.status_code == 200, response.content
    policy.refresh_from_db()
    assert (policy.keep_daily, policy.mode, policy.interval_minutes) == (14, "cold", 120)
    assert api(sam).patch(url, {"mode": "lukewarm"}).status_code == 400
    assert (
        api(sam)
        .patch(url, {"keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0})
        .status_code
        == 400
    )


def test_customers_request_restores_and_support_handles_them(api, alice, bob, charlie, sam, point):
    body = {"instance": str(point.instance_id), "backup": str(point.pk), "note": "Oops"}
    assert api(bob).post("/api/restore-requests/", body).status_code == 403
    assert api(charlie).post("/api/restore-requests/", body).status_code == 400
    created = api(alice).post("/api/restore-requests/", body)
    assert created.status_code == 201 and created.json()["status"] == "open"
    request_id = created.json()["id"]
    assert api(charlie).get(f"/api/restore-requests/{request_id}/").status_code == 404
    assert (
        api(alice)
        .post(f"/api/restore-requests/{request_id}/handle/", {"status": "done"})
        .status_code
        == 403
    )
    handled = api(sam).post(
        f"/api/restore-requests/{request_id}/handle/",
        {"status": "done", "response": "Restored yesterday's point."},
    )
    assert handled.status_code == 200 and handled.json()["status"] == "done"
    assert RestoreRequest.objects.get(pk=request_id).handled_by == sam


def test_drills_and_dr_figures_are_for_staff(api, alice, sam, point):
    assert api(alice).get("/api/dr-dashboard/").status_code == 403
    assert api(alice).post("/api/restore-drills/", {}).status_code == 403
    figures = api(sam).get("/api/dr-dashboard/").json()
    assert [row["tier"] for row in figures] == ["tier0", "tier1", "tier2", "tier3"]
    tier2 = figures[2]
    assert tier2["instances"] == 1 and tier2["within_rpo"] == 1 and tier2["drills_run"] == 0
    started = api(sam).post("/api/restore-drills/", {"instance": str(point.instance_id)})
    assert started.status_code == 202
    assert Operation.objects.get(pk=started.json()["id"]).kind == "backup.drill"
    assert api(alice).get("/api/restore-drills/").json()["results"] == []


def test_the_schema_documents_the_backup_routes(tmp_path):
    import yaml
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    paths = yaml.safe_load(target.read_text())["paths"]
    for path in (
        "/api/backups/",
        "/api/backups/{id}/restore/",
        "/api/backup-policies/{id}/",
        "/api/restores/",
        "/api/restore-drills/",
        "/api/restore-requests/",
        "/api/dr-dashboard/",
    ):
        assert path in paths, path
    assert "202" in paths["/api/backups/"]["post"]["responses"]


def test_policies_are_listed_only_for_visible_instances(api, charlie, jira):
    policy_for(jira)
    assert BackupPolicy.objects.count() == 1
    assert api(charlie).get("/api/backup-policies/").json()["results"] == []


# Another tenant's 404 and anonymous 401 on every backup route and verb: the one route walker
# in tests/api/test_isolation.py (tests/support/isolation.py).


def _app_host(name: str, backup: Host | None, *, memory_mb: int = 16384, **fields: Any) -> Host:
    return Host.objects.create(
        name=name,
        role=Host.Role.APP,
        address=f"127.0.1.{Host.objects.count() + 1}",
        status=fields.pop("status", Host.Status.READY),
        backup_host=backup,
        memory_mb=memory_mb,
        cpu_count=4,
        disk_total_bytes=200 * 1024**3,
        disk_free_bytes=fields.pop("disk_free_bytes", 150 * 1024**3),
        **fields,
    )


def _copy(name: str, **extra: Any) -> dict:
    return {"mode": "new_instance", "name": name, "hostname": f"{name}.acme.example", **extra}


def test_support_restores_into_a_new_instance_on_a_host_chosen_by_name(api, sam, point):
    roomy = _app_host("app-two", point.backup_host)
    response = api(sam).post(
        f"/api/backups/{point.pk}/restore/", _copy("acme-copy", host="app-two")
    )
    assert response.status_code == 202, response.content
    copy = AtlassianInstance.objects.get(name="acme-copy")
    assert copy.host_id == roomy.pk and point.instance.host_id != roomy.pk
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.params["host"] == "app-two"
    # Without a host the copy goes next to the source, and the operation says so too.
    same = api(sam).post(f"/api/backups/{point.pk}/restore/", _copy("acme-copy2"))
    assert same.status_code == 202, same.content
    assert AtlassianInstance.objects.get(name="acme-copy2").host_id == point.instance.host_id
    assert Operation.objects.get(pk=same.json()["id"]).params["host"] == point.instance.host.name


def test_a_host_without_capacity_or_on_another_backup_host_is_refused(api, sam, point):
    _app_host("app-full", point.backup_host, memory_mb=1024)
    _app_host("app-nodisk", point.backup_host, disk_free_bytes=1024**3)
    _app_host("app-elsewhere", backup_host("backup-two"))
    _app_host("app-new", point.backup_host, status=Host.Status.ENROLLED)
    backup_only = Host.objects.get(pk=point.backup_host_id).name
    refusals = {
        "app-full": "MB of memory",
        "app-nodisk": "GB of free disk",
        "app-elsewhere": "cannot read points on backup-one",
        "app-new": "Choose a ready app host.",
        "no-such-host": "No app host is named no-such-host.",
        backup_only: f"No app host is named {backup_only}.",  # a backup host is no app host
    }
    for host, reason in refusals.items():
        response = api(sam).post(f"/api/backups/{point.pk}/restore/", _copy("acme-copy", host=host))
        assert response.status_code == 400, (host, response.content)
        assert reason in " ".join(response.json()["host"]), (host, response.json())
    assert not AtlassianInstance.objects.filter(name="acme-copy").exists()
    assert not Operation.objects.exists()


def test_an_unknown_field_answers_400(api, sam, point):
    response = api(sam).post(
        f"/api/backups/{point.pk}/restore/",
        {"mode": "in_place", "confirm": "acme-jira", "target_host": "app-one"},
    )
    assert response.status_code == 400
    assert "Unknown field" in response.json()["target_host"][0]
    assert "host" in response.json()["target_host"][0]  # it lists what the request takes
    read_only = api(sam).patch(
        f"/api/backup-policies/{policy_for(point.instance).pk}/", {"instance_name": "x"}
    )
    assert read_only.status_code == 400
    assert read_only.json() == {"instance_name": ["Read-only field; it cannot be set here."]}
    assert not Operation.objects.exists()


def test_the_operation_names_the_host_the_copy_went_to(api, browser, sam, point, monkeypatch):
    # The remote work is stubbed (the lab tests run it); this checks what the operation says.
    from backups import operations
    from backups.restore import Outcome
    from panel.operations import operation_execute

    monkeypatch.setattr(
        operations, "restore_new", lambda ctx, target, backup, **kw: Outcome(1.0, "ok")
    )
    monkeypatch.setattr(operations, "instance_published", lambda ctx, target: None)
    _app_host("app-two", point.backup_host)
    response = api(sam).post(
        f"/api/backups/{point.pk}/restore/", _copy("acme-copy", host="app-two")
    )
    assert response.status_code == 202, response.content
    operation_execute(response.json()["id"])
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.status == "succeeded", op.error
    assert "of acme-jira into acme-copy on host app-two" in op.steps.order_by("id")[0].message
    assert op.result["host"] == "app-two" and op.result["instance"] == "acme-copy"
    page = browser(sam).get(f"/operations/{op.pk}/")
    assert page.status_code == 200 and b"into acme-copy on host app-two" in page.content
