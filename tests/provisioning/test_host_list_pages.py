"""The host list comes a page at a time (a fleet has hundreds of hosts), in a number of queries
that does not grow with them, and its disk warning still counts every host's disk."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from provisioning.models import Host
from provisioning.selectors import hosts_disk_warning_count

pytestmark = pytest.mark.django_db

GIB = 1024**3


@pytest.fixture
def admin(client, pat):
    client.force_login(pat)
    return client


def _hosts(n: int, *, start: int = 0) -> list[Host]:
    return [
        Host.objects.create(
            name=f"app-{i:03d}",
            role=Host.Role.APP,
            address=f"10.0.{i // 250}.{i % 250 + 1}",
            status=Host.Status.READY,
            disk_total_bytes=100 * GIB,
            disk_free_bytes=60 * GIB,
        )
        for i in range(start, start + n)
    ]


def test_the_list_shows_25_hosts_a_page_with_links_to_the_others(admin):
    _hosts(30)
    first = admin.get("/hosts/").content.decode()
    assert first.count('data-testid="host-row"') == 25
    assert 'data-host="app-000"' in first and 'data-host="app-025"' not in first
    assert "30 hosts" in first and "Page 1 of 2" in first and 'id="page-next"' in first
    second = admin.get("/hosts/?page=2").content.decode()
    assert second.count('data-testid="host-row"') == 5
    assert 'data-host="app-025"' in second and 'id="page-prev"' in second


def test_a_page_past_the_end_or_not_a_number_shows_a_real_page(admin):
    _hosts(3)
    for page in ("99", "x", "-1"):
        response = admin.get(f"/hosts/?page={page}")
        assert response.status_code == 200
        assert response.content.decode().count('data-testid="host-row"') == 3


def test_htmx_pagination_swaps_only_the_table(admin):
    _hosts(30)
    response = admin.get("/hosts/?page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="host-table")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="host-table"')
    assert html.count('data-testid="host-row"') == 5
    assert 'hx-target="#host-table"' in html


def test_the_disk_warning_counts_hosts_on_every_page(admin, settings):
    settings.PANEL_HOST_DISK_WARNING_PERCENT = 85
    _hosts(26)
    Host.objects.filter(name="app-025").update(disk_free_bytes=5 * GIB)  # on page 2: 95 %
    page = admin.get("/hosts/").content.decode()
    assert 'data-testid="disk-warnings"' in page and "1 host has a data disk" in page
    assert 'data-testid="disk-warning"' not in page  # the row itself is on page 2
    assert 'data-testid="disk-warning"' in admin.get("/hosts/?page=2").content.decode()


@pytest.mark.parametrize(
    ("total", "free", "warned"),
    [
        (100 * GIB, 15 * GIB, True),  # 85.0 %: at the threshold
        (100 * GIB, 16 * GIB, False),  # 84.0 %
        (1000, 151, False),  # 84.9 %
        (10_000, 1_504, True),  # 84.96 % shows as 85.0 %, and warns
        (100 * GIB, 0, True),
        (100 * GIB, None, False),  # never measured
        (None, 10, False),
        (0, 0, False),
    ],
)
def test_the_counted_warning_is_the_one_each_row_shows(settings, total, free, warned):
    settings.PANEL_HOST_DISK_WARNING_PERCENT = 85
    host = _hosts(1)[0]
    Host.objects.filter(pk=host.pk).update(disk_total_bytes=total, disk_free_bytes=free)
    host.refresh_from_db()
    assert host.disk_warning is warned
    assert hosts_disk_warning_count(Host.objects.all()) == int(warned)


def test_the_list_takes_the_same_queries_for_5_hosts_and_for_60(admin):
    _hosts(5)
    admin.get("/hosts/")
    with CaptureQueriesContext(connection) as few:
        admin.get("/hosts/")
    _hosts(55, start=5)
    with CaptureQueriesContext(connection) as many:
        admin.get("/hosts/?page=2")
    assert len(few.captured_queries) == len(many.captured_queries)


def test_the_list_reads_no_host_keys(admin):
    _hosts(2)
    with CaptureQueriesContext(connection) as captured:
        admin.get("/hosts/")
    rows = [q["sql"] for q in captured.captured_queries if 'FROM "provisioning_host"' in q["sql"]]
    assert rows and not any("ssh_private_key" in sql or '"facts"' in sql for sql in rows)
