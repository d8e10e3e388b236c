"""Idempotency keys (issue 11, L2): scoped to the API token (or the session's user) and the
tenant; the same key with the same request returns the same operation (202 with its Location),
the same key with a different request is 409 on every start path. Through the real HTTP client.
"""

from __future__ import annotations

import pytest

from backups.models import Backup
from panel.access import access_for_user
from panel.idempotency import IdempotencyConflict, operation_replayed
from provisioning.models import AtlassianInstance, Host, Operation
from tenants.models import Membership
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_user as _user

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
ENROL = {
    "name": "app-fra-1",
    "role": "app",
    "address": "10.0.0.5",
    "ssh_port": 22,
    "data_root": "/srv/atlassian",
    "root_password": "one-time-Pa55word",
}


def _same(first, second) -> None:
    assert first.status_code == 202, first.content
    assert second.status_code == 202, second.content
    assert second.json()["id"] == first.json()["id"]
    assert second["Location"] == first["Location"] == f"/api/operations/{first.json()['id']}/"


def _refused(response) -> None:
    assert response.status_code == 409, response.content
    assert "already used for a different request" in response.json()["detail"]


@pytest.fixture
def dave(acme, globex):
    """Admin of both Acme and Globex."""
    user = _user("dave")
    Membership.objects.create(user=user, tenant=acme, role=Membership.Role.ADMIN)
    Membership.objects.create(user=user, tenant=globex, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def hosted(app_host, acme_jira, globex_wiki):
    """Acme's and Globex's instances on an app host with a backup host, one point each."""
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk__in=[acme_jira.pk, globex_wiki.pk]).update(host=app_host)
    for instance in (acme_jira, globex_wiki):
        instance.refresh_from_db()
        make_point(instance)
    return acme_jira, globex_wiki


# --- instances -----------------------------------------------------------------------------


def test_instance_create_with_the_same_key_and_body_returns_the_same_operation(
    api, alice, acme, make_token
):
    client = api(token=make_token(alice))
    first = client.post("/api/instances/", NEW, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    second = client.post("/api/instances/", NEW, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    _same(first, second)
    assert AtlassianInstance.objects.filter(name="acme-wiki").count() == 1


def test_instance_create_with_the_same_key_and_another_body_is_409(api, alice, acme):
    client = api(alice)
    first = client.post("/api/instances/", NEW, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert first.status_code == 202
    other = {**NEW, "name": "acme-wiki2", "hostname": "wiki2.acme.example"}
    _refused(client.post("/api/instances/", other, format="json", HTTP_IDEMPOTENCY_KEY="c-1"))
    assert not AtlassianInstance.objects.filter(name="acme-wiki2").exists()
    assert Operation.objects.count() == 1


def test_instance_actions_replay_only_the_same_action_with_the_same_body(
    api, alice, acme_jira, app_host
):
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    client = api(alice)
    url = f"/api/instances/{acme_jira.pk}"
    resize = {"heap_min_mb": 1024, "heap_max_mb": 3072}
    first = client.post(f"{url}/resize/", resize, format="json", HTTP_IDEMPOTENCY_KEY="a-1")
    again = client.post(f"{url}/resize/", resize, format="json", HTTP_IDEMPOTENCY_KEY="a-1")
    _same(first, again)
    bigger = {"heap_min_mb": 1024, "heap_max_mb": 4096}
    _refused(client.post(f"{url}/resize/", bigger, format="json", HTTP_IDEMPOTENCY_KEY="a-1"))
    _refused(client.post(f"{url}/restart/", HTTP_IDEMPOTENCY_KEY="a-1"))
    assert Operation.objects.count() == 1


def test_a_key_used_under_tenant_a_does_not_reach_a_with_a_tenant_b_token(
    api, dave, acme, globex, acme_jira, globex_wiki, make_token
):
    under_a = api(token=make_token(dave, tenant=acme)).post(
        f"/api/instances/{acme_jira.pk}/stop/", HTTP_IDEMPOTENCY_KEY="shared-1"
    )
    assert under_a.status_code == 202
    b_token = api(token=make_token(dave, tenant=globex))
    # the same request: acme's instance is not even visible to the Globex token
    assert (
        b_token.post(
            f"/api/instances/{acme_jira.pk}/stop/", HTTP_IDEMPOTENCY_KEY="shared-1"
        ).status_code
        == 404
    )
    # its own request with that key is its own operation, in its own tenant
    under_b = b_token.post(
        f"/api/instances/{globex_wiki.pk}/stop/", HTTP_IDEMPOTENCY_KEY="shared-1"
    )
    assert under_b.status_code == 202
    assert under_b.json()["id"] != under_a.json()["id"]
    op = Operation.objects.get(pk=under_b.json()["id"])
    assert op.tenant == globex and op.instance == globex_wiki
    # dave's session is another namespace again: it does not get the tokens' operations
    create = {
        **NEW,
        "tenant": str(globex.pk),
        "name": "globex-jira",
        "hostname": "j.globex.example",
        "product": "jira-software",
        "version": "9.12.0",
        "context_path": "",
    }
    session = api(dave).post(
        "/api/instances/", create, format="json", HTTP_IDEMPOTENCY_KEY="shared-1"
    )
    assert session.status_code == 202
    assert session.json()["id"] not in {under_a.json()["id"], under_b.json()["id"]}


def test_a_key_whose_operation_is_out_of_reach_now_is_refused_without_naming_it(
    api, dave, acme, globex, acme_jira, globex_wiki
):
    client = api(dave)
    assert (
        client.post(
            f"/api/instances/{acme_jira.pk}/stop/", HTTP_IDEMPOTENCY_KEY="gone-1"
        ).status_code
        == 202
    )
    acme_op = Operation.objects.get()
    Membership.objects.filter(user=dave, tenant=acme).delete()
    response = client.post(f"/api/instances/{globex_wiki.pk}/stop/", HTTP_IDEMPOTENCY_KEY="gone-1")
    _refused(response)
    assert str(acme_op.id) not in response.content.decode()
    with pytest.raises(IdempotencyConflict):
        operation_replayed(actor=access_for_user(dave), key="gone-1")


# --- backups, restores, drills --------------------------------------------------------------


def test_backup_start_replays_the_same_request_and_refuses_another_instance(api, dave, hosted):
    acme_jira, globex_wiki = hosted
    client = api(dave)
    body = {"instance": str(acme_jira.pk), "mode": "cold"}
    first = client.post("/api/backups/", body, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    again = client.post("/api/backups/", body, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    _same(first, again)
    # before: the other instance's request got acme's operation and its backup never ran
    other = {"instance": str(globex_wiki.pk), "mode": "cold"}
    _refused(client.post("/api/backups/", other, format="json", HTTP_IDEMPOTENCY_KEY="b-1"))
    hot = {"instance": str(acme_jira.pk), "mode": "hot"}
    _refused(client.post("/api/backups/", hot, format="json", HTTP_IDEMPOTENCY_KEY="b-1"))
    assert Operation.objects.filter(kind="backup.create").count() == 1


def test_restore_and_drill_replay_the_same_request_and_refuse_another(api, sam, hosted):
    acme_jira, _ = hosted
    point = Backup.objects.get(instance=acme_jira)
    client = api(sam)
    url = f"/api/backups/{point.pk}/restore/"
    body = {"mode": "in_place", "confirm": "acme-jira"}
    _same(
        client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1"),
        client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="r-1"),
    )
    copy = {"mode": "new_instance", "name": "acme-copy", "hostname": "copy.acme.example"}
    _refused(client.post(url, copy, format="json", HTTP_IDEMPOTENCY_KEY="r-1"))
    # a drill with the restore's key is another request
    drill = {"instance": str(acme_jira.pk)}
    _refused(client.post("/api/restore-drills/", drill, format="json", HTTP_IDEMPOTENCY_KEY="r-1"))
    _same(
        client.post("/api/restore-drills/", drill, format="json", HTTP_IDEMPOTENCY_KEY="d-1"),
        client.post("/api/restore-drills/", drill, format="json", HTTP_IDEMPOTENCY_KEY="d-1"),
    )
    assert Operation.objects.count() == 2


# --- hosts ----------------------------------------------------------------------------------


def test_host_enrolment_replays_the_same_request_and_refuses_another(api, pat):
    client = api(pat)
    first = client.post("/api/hosts/", ENROL, format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    again = client.post("/api/hosts/", ENROL, format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    _same(first, again)
    other = {**ENROL, "name": "app-fra-2", "address": "10.0.0.6"}
    _refused(client.post("/api/hosts/", other, format="json", HTTP_IDEMPOTENCY_KEY="h-1"))
    assert not Host.objects.filter(name="app-fra-2").exists()
    host = Host.objects.get(name="app-fra-1")
    _refused(client.post(f"/api/hosts/{host.pk}/health/", HTTP_IDEMPOTENCY_KEY="h-1"))
    assert Operation.objects.count() == 1


# --- the same rule in the UI's forms ---------------------------------------------------------


def test_a_form_key_reused_for_another_form_shows_an_error_and_starts_nothing(alice, acme):
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(alice)
    url = reverse("provisioning:instance_create")
    form = {**NEW, "tenant": str(acme.pk), "tier": "", "idempotency_key": "ui-k-1"}
    first = client.post(url, form)
    again = client.post(url, form)  # a double submit
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"]
    other = client.post(url, {**form, "name": "acme-wiki2", "hostname": "w2.acme.example"})
    assert other.status_code == 200
    assert "already used for a different request" in other.content.decode()
    assert Operation.objects.count() == 1
    assert not AtlassianInstance.objects.filter(name="acme-wiki2").exists()
