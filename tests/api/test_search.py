"""``GET /api/search/?q=``: the staff search as JSON. Staff only (customers 403, anonymous
401), the same matches as the page, in a pinned number of queries."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from provisioning.models import License
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db

URL = "/api/search/"


@pytest.fixture
def placed(acme_jira, globex_wiki, app_host, acme_license):
    for instance in (acme_jira, globex_wiki):
        instance.host = app_host
        instance.save(update_fields=["host"])
    return acme_jira, globex_wiki


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_customers_are_refused_and_learn_nothing(request, api, placed, who):
    response = api(request.getfixturevalue(who)).get(URL, {"q": "acme"})
    assert response.status_code == 403
    assert "acme-jira" not in response.content.decode()


def test_a_customers_token_is_refused_and_anonymous_callers_must_log_in(
    api, alice, acme, make_token, placed
):
    assert api(token=make_token(alice, acme)).get(URL, {"q": "acme"}).status_code == 403
    assert api().get(URL, {"q": "acme"}).status_code == 401


def test_support_finds_an_instance_by_its_sen_across_tenants(api, sam, placed):
    acme_jira, _ = placed
    data = api(sam).get(URL, {"q": "sen-123"}).json()
    assert data["q"] == "sen-123" and data["truncated"] is False
    [hit] = data["instances"]
    assert hit["id"] == str(acme_jira.pk)
    assert hit["tenant_slug"] == "acme" and hit["host_name"] == "app-one"
    assert hit["matched"] == ["SEN"] and hit["sens"] == ["SEN-123"]
    assert data["tenants"] == [] and data["hosts"] == []


def test_a_staff_token_searches_too_but_hosts_are_for_platform_admins(
    api, sam, pat, make_token, placed
):
    support = api(token=make_token(sam, scope="read")).get(URL, {"q": "app-one"}).json()
    assert {hit["name"] for hit in support["instances"]} == {"acme-jira", "globex-wiki"}
    assert all(hit["matched"] == ["host"] for hit in support["instances"])
    assert support["hosts"] == []
    admin = api(pat).get(URL, {"q": "app-one"}).json()
    assert [host["name"] for host in admin["hosts"]] == ["app-one"]
    assert "address" not in admin["hosts"][0]


def test_tenants_are_found_with_their_counts(api, sam, placed):
    [tenant] = api(sam).get(URL, {"q": "globex"}).json()["tenants"]
    assert tenant["slug"] == "globex" and tenant["instance_count"] == 1


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": " a "}, {"q": "x" * 101}])
def test_a_missing_short_or_long_query_is_a_400_naming_q(api, sam, params):
    response = api(sam).get(URL, params)
    assert response.status_code == 400
    assert "q" in response.json()


def test_the_search_is_in_the_schema(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    operation = yaml.safe_load(target.read_text())["paths"]["/api/search/"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["q"]
    assert {"200", "400", "403"} <= set(operation["responses"])


# Session auth: session, user, groups, memberships (access), instances, their matching
# licenses, tenants with counts; platform admins: hosts.
PINNED = {"sam": 7, "pat": 8}


@pytest.mark.parametrize("who", sorted(PINNED))
def test_the_search_takes_a_pinned_number_of_queries_whatever_it_finds(
    request, api, acme, app_host, who
):
    client = api(request.getfixturevalue(who))

    def add(start: int, count: int) -> None:
        for i in range(start, start + count):
            instance = make_instance(acme, f"acme-q{i:02d}", host=app_host)
            License.objects.create(
                instance=instance, product="jira-software", key=f"k{i}", sen=f"SEN-acme-{i}"
            )

    for start, count in ((0, 3), (3, 22)):
        add(start, count)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(URL, {"q": "acme"}).status_code == 200
        assert len(ctx.captured_queries) == PINNED[who]
