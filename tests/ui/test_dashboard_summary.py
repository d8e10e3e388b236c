"""The dashboard's figures are counted in the database, in a number of queries that does not
grow with the fleet, and say the same as the lists they summarise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from provisioning.models import InstanceStatus, License
from provisioning.selectors import (
    dashboard_instances,
    dashboard_summary,
    instance_list,
    licenses_expiring,
)
from tenants.models import Tenant
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def _license(instance, *, expiry_in: int | None = None, maintenance_in: int | None = None):
    today = timezone.now().date()
    return License.objects.create(
        instance=instance,
        product="jira-software",
        key=f"key-{instance.name}-{expiry_in}-{maintenance_in}",
        expiry_date=None if expiry_in is None else today + timedelta(days=expiry_in),
        maintenance_expiry_date=(
            None if maintenance_in is None else today + timedelta(days=maintenance_in)
        ),
    )


def test_expiring_licenses_are_counted_as_the_license_list_counts_them(
    acme, globex, alice, sam, access_of
):
    jira, wiki = make_instance(acme, "acme-a"), make_instance(globex, "globex-a")
    _license(jira, expiry_in=5)
    _license(jira, maintenance_in=25)  # only the maintenance date is near
    _license(jira, expiry_in=59, maintenance_in=400)
    _license(jira, expiry_in=61)
    _license(jira, expiry_in=-3)  # already expired: still within every window
    _license(wiki, expiry_in=6)
    gone = make_instance(acme, "acme-gone", status=InstanceStatus.DELETED)
    _license(gone, expiry_in=1)
    for user in (alice, sam):
        access = access_of(user)
        within = dashboard_summary(access)["licenses_expiring_within"]
        assert within == {days: licenses_expiring(access, days).count() for days in (60, 30, 7)}
    assert dashboard_summary(access_of(alice))["licenses_expiring_within"] == {
        60: 4,
        30: 3,
        7: 2,
    }


def test_the_page_shows_the_three_license_windows(browser, alice, acme):
    _license(make_instance(acme, "acme-a"), expiry_in=5)
    html = browser(alice).get(reverse("dashboard")).content.decode()
    for days in (7, 30, 60):
        assert f'data-testid="stat-licenses-{days}"><span class="stat-value">1</span>' in html, days


def test_the_instance_table_shows_the_first_twenty_in_list_order(browser, sam, access_of):
    tenants = [
        Tenant.objects.create(name=name, slug=name.lower(), contact_email="t@example.com")
        for name in ("Zeta", "Alpha", "Mid")
    ]
    for tenant in tenants:
        for i in range(9):
            make_instance(tenant, f"{tenant.slug}-{8 - i}")
    access = access_of(sam)
    shown = [i.name for i in dashboard_instances(access)]
    assert shown == [i.name for i in instance_list(access)[:20]]
    assert shown[:2] == ["alpha-0", "alpha-1"] and shown[17:] == ["mid-8", "zeta-0", "zeta-1"]
    html = browser(sam).get(reverse("dashboard")).content.decode()
    assert html.count('data-testid="instance-row"') == 20
    assert "All 27 instances" in html and '<td class="hide-narrow">Alpha</td>' in html


def test_the_staff_dashboard_takes_the_same_queries_for_a_bigger_fleet(
    browser, sam, acme, globex, app_host
):
    with_backup_host(app_host, backup_host())
    client = browser(sam)
    url = reverse("dashboard")

    def grow(start: int, n: int) -> None:
        for tenant in (acme, globex):
            for i in range(start, start + n):
                inst = make_instance(tenant, f"{tenant.slug}-{i}", host=app_host)
                _license(inst, expiry_in=i)
                make_point(inst, taken_at=timezone.now() - timedelta(hours=i))

    grow(0, 2)
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    grow(2, 15)
    with CaptureQueriesContext(connection) as many:
        html = client.get(url).content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)
    assert "All 34 instances" in html
    # No query reads the backup points: the RPO figures come from each instance's summary.
    assert not any('FROM "backups_backup"' in q["sql"] for q in many.captured_queries)
