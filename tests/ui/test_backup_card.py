"""The instance page's backups card: its policy, last drill and open restore requests read in
one query with the policy (the drill's columns and the count ride on its row), and the same
facts, from queries of their own, for an instance without a policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backups.models import BackupPolicy, RestoreDrill, RestoreRequest
from backups.policies import policy_for
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def _card(client, instance) -> tuple[str, int]:
    url = reverse("provisioning:instance_detail", args=[instance.pk])
    client.get(url)  # the session's first read is not part of the page
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('data-testid="instance-backups"')
    return html[start : html.index("</section>", start)], len(ctx.captured_queries)


def _drills_and_requests(instance) -> None:
    now = timezone.now()
    RestoreDrill.objects.create(
        instance=instance, tier=instance.tier, status="failed", started_at=now - timedelta(days=9)
    )
    RestoreDrill.objects.create(
        instance=instance,
        tier=instance.tier,
        status="passed",
        started_at=now - timedelta(days=2),
        rto_seconds=754,
    )
    RestoreRequest.objects.create(instance=instance, note="the wiki from Monday")
    RestoreRequest.objects.create(instance=instance, note="old", status="done")
    RestoreRequest.objects.create(instance=instance, note="again please")


def test_the_card_shows_the_last_drill_and_open_requests_with_or_without_a_policy(
    browser, alice, acme, app_host
):
    client = browser(alice)
    instance = make_instance(acme, "acme-card", host=app_host)
    empty, _ = _card(client, instance)
    assert "None yet" in empty and 'data-testid="open-requests"' not in empty

    _drills_and_requests(instance)
    BackupPolicy.objects.filter(instance=instance).delete()
    without, queries_without = _card(client, instance)
    policy_for(instance)
    with_policy, queries_with = _card(client, instance)
    for html in (without, with_policy):
        assert (timezone.now() - timedelta(days=2)).strftime("%Y-%m-%d") in html
        assert 'data-status="passed"' in html
        assert "back in 13 min" in html  # 754 s
        assert "2 restore requests open" in html
    # the drill and the count ride on the policy's row: two queries fewer
    assert queries_with == queries_without - 2
