"""The instances API: what it shows, creating (202 + Operation), lifecycle actions, refusals."""

from __future__ import annotations

import pytest

from provisioning.models import AtlassianInstance, Operation
from tenants.models import Membership
from tests.backups.factories import backup_host, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db

NEW = {
    "name": "acme-wiki",
    "product": "confluence",
    "version": "8.5.0",
    "hostname": "wiki.acme.example",
    "context_path": "/wiki",
    "heap_min_mb": 1024,
    "heap_max_mb": 2048,
}


def names(response) -> list[str]:
    return [row["name"] for row in response.json()["results"]]


# --- reading ----------------------------------------------------------------------------------


def test_it_lists_only_the_callers_tenant_instances(api, alice, acme_jira, globex_wiki):
    response = api(alice).get("/api/instances/")
    assert response.status_code == 200
    assert names(response) == ["acme-jira"]


def test_support_sees_instances_of_every_tenant(api, sam, acme_jira, globex_wiki):
    assert sorted(names(api(sam).get("/api/instances/"))) == ["acme-jira", "globex-wiki"]


def test_it_shows_the_facts_users_care_about(api, bob, acme_jira, acme_license, app_host):
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host, context_path="/jira")
    data = api(bob).get(f"/api/instances/{acme_jira.pk}/").json()
    assert data["status"] == "running" and data["display_status"] == "running"
    assert data["base_url"] == "https://acme-jira.example.com/jira"
    assert data["tenant"] == str(acme_jira.tenant_id) and data["tenant_name"] == "Acme"
    assert data["host_name"] == "app-one"
    assert data["version"] == "9.12.0" and data["heap_max_mb"] == 2048
    assert data["licenses"][0]["sen"] == "SEN-123" and data["licenses"][0]["days_left"] == 20


def test_it_never_shows_host_address_or_credentials(api, alice, acme_jira, app_host):
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    body = api(alice).get(f"/api/instances/{acme_jira.pk}/").content.decode()
    assert "127.0.0.11" not in body and "2222" not in body
    assert "pw-acme-jira-secret" not in body and "db_password" not in body


def test_a_degraded_instance_shows_degraded(api, alice, acme_jira):
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(health="degraded")
    assert api(alice).get(f"/api/instances/{acme_jira.pk}/").json()["display_status"] == "degraded"


def test_deleted_instances_are_listed_only_when_asked_for(api, alice, acme):
    make_instance(acme, "acme-old", status="deleted")
    make_instance(acme, "acme-new")
    client = api(alice)
    assert names(client.get("/api/instances/")) == ["acme-new"]
    assert names(client.get("/api/instances/?status=deleted")) == ["acme-old"]


def test_it_filters_searches_and_orders(api, sam, acme, globex):
    make_instance(acme, "acme-jira")
    make_instance(acme, "acme-wiki", product="confluence", version="8.5.0", status="stopped")
    make_instance(
        globex, "globex-git", product="bitbucket", version="8.19.0", hostname="code.globex.example"
    )
    client = api(sam)
    assert names(client.get(f"/api/instances/?tenant={acme.pk}&ordering=name")) == [
        "acme-jira",
        "acme-wiki",
    ]
    assert names(client.get("/api/instances/?status=stopped")) == ["acme-wiki"]
    assert names(client.get("/api/instances/?product=bitbucket")) == ["globex-git"]
    assert names(client.get("/api/instances/?search=code.globex")) == ["globex-git"]
    assert names(client.get("/api/instances/?ordering=-name")) == [
        "globex-git",
        "acme-wiki",
        "acme-jira",
    ]


def test_a_bad_filter_value_is_a_400(api, alice):
    client = api(alice)
    assert client.get("/api/instances/?tenant=not-a-uuid").status_code == 400
    assert client.get("/api/instances/?status=exploded").status_code == 400


# --- creating ---------------------------------------------------------------------------------


def test_creating_an_instance_answers_202_with_a_pending_operation_to_poll(api, alice, acme):
    response = api(alice).post("/api/instances/", NEW, format="json")
    assert response.status_code == 202, response.json()
    op = Operation.objects.get()
    assert response["Location"] == f"/api/operations/{op.id}/"
    body = response.json()
    assert body["id"] == str(op.id) and body["status"] == "pending"
    assert body["kind"] == "instance.create" and body["target"]["instance_name"] == "acme-wiki"
    instance = AtlassianInstance.objects.get(name="acme-wiki")
    assert instance.tenant == acme and instance.status == "pending"
    assert op.instance == instance and op.requested_by == alice
    assert instance.tier == acme.default_tier


def test_a_repeated_idempotency_key_returns_the_same_operation(api, alice, acme):
    client = api(alice)
    first = client.post("/api/instances/", NEW, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = client.post("/api/instances/", NEW, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert first["Location"] == second["Location"]
    assert AtlassianInstance.objects.count() == 1 and Operation.objects.count() == 1


def test_an_idempotency_key_reused_for_another_request_is_refused(api, alice, acme, acme_jira):
    client = api(alice)
    client.post("/api/instances/", NEW, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = client.post(f"/api/instances/{acme_jira.pk}/stop/", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 409
    assert Operation.objects.count() == 1


def test_a_customer_with_one_tenant_may_leave_the_tenant_out(api, alice, acme):
    assert api(alice).post("/api/instances/", NEW, format="json").status_code == 202
    assert AtlassianInstance.objects.get(name="acme-wiki").tenant == acme


def test_a_customer_with_several_tenants_must_name_one(api, alice, globex):
    Membership.objects.create(user=alice, tenant=globex, role="admin")
    response = api(alice).post("/api/instances/", NEW, format="json")
    assert response.status_code == 400 and "tenant" in response.json()
    response = api(alice).post("/api/instances/", {**NEW, "tenant": str(globex.pk)}, format="json")
    assert response.status_code == 202
    assert AtlassianInstance.objects.get(name="acme-wiki").tenant == globex


def test_a_viewer_cannot_create_an_instance(api, bob, acme):
    for payload in (NEW, {**NEW, "tenant": str(acme.pk)}):
        response = api(bob).post("/api/instances/", payload, format="json")
        assert response.status_code == 400 and "tenant" in response.json()
    assert not AtlassianInstance.objects.exists() and not Operation.objects.exists()


def test_it_refuses_a_foreign_tenant_as_not_found(api, alice, globex):
    response = api(alice).post("/api/instances/", {**NEW, "tenant": str(globex.pk)}, format="json")
    assert response.status_code == 400
    assert "not an admin" in response.json()["tenant"][0]
    assert not AtlassianInstance.objects.exists()


def test_staff_must_name_the_tenant(api, sam, acme):
    response = api(sam).post("/api/instances/", NEW, format="json")
    assert response.status_code == 400 and "tenant" in response.json()
    response = api(sam).post("/api/instances/", {**NEW, "tenant": str(acme.pk)}, format="json")
    assert response.status_code == 202


def test_only_platform_admins_choose_the_host(api, alice, pat, acme, app_host):
    payload = {**NEW, "host": str(app_host.pk)}
    response = api(alice).post("/api/instances/", payload, format="json")
    assert response.status_code == 400 and "host" in response.json()
    response = api(pat).post("/api/instances/", {**payload, "tenant": str(acme.pk)}, format="json")
    assert response.status_code == 202
    assert AtlassianInstance.objects.get(name="acme-wiki").host == app_host


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hostname": "; rm -rf /"}, "hostname"),
        ({"hostname": "$(reboot).example.com"}, "hostname"),
        ({"hostname": "nodots"}, "hostname"),
        ({"hostname": "a" * 300 + ".example.com"}, "hostname"),
        ({"context_path": "../etc"}, "context_path"),
        ({"context_path": "/../../etc/passwd"}, "context_path"),
        ({"context_path": "/a/b"}, "context_path"),
        ({"name": "Acme Wiki; rm -rf /"}, "name"),
        ({"name": "../../root"}, "name"),
        ({"name": "x" * 100_000}, "name"),
        ({"product": "jira-cloud"}, "product"),
        ({"version": "1.0.0"}, "version"),
        ({"version": "latest && curl evil"}, "version"),
        ({"version": "8.5.0" * 20}, "version"),
        ({"heap_min_mb": 4096, "heap_max_mb": 2048}, "heap_min_mb"),
        ({"heap_max_mb": 10**12}, "heap_max_mb"),
        ({"heap_max_mb": -5}, "heap_max_mb"),
        ({"heap_max_mb": "lots"}, "heap_max_mb"),
        ({"heap_max_mb": 128}, "heap_max_mb"),
        ({"tier": "tier9"}, "tier"),
        ({"name": None}, "name"),
        ({"name": "nul\x00byte"}, "name"),
    ],
)
def test_it_rejects_bad_input_with_field_errors(api, alice, acme, change, field):
    response = api(alice).post("/api/instances/", {**NEW, **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not AtlassianInstance.objects.exists() and not Operation.objects.exists()


def test_it_rejects_a_name_or_hostname_in_use(api, alice, acme, globex_wiki):
    client = api(alice)
    response = client.post("/api/instances/", {**NEW, "name": "globex-wiki"}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    response = client.post(
        "/api/instances/", {**NEW, "hostname": globex_wiki.hostname}, format="json"
    )
    assert response.status_code == 400 and "hostname" in response.json()
    assert AtlassianInstance.objects.count() == 1


@pytest.mark.parametrize("body", ["{not json", "[]", '"a string"', "null", "1e999999"])
def test_garbage_bodies_are_a_400_not_a_500(api, alice, acme, body):
    response = api(alice).post("/api/instances/", body, content_type="application/json")
    assert response.status_code == 400
    assert not AtlassianInstance.objects.exists()


def test_a_read_only_token_cannot_create(api, make_token, alice, acme):
    response = api(token=make_token(alice, acme, scope="read")).post(
        "/api/instances/", NEW, format="json"
    )
    assert response.status_code == 403
    assert not AtlassianInstance.objects.exists()


# --- lifecycle actions ------------------------------------------------------------------------


@pytest.fixture
def backed_jira(acme_jira, app_host) -> AtlassianInstance:
    """acme-jira on an app host that has a backup host (an upgrade needs one for its point)."""
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    return acme_jira


@pytest.mark.parametrize(
    ("status", "action", "body", "kind"),
    [
        ("stopped", "start", {}, "instance.start"),
        ("running", "stop", {}, "instance.stop"),
        ("running", "restart", {}, "instance.restart"),
        ("running", "upgrade", {"version": "9.17.0"}, "instance.upgrade"),
        ("running", "resize", {"heap_min_mb": 2048, "heap_max_mb": 4096}, "instance.resize"),
        ("running", "delete", {"confirm": "acme-jira"}, "instance.delete"),
        ("failed", "retry", {}, "instance.create"),
    ],
)
def test_lifecycle_actions_answer_202_with_the_operation(
    api, alice, backed_jira, status, action, body, kind
):
    acme_jira = backed_jira
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(status=status)
    response = api(alice).post(f"/api/instances/{acme_jira.pk}/{action}/", body, format="json")
    assert response.status_code == 202, response.json()
    op = Operation.objects.get()
    assert response.json()["id"] == str(op.id) and op.kind == kind and op.status == "pending"
    assert response["Location"] == f"/api/operations/{op.id}/"
    assert op.lock_key == f"instance:{acme_jira.pk}" and op.requested_by == alice
    assert "confirm" not in op.params


def test_upgrade_and_resize_pass_their_parameters(api, alice, backed_jira):
    client = api(alice)
    client.post(f"/api/instances/{backed_jira.pk}/upgrade/", {"version": "9.17.0"}, format="json")
    assert Operation.objects.get().params == {"version": "9.17.0"}


@pytest.mark.parametrize("placed", [False, True])
def test_an_upgrade_without_a_backup_host_is_refused_up_front(
    api, alice, acme_jira, app_host, placed
):
    # No point could be taken, and without one a failed upgrade cannot be rolled back.
    if placed:
        AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    response = api(alice).post(
        f"/api/instances/{acme_jira.pk}/upgrade/", {"version": "9.17.0"}, format="json"
    )
    assert response.status_code == 400
    where = "app-one" if placed else "(none)"
    assert response.json()["version"] == [
        f"acme-jira cannot be upgraded yet: its app host {where} has no backup host, so no "
        "point can be taken to roll a failed upgrade back to. A platform admin must give the "
        "host a backup host first."
    ]
    assert not Operation.objects.exists()


def test_an_action_with_a_repeated_idempotency_key_starts_one_operation(api, alice, acme_jira):
    client = api(alice)
    first = client.post(f"/api/instances/{acme_jira.pk}/restart/", HTTP_IDEMPOTENCY_KEY="r-1")
    second = client.post(f"/api/instances/{acme_jira.pk}/restart/", HTTP_IDEMPOTENCY_KEY="r-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] and Operation.objects.count() == 1


def test_delete_requires_the_instance_name(api, alice, acme_jira):
    client = api(alice)
    for body in ({}, {"confirm": "acme"}, {"confirm": "ACME-JIRA"}):
        response = client.post(f"/api/instances/{acme_jira.pk}/delete/", body, format="json")
        assert response.status_code == 400 and "confirm" in response.json()
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("upgrade", {"version": "7.0.0"}, "version"),
        ("upgrade", {"version": "9.12.0"}, "version"),  # the version it already runs
        ("upgrade", {}, "version"),
        ("resize", {"heap_min_mb": 4096, "heap_max_mb": 2048}, "heap_min_mb"),
        ("resize", {"heap_min_mb": 1024, "heap_max_mb": 99999999999}, "heap_max_mb"),
        ("resize", {"heap_min_mb": 1024}, "heap_max_mb"),
    ],
)
def test_action_parameters_are_validated(api, alice, acme_jira, action, body, field):
    response = api(alice).post(f"/api/instances/{acme_jira.pk}/{action}/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not Operation.objects.exists()


def test_a_second_action_while_one_is_active_is_a_409_naming_the_running_one(
    api, alice, acme_jira, active_operation
):
    running = active_operation(acme_jira)
    response = api(alice).post(f"/api/instances/{acme_jira.pk}/restart/")
    assert response.status_code == 409
    body = response.json()
    assert str(running.id) in body["detail"] and body["operation"] == str(running.id)
    assert body["operation_url"] == f"/api/operations/{running.id}/"
    assert Operation.objects.count() == 1


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("deleted", "start"),
        ("deleted", "restart"),
        ("restoring", "upgrade"),
        ("running", "start"),
        ("stopped", "stop"),
        ("running", "retry"),
    ],
)
def test_an_action_the_state_machine_forbids_is_a_409(api, alice, acme_jira, status, action):
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(status=status)
    body = {"version": "9.17.0"} if action == "upgrade" else {}
    response = api(alice).post(f"/api/instances/{acme_jira.pk}/{action}/", body, format="json")
    assert response.status_code == 409
    assert f"Cannot {action} acme-jira" in response.json()["detail"]
    assert not Operation.objects.exists()


def test_a_viewer_can_read_but_not_act(api, bob, acme_jira):
    client = api(bob)
    assert client.get(f"/api/instances/{acme_jira.pk}/").status_code == 200
    for action in ("start", "stop", "restart", "upgrade", "resize", "delete", "retry"):
        assert client.post(f"/api/instances/{acme_jira.pk}/{action}/").status_code == 403
    assert not Operation.objects.exists()


def test_support_may_act_on_any_tenants_instance(api, sam, globex_wiki):
    assert api(sam).post(f"/api/instances/{globex_wiki.pk}/restart/").status_code == 202


def test_a_read_only_token_cannot_act(api, make_token, alice, acme_jira):
    client = api(token=make_token(alice, scope="read"))
    assert client.get(f"/api/instances/{acme_jira.pk}/").status_code == 200
    assert client.post(f"/api/instances/{acme_jira.pk}/restart/").status_code == 403
    assert not Operation.objects.exists()


def test_instances_cannot_be_changed_or_deleted_with_plain_verbs(api, alice, acme_jira):
    client = api(alice)
    assert client.delete(f"/api/instances/{acme_jira.pk}/").status_code == 405
    assert client.patch(f"/api/instances/{acme_jira.pk}/", {"version": "1"}).status_code == 405
    assert AtlassianInstance.objects.get(pk=acme_jira.pk).status == "running"
