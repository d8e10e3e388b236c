"""The staff lists that grow with the fleet come a page at a time: all tenants (25 a page) and
all members (50 a page), each in a number of queries that does not grow with the rows, with
htmx pagination that swaps only the table."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.models import Membership, Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, sam):
    client.force_login(sam)
    return client


def _tenants(n: int) -> list[Tenant]:
    return [
        Tenant.objects.create(name=f"Tenant {i:03d}", slug=f"t{i:03d}", contact_email="a@b.example")
        for i in range(n)
    ]


def _members(tenants: list[Tenant], per: int) -> None:
    for tenant in tenants:
        for j in range(per):
            user = User.objects.create(username=f"{tenant.slug}-u{j}")
            Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.VIEWER)


def test_all_tenants_come_25_a_page_with_their_counts(staff):
    tenants = _tenants(30)
    _members(tenants[:1], 2)
    first = staff.get("/staff/tenants/").content.decode()
    assert first.count('data-testid="tenant-row"') == 25
    assert 'data-tenant="t000"' in first and 'data-tenant="t025"' not in first
    assert "30 tenants" in first and "Page 1 of 2" in first and 'id="page-next"' in first
    second = staff.get("/staff/tenants/?page=2").content.decode()
    assert second.count('data-testid="tenant-row"') == 5
    assert 'data-tenant="t029"' in second and 'id="page-prev"' in second
    # The counts are the tenant's own, on a page of many.
    row = first[first.index('data-tenant="t000"') :].split("</tr>")[0]
    assert '<td class="num">2</td>' in row


def test_the_tenant_list_costs_the_same_queries_at_any_size(staff):
    _tenants(3)
    with CaptureQueriesContext(connection) as small:
        assert staff.get("/staff/tenants/").status_code == 200
    Tenant.objects.bulk_create(
        [Tenant(name=f"More {i}", slug=f"m{i:03d}", contact_email="a@b.example") for i in range(60)]
    )
    with CaptureQueriesContext(connection) as large:
        assert staff.get("/staff/tenants/?page=2").status_code == 200
    assert len(large) == len(small)


def test_htmx_pagination_of_tenants_swaps_only_the_table(staff):
    _tenants(30)
    response = staff.get(
        "/staff/tenants/?page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tenant-table"
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="tenant-table"')
    assert html.count('data-testid="tenant-row"') == 5


def test_all_members_come_50_a_page(staff):
    _members(_tenants(11), 5)  # 55 memberships
    first = staff.get("/members/").content.decode()
    assert first.count('data-testid="member-row"') == 50
    assert "55 members" in first and "Page 1 of 2" in first
    second = staff.get("/members/?page=2").content.decode()
    assert second.count('data-testid="member-row"') == 5
    partial = staff.get(
        "/members/?page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="member-table"
    ).content.decode()
    assert partial.lstrip().startswith('<div id="member-table"') and "<html" not in partial
    assert partial.count('data-testid="member-row"') == 5


def test_a_tenant_admin_pages_only_through_their_own_members(client, alice, acme):
    _members(_tenants(2), 3)
    client.force_login(alice)
    page = client.get("/members/").content.decode()
    assert page.count('data-testid="member-row"') == 1 and "1 member" in page
    assert "t000-u0" not in page
