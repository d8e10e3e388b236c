"""Staff search across tenants: one box in the header for support staff and platform admins,
and a results page that finds instances by name, hostname, tenant, SEN or host. Customers
never reach it (404, like every staff page)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from provisioning.models import License
from provisioning.search.selectors import SEARCH_LIMIT, staff_search
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db

SEARCH = reverse("search:staff_search")


@pytest.fixture
def placed(acme_jira, globex_wiki, app_host, acme_license):
    """Acme's Jira (license SEN-123) and Globex's wiki on app host app-one."""
    for instance in (acme_jira, globex_wiki):
        instance.host = app_host
        instance.save(update_fields=["host"])
    return acme_jira, globex_wiki


def _found(client, q: str) -> str:
    response = client.get(SEARCH, {"q": q})
    assert response.status_code == 200
    return response.content.decode()


def _rows(html: str, kind: str = "instance") -> set[str]:
    marker = f'data-testid="search-{kind}" data-{kind}="'
    return {part.split('"', 1)[0] for part in html.split(marker)[1:]}


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_customers_are_not_found_at_the_search_and_have_no_search_box(request, browser, who):
    client = browser(request.getfixturevalue(who))
    response = client.get(SEARCH, {"q": "acme"})
    assert response.status_code == 404
    assert b"acme-jira" not in response.content
    assert b'id="staff-search"' not in client.get(reverse("dashboard")).content


def test_staff_have_the_search_box_in_the_header(browser, sam):
    html = browser(sam).get(reverse("dashboard")).content.decode()
    assert 'id="staff-search"' in html
    assert f'action="{SEARCH}"' in html


@pytest.mark.parametrize(
    ("q", "expected", "matched"),
    [
        ("acme-jira", {"acme-jira"}, "name"),
        ("GLOBEX-WIKI.example", {"globex-wiki"}, "hostname"),
        ("Globex", {"globex-wiki"}, "tenant"),  # the tenant's name
        ("acm", {"acme-jira"}, "tenant"),  # its slug (and the name, hostname)
        ("sen-123", {"acme-jira"}, "SEN"),
        ("app-one", {"acme-jira", "globex-wiki"}, "host"),
    ],
)
def test_support_finds_instances_of_any_tenant_by_each_field(
    browser, sam, placed, q, expected, matched
):
    html = _found(browser(sam), q)
    assert _rows(html) == expected
    assert matched in html.split('data-testid="search-matched">')[1].split("</td>")[0]


def test_a_sen_match_names_the_sen_and_an_exact_one_comes_first(browser, sam, placed, acme):
    other = make_instance(acme, "acme-wiki", product="confluence", version="8.5.0")
    License.objects.create(instance=other, product="confluence", key="k", sen="SEN-1234")
    html = _found(browser(sam), "SEN-1234")
    assert _rows(html) == {"acme-wiki"}
    assert "SEN-1234" in html
    html = _found(browser(sam), "SEN-123")
    assert html.index('data-instance="acme-jira"') < html.index('data-instance="acme-wiki"')


def test_tenants_are_found_by_name_or_slug_with_their_counts(browser, sam, placed):
    html = _found(browser(sam), "glob")
    assert _rows(html, "tenant") == {"globex"}


def test_hosts_are_listed_for_platform_admins_only(browser, sam, pat, placed, app_host):
    admin = _found(browser(pat), "app-one")
    assert _rows(admin, "host") == {"app-one"}
    assert reverse("hosts:detail", args=[app_host.pk]) in admin
    support = _found(browser(sam), "app-one")
    assert _rows(support, "host") == set()
    assert _rows(support) == {"acme-jira", "globex-wiki"}  # by their host's name


def test_deleted_instances_are_not_found(browser, sam, acme):
    make_instance(acme, "acme-gone", status="deleted")
    assert _rows(_found(browser(sam), "acme-gone")) == set()


def test_the_page_says_what_is_missing_or_too_short(browser, sam, placed):
    client = browser(sam)
    assert "What are you looking for?" in _found(client, "")
    assert "Type at least 2 characters" in _found(client, "a")
    assert "Nothing matches" in _found(client, "no-such-thing")


def test_results_stop_at_the_limit_and_say_so(sam, acme, access_of):
    for i in range(4):
        make_instance(acme, f"acme-many{i}")
    result = staff_search(access_of(sam), "acme-many", limit=3)
    assert [hit.instance.name for hit in result.instances] == [
        "acme-many0",
        "acme-many1",
        "acme-many2",
    ]
    assert result.truncated
    assert not staff_search(access_of(sam), "acme-many").truncated
    assert SEARCH_LIMIT >= 10


# Pinned: session, user, groups and memberships (the caller's access), instances (tenant and
# host joined), their matching licenses, tenants with their counts; platform admins: hosts.
SEARCH_PAGE_QUERIES = {"sam": 7, "pat": 8}


def _queries(client, q: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(SEARCH, {"q": q}).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("who", sorted(SEARCH_PAGE_QUERIES))
def test_the_search_takes_a_pinned_number_of_queries_whatever_it_finds(
    request, browser, acme, app_host, who
):
    client = browser(request.getfixturevalue(who))
    client.get(SEARCH)  # the session's first read is not part of the page

    def add(start: int, count: int) -> None:
        for i in range(start, start + count):
            instance = make_instance(acme, f"acme-q{i:02d}", host=app_host)
            License.objects.create(
                instance=instance, product="jira-software", key=f"k{i}", sen=f"SEN-acme-{i}"
            )

    add(0, 3)
    assert _queries(client, "acme") == SEARCH_PAGE_QUERIES[who]
    add(3, 22)
    assert _queries(client, "acme") == SEARCH_PAGE_QUERIES[who]
