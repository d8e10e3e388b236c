"""The instance page's health chart: the last 24 hours of checks in half-hour slots."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from provisioning.models import InstanceHealthCheck
from provisioning.selectors import instance_health_history

pytestmark = pytest.mark.django_db


def check(instance, minutes_ago: float, ok: bool = True, ms: int | None = 100):
    return InstanceHealthCheck.objects.create(
        instance=instance,
        ok=ok,
        response_ms=ms,
        checked_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_checks_fall_into_half_hour_slots_with_their_pass_rate_and_mean_time(
    acme_jira, alice, access_of
):
    check(acme_jira, 5, ms=100)
    check(acme_jira, 10, ms=300)
    check(acme_jira, 40, ok=False, ms=None)
    check(acme_jira, 60 * 25)  # older than a day: not shown
    history = instance_health_history(access_of(alice), acme_jira)
    assert history["total"] == 3 and history["ok"] == 2 and history["percent"] == 66.7
    last, before = history["slots"][-1], history["slots"][-2]
    assert (last["total"], last["ok"], last["mean_ms"]) == (2, 2, 200)
    assert (before["total"], before["ok"], before["mean_ms"]) == (1, 0, None)
    assert sum(s["total"] for s in history["slots"][:-2]) == 0


def test_another_tenant_never_sees_the_history(acme_jira, charlie, access_of):
    check(acme_jira, 5)
    assert instance_health_history(access_of(charlie), acme_jira)["total"] == 0


def test_the_instance_page_draws_passed_and_failed_slots_with_readable_titles(acme_jira, bob):
    for minutes in range(1, 30):
        check(acme_jira, minutes)
    check(acme_jira, 45, ok=False)
    client = Client()
    client.force_login(bob)
    page = client.get(f"/instances/{acme_jira.pk}/").content.decode()
    assert 'data-testid="health-chart" data-checks="30"' in page
    assert page.count('data-tone="ok"') == 1 and page.count('data-tone="bad"') == 1
    assert page.count('data-tone="none"') == 46
    assert "29 of 29 checks passed, 100 ms on average" in page
    assert "29 of 30 checks passed (96.7%)" in page


def test_an_instance_without_checks_says_when_they_come(acme_jira, bob):
    client = Client()
    client.force_login(bob)
    page = client.get(f"/instances/{acme_jira.pk}/").content.decode()
    assert "No health checks in the last 24 hours yet" in page
