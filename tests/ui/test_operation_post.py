"""Every button that starts an operation behaves the same (issue 12): a double submit lands on
the first operation, a key reused for another button is refused with a message, and a busy
target is named with a link before any check of its state."""

from __future__ import annotations

import pytest
from django.urls import reverse

from provisioning.models import AtlassianInstance, InstanceStatus, Operation
from tests.backups.factories import backup_host, with_backup_host
from tests.support.factories import make_operation

pytestmark = pytest.mark.django_db


@pytest.fixture
def placed(app_host, acme_jira):
    """Acme's Jira on an app host that has a backup host."""
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    return acme_jira


def test_a_backup_button_pressed_while_a_restore_runs_names_the_restore(browser, alice, placed):
    AtlassianInstance.objects.filter(pk=placed.pk).update(status=InstanceStatus.RESTORING)
    restore = make_operation(placed, kind="backup.restore", status="running")
    client = browser(alice)
    url = reverse("backups:backup_start", args=[placed.pk])
    response = client.post(url, {"mode": "cold", "idempotency_key": "ui-b-1"})
    assert response["Location"] == reverse("backups:instance_backups", args=[placed.pk])
    page = client.get(response["Location"]).content.decode()
    # before: "acme-jira is restoring; only running or stopped instances are backed up."
    assert "An operation is already running on this instance" in page
    assert f'href="/operations/{restore.pk}/"' in page
    assert Operation.objects.count() == 1


def test_a_certificate_button_pressed_twice_starts_one_operation(browser, alice, placed):
    client = browser(alice)
    url = reverse("certificates:proxy_deploy", args=[placed.pk])
    first = client.post(url, {"idempotency_key": "ui-p-1"})
    again = client.post(url, {"idempotency_key": "ui-p-1"})
    operation = Operation.objects.get()
    assert first["Location"] == again["Location"]
    assert first["Location"] == reverse("provisioning:operation_detail", args=[operation.pk])


def test_a_key_reused_for_another_button_is_refused_and_starts_nothing(browser, alice, placed):
    client = browser(alice)
    deploy = reverse("certificates:proxy_deploy", args=[placed.pk])
    assert client.post(deploy, {"idempotency_key": "ui-k-9"}).status_code == 302
    restart = reverse("provisioning:instance_action", args=[placed.pk, "restart"])
    response = client.post(restart, {"idempotency_key": "ui-k-9"}, follow=True)
    assert "already used for a different request" in response.content.decode()
    assert Operation.objects.count() == 1
