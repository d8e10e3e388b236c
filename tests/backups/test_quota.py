"""Extra backups per day: a tenant admin's loop of manual backups stops at the daily limit
with a clear 400 (API) or form error (UI); failed runs, staff and scheduled backups do not
count."""

from __future__ import annotations

import pytest
from django.urls import reverse

from backups.services import backup_start
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Operation
from tests.backups.factories import backup_host, with_backup_host

pytestmark = pytest.mark.django_db


@pytest.fixture
def jira(acme_jira, app_host, settings):
    settings.PANEL_BACKUP_MANUAL_PER_INSTANCE_PER_DAY = 2
    settings.PANEL_BACKUP_MANUAL_PER_TENANT_PER_DAY = 20
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    return acme_jira


def _finish(status: str = "succeeded") -> None:
    Operation.objects.filter(status__in=["pending", "running"]).update(status=status)


def _start(api, user, jira, key: str):
    return api(user).post("/api/backups/", {"instance": str(jira.pk)}, HTTP_IDEMPOTENCY_KEY=key)


def test_the_api_refuses_extra_backups_past_the_daily_limit(api, alice, jira):
    for n in range(2):
        assert _start(api, alice, jira, f"k{n}").status_code == 202
        _finish()
    refused = _start(api, alice, jira, "k3")
    assert refused.status_code == 400
    assert "Limit of extra backups reached" in refused.content.decode()
    assert "2 in the last 24 hours" in refused.content.decode()
    assert Operation.objects.filter(kind="backup.create").count() == 2


def test_failed_runs_do_not_use_up_the_limit_and_staff_are_not_limited(api, alice, sam, jira):
    for n in range(3):
        assert _start(api, alice, jira, f"f{n}").status_code == 202
        _finish("failed")
    assert _start(api, alice, jira, "ok1").status_code == 202
    _finish()
    assert _start(api, alice, jira, "ok2").status_code == 202
    _finish()
    assert _start(api, alice, jira, "ok3").status_code == 400
    backup_start(actor=access_for_user(sam), instance=jira)  # support: not counted, not refused
    _finish()
    backup_start(actor=None, instance=jira, kind="scheduled")
    assert Operation.objects.filter(params__kind="scheduled").count() == 1


def test_the_form_says_why_a_further_extra_backup_is_refused(browser, alice, jira):
    client = browser(alice)
    url = reverse("backups:backup_start", args=[jira.pk])
    for n in range(2):
        client.post(url, {"mode": "", "idempotency_key": f"ui-{n}"})
        _finish()
    response = client.post(url, {"mode": "", "idempotency_key": "ui-3"}, follow=True)
    assert response.status_code == 200
    assert b"Limit of extra backups reached" in response.content
    assert Operation.objects.filter(kind="backup.create").count() == 2
