"""List pages cost the same number of queries for 3 rows as for 25."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.support.factories import make_instance, make_operation, make_step

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
