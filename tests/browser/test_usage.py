"""Resource use in the browser: a customer reads the instance's 24 h chart beside its health
chart (memory drawn against the heap and the container's limit) and gets the same samples from
the API; a platform admin reads the host's totals against its capacity."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from provisioning.models import AtlassianInstance, InstanceUsage

MIB, GIB = 1024**2, 1024**3


def _day_of_samples(instance: AtlassianInstance) -> None:
    """A sample every 10 minutes for a day: memory climbing towards the heap, CPU in waves."""
    now = timezone.now()
    InstanceUsage.objects.bulk_create(
        InstanceUsage(
            instance=instance,
            sampled_at=now - timedelta(minutes=10 * i),
            app_cpu_percent=20.0 + (i * 13) % 60,
            app_memory_bytes=(1900 - 3 * i) * MIB,
            app_memory_limit_bytes=2560 * MIB,
            db_cpu_percent=1.5,
            db_memory_bytes=180 * MIB,
            db_memory_limit_bytes=1024 * MIB,
            home_bytes=(3 * GIB) - i * MIB,
            db_disk_bytes=GIB,
            disk_sampled_at=now - timedelta(minutes=10 * i),
        )
        for i in range(144)
    )


def test_a_customer_reads_resource_use_beside_health_and_an_admin_the_hosts_totals(
    page, login, screenshot, bob, pat, acme_jira, app_host
):
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(heap_max_mb=2048)
    _day_of_samples(acme_jira)

    login(bob)
    page.goto(f"/instances/{acme_jira.pk}/")
    chart = page.get_by_test_id("usage-chart")
    expect(chart).to_have_attribute("data-samples", "144")
    # beside the health chart, on the same row of the page
    health_box = page.locator("#health").bounding_box()
    usage_box = page.locator("#usage").bounding_box()
    assert health_box and usage_box and abs(health_box["y"] - usage_box["y"]) < 1
    assert usage_box["x"] > health_box["x"]
    memory = chart.get_by_test_id("usage-memory")
    expect(memory.get_by_test_id("usage-heap")).to_have_text("2.0\xa0GB")
    expect(memory.get_by_test_id("usage-memory-limit-value")).to_have_text("2.5\xa0GB")
    expect(memory.get_by_test_id("usage-memory-line")).to_be_visible()
    heap = memory.get_by_test_id("usage-memory-heap").bounding_box()
    limit = memory.get_by_test_id("usage-memory-limit").bounding_box()
    assert heap and limit and heap["y"] > limit["y"], "the heap is drawn below the limit"
    expect(chart.get_by_test_id("usage-cpu-line")).to_be_visible()
    expect(chart.get_by_test_id("usage-home")).to_have_text("3.0\xa0GB")
    expect(chart.get_by_test_id("usage-disk-line")).to_be_visible()
    screenshot("instance-usage")

    # the same samples through the API, with the session the page uses
    answer = page.request.get(f"/api/instances/{acme_jira.pk}/usage/")
    assert answer.status == 200
    body = answer.json()
    assert len(body["samples"]) == 144 and body["limits"]["heap_max_mb"] == 2048

    page.locator("#logout-button").click()
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    login(pat)
    page.goto(f"/hosts/{app_host.pk}/")
    section = page.get_by_test_id("host-usage")
    expect(section).to_have_attribute("data-sampled", "1")
    expect(section.get_by_test_id("host-usage-cpu")).to_contain_text("of 4 CPUs busy")
    expect(section.get_by_test_id("host-usage-memory")).to_contain_text("2.0\xa0GB used of 16.0")
    expect(section.get_by_test_id("host-usage-disk")).to_contain_text("of 200.0\xa0GB (2.0%)")
    expect(section.get_by_test_id("host-usage-row")).to_have_count(1)
    expect(section.locator("meter")).to_have_count(3)
    screenshot("host-usage")
    answer = page.request.get(f"/api/hosts/{app_host.pk}/usage/")
    assert answer.status == 200 and answer.json()["instances"][0]["name"] == "acme-jira"
