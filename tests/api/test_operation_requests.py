"""One way to start an operation (issue 12): a request on a target that already has an active
operation answers 409 naming it before any check of the target's state, and a key reused for
another request answers 409 in every API family (instances, hosts, backups, certificates)."""

from __future__ import annotations

import pytest

from backups.models import Backup
from panel.access import access_for_user
from panel.operation_requests import operation_conflict_check
from panel.operations import OperationConflict
from provisioning.models import AtlassianInstance, InstanceStatus, Operation
from provisioning.services import instance_start
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_operation

pytestmark = pytest.mark.django_db


def _names(response, running: Operation) -> None:
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["operation"] == str(running.pk)
    assert body["operation_url"] == f"/api/operations/{running.pk}/"


def _refused(response) -> None:
    assert response.status_code == 409, response.content
    assert "already used for a different request" in response.json()["detail"]


@pytest.fixture
def backed_up(app_host, acme_jira):
    """Acme's Jira on an app host with a backup host and one retained point."""
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    make_point(acme_jira)
    return acme_jira


def _restoring(instance: AtlassianInstance) -> Operation:
    """A restore in progress: the instance says so and the restore holds its lock."""
    AtlassianInstance.objects.filter(pk=instance.pk).update(status=InstanceStatus.RESTORING)
    instance.refresh_from_db()
    return make_operation(instance, kind="backup.restore", status="running")


# --- 409 first ------------------------------------------------------------------------------


def test_an_instance_action_on_a_busy_instance_names_the_running_operation(api, alice, acme_jira):
    # stopped: "stop" alone would be refused for the state; the running upgrade comes first
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(status=InstanceStatus.STOPPED)
    running = make_operation(acme_jira, kind="instance.upgrade")
    for action in ("stop", "start", "restart"):
        _names(api(alice).post(f"/api/instances/{acme_jira.pk}/{action}/"), running)
    assert Operation.objects.count() == 1


def test_a_backup_sent_while_a_restore_runs_is_409_naming_the_restore(api, alice, backed_up):
    restore = _restoring(backed_up)
    body = {"instance": str(backed_up.pk), "mode": "cold"}
    # before: 400 "acme-jira is restoring; only running or stopped instances are backed up"
    _names(api(alice).post("/api/backups/", body, format="json"), restore)
    assert Operation.objects.count() == 1


def test_a_restore_sent_while_a_restore_runs_is_409_naming_the_first(api, sam, backed_up):
    restore = _restoring(backed_up)
    point = Backup.objects.get(instance=backed_up)
    body = {"mode": "in_place", "confirm": "acme-jira"}
    # before: 400 "acme-jira is restoring; it cannot be restored in place now"
    _names(api(sam).post(f"/api/backups/{point.pk}/restore/", body, format="json"), restore)
    assert Operation.objects.count() == 1


def test_a_service_checks_the_lock_before_the_state(alice, acme_jira):
    running = make_operation(acme_jira, kind="instance.upgrade")
    # running: "start" is not allowed from it, but the conflict is what the caller hears
    with pytest.raises(OperationConflict) as caught:
        instance_start(actor=access_for_user(alice), instance=acme_jira)
    assert caught.value.running == running
    operation_conflict_check(None)  # no lock key, nothing to check
    operation_conflict_check("instance:nothing-holds-this")


# --- one replay rule ------------------------------------------------------------------------


def test_a_key_reused_for_a_backup_after_an_instance_action_is_409(api, alice, backed_up):
    client = api(alice)
    first = client.post(f"/api/instances/{backed_up.pk}/restart/", HTTP_IDEMPOTENCY_KEY="x-1")
    assert first.status_code == 202
    body = {"instance": str(backed_up.pk), "mode": "cold"}
    _refused(client.post("/api/backups/", body, format="json", HTTP_IDEMPOTENCY_KEY="x-1"))
    assert Operation.objects.count() == 1


def test_certificate_actions_replay_the_same_request_and_refuse_another(
    api, alice, acme_jira, app_host
):
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    client = api(alice)
    deploy = f"/api/instances/{acme_jira.pk}/proxy/deploy/"
    first = client.post(deploy, HTTP_IDEMPOTENCY_KEY="c-1")
    again = client.post(deploy, HTTP_IDEMPOTENCY_KEY="c-1")
    assert first.status_code == again.status_code == 202, first.content
    assert again.json()["id"] == first.json()["id"]
    _refused(client.post(f"/api/instances/{acme_jira.pk}/dns/update/", HTTP_IDEMPOTENCY_KEY="c-1"))
    _refused(client.post(f"/api/instances/{acme_jira.pk}/restart/", HTTP_IDEMPOTENCY_KEY="c-1"))
    assert Operation.objects.count() == 1


def test_a_host_key_reused_for_an_instance_action_is_409(api, pat, app_host, acme_jira):
    app_host.host_key_fingerprint = "SHA256:" + "A" * 43
    app_host.save()
    client = api(pat)
    assert (
        client.post(f"/api/hosts/{app_host.pk}/health/", HTTP_IDEMPOTENCY_KEY="h-9").status_code
        == 202
    )
    _refused(client.post(f"/api/instances/{acme_jira.pk}/stop/", HTTP_IDEMPOTENCY_KEY="h-9"))
    assert Operation.objects.count() == 1
