"""Resource use on the pages and in the API: the instance page's 24 h chart beside the health
chart (memory against the heap and the container's limit), the host page's totals against its
capacity, ``GET /api/instances/<id>/usage/`` and ``GET /api/hosts/<id>/usage/``; another
tenant's instance answers 404, a customer never reaches a host's totals."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from provisioning.models import InstanceUsage
from provisioning.selectors import host_usage_totals, instance_usage_history
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db

MIB, GIB = 1024**2, 1024**3


def sample(instance, minutes_ago: float, **fields) -> InstanceUsage:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    values = {
        "app_cpu_percent": 40.0,
        "app_memory_bytes": 1800 * MIB,
        "app_memory_limit_bytes": 2560 * MIB,
        "db_cpu_percent": 2.0,
        "db_memory_bytes": 100 * MIB,
        "db_memory_limit_bytes": 1024 * MIB,
        "home_bytes": 3 * GIB,
        "db_disk_bytes": GIB,
        "disk_sampled_at": at,
    }
    values.update(fields)
    return InstanceUsage.objects.create(instance=instance, sampled_at=at, **values)


@pytest.fixture
def placed(acme_jira, app_host):
    acme_jira.host = app_host
    acme_jira.heap_max_mb = 2048
    acme_jira.save()
    return acme_jira


# --- the instance page ------------------------------------------------------------------------


def test_the_history_has_half_hour_slots_with_mean_cpu_and_highest_memory(placed, alice, access_of):
    sample(placed, 5, app_cpu_percent=10.0, app_memory_bytes=GIB)
    sample(placed, 10, app_cpu_percent=30.0, app_memory_bytes=2 * GIB)
    sample(placed, 60 * 25)  # older than a day: not shown
    history = instance_usage_history(access_of(alice), placed)
    assert history["total"] == 2
    last = history["slots"][-1]
    assert (last["samples"], last["app_cpu_percent"], last["app_memory_bytes"]) == (
        2,
        20.0,
        2 * GIB,
    )
    assert last["disk_bytes"] == 4 * GIB
    assert history["heap_bytes"] == 2048 * MIB and history["app_memory_limit_bytes"] == 2560 * MIB
    assert history["latest"].app_cpu_percent == 10.0


def test_another_tenant_sees_no_samples(placed, charlie, access_of):
    sample(placed, 5)
    assert instance_usage_history(access_of(charlie), placed)["total"] == 0


def test_the_instance_page_draws_use_against_the_heap_and_the_container_limit(placed, bob, browser):
    for minutes in range(1, 120, 10):
        sample(placed, minutes)
    sample(placed, 0.5, disk_error="", app_cpu_percent=55.5)
    page = browser(bob).get(reverse("provisioning:instance_detail", args=[placed.pk]))
    html = page.content.decode()
    assert 'data-testid="usage-chart" data-samples="13"' in html
    # beside the health chart, in one row
    assert re.search(r'<div class="grid-2">\s*<section[^>]*id="health".*?id="usage"', html, re.S)
    assert 'data-testid="usage-memory-heap"' in html and 'data-testid="usage-memory-limit"' in html
    assert 'data-testid="usage-heap">2.0\xa0GB<' in html
    assert 'data-testid="usage-memory-limit-value">2.5\xa0GB<' in html
    assert 'data-testid="usage-cpu-now">55.5%<' in html
    assert 'data-testid="usage-home">3.0\xa0GB<' in html
    assert html.count('class="usage-line usage-app" data-testid="usage-memory-line"') == 1
    assert "no-usage" not in html


def test_the_heap_line_sits_below_the_limit_line(placed, bob, browser):
    sample(placed, 1)
    html = browser(bob).get(reverse("provisioning:instance_detail", args=[placed.pk])).content
    heap = re.search(rb'y1="([0-9.]+)"[^>]*class="usage-heap"', html)
    limit = re.search(
        rb'y1="([0-9.]+)"[^>]*class="usage-limit" data-testid="usage-memory-limit"', html
    )
    assert heap and limit
    # SVG y grows downwards: the 2 GB heap is drawn lower than the 2.5 GB limit
    assert float(heap.group(1)) > float(limit.group(1))


def test_a_failed_disk_measurement_is_said_in_the_panels_words(placed, bob, browser):
    sample(
        placed,
        1,
        home_bytes=None,
        db_disk_bytes=None,
        disk_error="The home and database directories could not be measured (du did not "
        "finish within 15 s).",
    )
    html = browser(bob).get(reverse("provisioning:instance_detail", args=[placed.pk])).content
    assert b'data-testid="usage-disk-error">The home and database directories could not' in html
    assert b'data-testid="usage-home">\xe2\x80\x94<' in html


def test_an_instance_without_samples_says_when_they_come(placed, bob, browser):
    html = browser(bob).get(reverse("provisioning:instance_detail", args=[placed.pk])).content
    assert b'data-testid="usage-chart" data-samples="0"' in html
    assert b"No resource use sampled in the last 24 hours yet" in html


def test_another_tenants_instance_page_is_404(placed, charlie, browser):
    sample(placed, 1)
    page = browser(charlie).get(reverse("provisioning:instance_detail", args=[placed.pk]))
    assert page.status_code == 404


# --- the host page ----------------------------------------------------------------------------


def test_the_host_totals_count_fresh_cpu_and_memory_and_every_instances_disk(
    acme, globex, app_host, pat, access_of
):
    jira = make_instance(acme, "acme-jira", host=app_host, heap_max_mb=2048)
    wiki = make_instance(globex, "globex-wiki", host=app_host, product="confluence")
    stopped = make_instance(acme, "acme-old", host=app_host, status="stopped")
    make_instance(acme, "acme-gone", host=app_host, status="deleted")
    sample(jira, 30)  # an older sample of the same instance: not counted
    sample(jira, 1, app_cpu_percent=150.0, db_cpu_percent=10.0, app_memory_bytes=2 * GIB)
    sample(wiki, 2, app_cpu_percent=40.0, db_cpu_percent=None, db_memory_bytes=None)
    sample(stopped, 60 * 3)  # stopped three hours ago: its disk only
    totals = host_usage_totals(access_of(pat), app_host)
    assert [r["instance"].name for r in totals["rows"]] == ["acme-jira", "acme-old", "globex-wiki"]
    assert totals["cpu_percent"] == 200.0 and totals["cpus_used"] == 2.0
    assert totals["cpu_share"] == 50.0  # of the host's 4 CPUs
    assert totals["memory_bytes"] == 2 * GIB + 100 * MIB + 1800 * MIB
    assert totals["memory_capacity_bytes"] == 16384 * MIB
    assert totals["disk_bytes"] == 3 * 4 * GIB
    assert totals["disk_share"] == 6.0  # 12 GiB of 200 GiB
    stale = next(r for r in totals["rows"] if r["instance"].name == "acme-old")
    assert stale["cpu_percent"] is None and stale["disk_bytes"] == 4 * GIB
    assert totals["memory_committed_bytes"] > totals["memory_bytes"]


def test_the_host_page_shows_the_totals_against_its_capacity(acme, app_host, pat, browser):
    jira = make_instance(acme, "acme-jira", host=app_host)
    sample(jira, 1, app_cpu_percent=100.0, db_cpu_percent=0.0)
    html = browser(pat).get(reverse("hosts:detail", args=[app_host.pk])).content.decode()
    assert 'data-testid="host-usage" data-sampled="1"' in html
    assert "1 of 4 CPUs busy (25.0%)" in html
    assert "used of 16.0\xa0GB" in html
    assert "4.0\xa0GB under the instances' homes and databases of 200.0\xa0GB (2.0%)" in html
    assert html.count('data-testid="host-usage-row"') == 1


def test_a_backup_host_page_has_no_usage_section(pat, browser):
    from tests.backups.factories import backup_host

    html = browser(pat).get(reverse("hosts:detail", args=[backup_host().pk])).content
    assert b'data-testid="host-usage"' not in html


# --- the API ----------------------------------------------------------------------------------


def test_the_api_gives_a_day_of_samples_oldest_first_with_the_limits(placed, alice, api):
    sample(placed, 60 * 25)
    first = sample(placed, 20, app_cpu_percent=12.5)
    second = sample(placed, 1, home_bytes=None, disk_error="The home directory could not be x.")
    answer = api(alice).get(f"/api/instances/{placed.pk}/usage/")
    assert answer.status_code == 200
    body = answer.json()
    assert body["instance"] == str(placed.pk) and body["hours"] == 24
    assert body["limits"]["heap_max_mb"] == 2048
    assert body["limits"]["app_memory_limit_mb"] > 2048
    assert [s["app_cpu_percent"] for s in body["samples"]] == [12.5, 40.0]
    assert body["samples"][0]["sampled_at"].startswith(first.sampled_at.strftime("%Y-%m-%dT%H"))
    assert body["samples"][1]["home_bytes"] is None
    assert body["samples"][1]["disk_error"] == second.disk_error
    assert body["samples"][1]["app_memory_limit_bytes"] == 2560 * MIB


def test_the_api_answers_404_for_another_tenants_instance(placed, charlie, api):
    sample(placed, 1)
    answer = api(charlie).get(f"/api/instances/{placed.pk}/usage/")
    assert answer.status_code == 404
    assert "samples" not in answer.json()


def test_the_host_usage_api_is_for_platform_admins(placed, app_host, pat, sam, alice, api):
    sample(placed, 1, app_cpu_percent=80.0, db_cpu_percent=20.0)
    url = f"/api/hosts/{app_host.pk}/usage/"
    assert api(alice).get(url).status_code == 403
    assert api(sam).get(url).status_code == 403
    body = api(pat).get(url).json()
    assert body["host"] == str(app_host.pk)
    assert (body["cpus_used"], body["cpu_count"], body["cpu_share"]) == (1.0, 4, 25.0)
    assert body["disk_bytes"] == 4 * GIB and body["disk_total_bytes"] == 200 * GIB
    [row] = body["instances"]
    assert (row["name"], row["cpu_percent"], row["disk_bytes"]) == ("acme-jira", 100.0, 4 * GIB)
    assert api(pat).get("/api/hosts/00000000-0000-4000-8000-000000000000/usage/").status_code == 404
