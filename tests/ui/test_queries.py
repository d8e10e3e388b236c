"""List pages cost the same number of queries for 3 rows as for 25; the backups page and the
DR dashboard cost a pinned number, whatever the number of base backups or archived instances;
a host's page with its evacuation panel a pinned number whatever the instances and copies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backups.models import BaseBackup
from provisioning.models import AtlassianInstance, EvacuatedCopy
from tests.backups.evacuation_world import evacuation_finished, evacuation_world, instance_on
from tests.backups.factories import backup_host, with_backup_host
from tests.support.factories import make_instance, make_operation, make_step
from tests.ui.test_point_in_time_ui import archive_with_window

pytestmark = pytest.mark.django_db

PAGES = ["dashboard", "provisioning:instance_list", "provisioning:operation_list"]


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def _add(acme, app_host, alice, start: int, count: int) -> None:
    for i in range(start, start + count):
        instance = make_instance(acme, f"acme-app{i:02d}", host=app_host)
        op = make_operation(instance, status="running", requested_by=alice)
        make_step(op, "working")


@pytest.mark.parametrize("name", PAGES)
def test_list_pages_take_a_constant_number_of_queries(browser, alice, acme, app_host, name):
    client = browser(alice)
    url = reverse(name)
    _add(acme, app_host, alice, 0, 3)
    few = _queries(client, url)
    _add(acme, app_host, alice, 3, 22)
    assert _queries(client, url) == few


# --- the backups page and the DR dashboard with point-in-time recovery ------------------------
# Pinned: a change in either number is a change to review (a new panel's reads, or an N+1).
# staff read the app hosts a copy can go to (one query, whatever their number); the RPO card
# reads the WAL archive (one query)
BACKUPS_PAGE_QUERIES = {"sam": 20, "alice": 21}
# + the last evacuation (its parts too once there is one) and the app hosts down, and the
# capacity plan's two (the policies summed per app host, the backup hosts); the instances
# outside their RPO are read (one query more) only when the tiers' counts say there are any
DR_PAGE_QUERIES = 13


def _base_backups(instance, app_host, count: int, start: int = 0) -> None:
    """``count`` more base backups, failed ones (whose errors customers see masked)."""
    for i in range(start, start + count):
        BaseBackup.objects.create(
            instance=instance,
            backup_host=app_host.backup_host,
            app_host=app_host,
            label=f"more-{i:02d}",
            status=BaseBackup.Status.FAILED,
            error="pg_basebackup: could not connect",
        )


def _archived(tenant, name: str, app_host, base_backups: int = 1):
    instance = make_instance(tenant, name, host=app_host)
    archive_with_window(instance, now=timezone.now())
    _base_backups(instance, app_host, base_backups - 1)
    return instance


@pytest.fixture
def backed_app_host(app_host):
    return with_backup_host(app_host, backup_host())


@pytest.mark.parametrize("who", sorted(BACKUPS_PAGE_QUERIES))
def test_the_backups_page_with_point_in_time_recovery_takes_a_pinned_number_of_queries(
    browser, request, acme, backed_app_host, who
):
    client = browser(request.getfixturevalue(who))
    instance = _archived(acme, "acme-pitr", backed_app_host, base_backups=2)
    url = reverse("backups:instance_backups", args=[instance.pk])
    client.get(url)  # the session's first read is not part of the page
    assert _queries(client, url) == BACKUPS_PAGE_QUERIES[who]
    _base_backups(instance, backed_app_host, 14, start=1)
    assert _queries(client, url) == BACKUPS_PAGE_QUERIES[who]


def test_the_dr_dashboard_with_its_archiving_table_takes_a_pinned_number_of_queries(
    browser, sam, acme, backed_app_host
):
    client = browser(sam)
    url = reverse("backups:dr_dashboard")
    _archived(acme, "acme-pitr00", backed_app_host)
    client.get(url)
    assert _queries(client, url) == DR_PAGE_QUERIES
    for i in range(1, 8):
        _archived(acme, f"acme-pitr{i:02d}", backed_app_host, base_backups=3)
    html = client.get(url).content.decode()
    assert html.count('data-testid="dr-archive"') == 8
    assert _queries(client, url) == DR_PAGE_QUERIES


def test_the_dr_dashboard_reads_the_instances_outside_their_rpo_only_when_there_are_any(
    browser, sam, acme, backed_app_host
):
    client = browser(sam)
    url = reverse("backups:dr_dashboard")
    _archived(acme, "acme-pitr00", backed_app_host)
    client.get(url)
    assert _queries(client, url) == DR_PAGE_QUERIES
    # Never backed up and older than any tier's RPO: outside it.
    for i in range(3):
        late = make_instance(acme, f"acme-late{i}", host=backed_app_host)
        AtlassianInstance.objects.filter(pk=late.pk).update(
            created_at=timezone.now() - timedelta(days=3)
        )
    html = client.get(url).content.decode()
    assert all(f"acme-late{i}" in html for i in range(3))
    assert _queries(client, url) == DR_PAGE_QUERIES + 1


# --- a failed host's page and its evacuation ---------------------------------------------------
# The host page: its own reads, plus the panel's (is it an app host staff see, the last
# evacuation and its parts, the copies); no plan there; the resource-use section's two (its
# instances with their newest sample's id, those samples).
HOST_PAGE_QUERIES = 12
# The confirm page shows the plan, whose reads grow by one per instance on the host (its newest
# point: backups.evacuate.evacuation_plan); pinned at two instances.
EVACUATE_PAGE_QUERIES = 13


def test_a_failed_hosts_page_with_its_evacuation_takes_a_pinned_number_of_queries(
    browser, pat, sam, acme, app_host
):
    world = evacuation_world(app_host)
    for i in range(2):
        instance_on(acme, f"acme-app{i}", world.down)
    evacuation_finished(sam, world)
    client = browser(pat)
    url = reverse("hosts:detail", args=[world.down.pk])
    client.get(url)
    assert _queries(client, url) == HOST_PAGE_QUERIES
    for i in range(2, 8):
        instance_on(acme, f"acme-app{i}", world.down)
        EvacuatedCopy.objects.create(
            host=world.down, instance_name=f"acme-app{i}", project=f"acme-app{i}", directory="/x"
        )
    assert _queries(client, url) == HOST_PAGE_QUERIES


def test_the_evacuate_page_takes_a_pinned_number_of_queries(browser, sam, acme, app_host):
    world = evacuation_world(app_host)
    for i in range(2):
        instance_on(acme, f"acme-app{i}", world.down)
    client = browser(sam)
    url = reverse("backups:host_evacuate", args=[world.down.pk])
    client.get(url)
    assert _queries(client, url) == EVACUATE_PAGE_QUERIES
