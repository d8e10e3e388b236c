"""Every list endpoint answers in a number of SQL queries that does not grow with its rows.

Each endpoint is measured at 5 and at 25 rows: the counts must be equal, and at most the
pinned baseline (a change that adds a query per request must update the pin on purpose).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from backups.models import Backup
from notifications.models import NotificationPreference
from provisioning.models import License, Operation, OperationStep
from tenants.models import ApiToken, Membership, Tenant
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db

# Session auth: session, user, groups, memberships (access), count, page (+ prefetches).
PINNED = {
    "/api/instances/": 7,
    "/api/licenses/": 6,
    "/api/operations/": 6,
    "/api/memberships/": 6,
    "/api/tenants/": 6,
    "/api/tokens/": 6,
    "/api/me/": 5,
    # The count is summed from each instance's materialised backup state, not COUNT(*).
    "/api/backups/": 6,
    # ... + the page's preferences (one query, defaults for tenants without any)
    "/api/notification-settings/": 7,
}


def _instances(ctx: dict, start: int, n: int) -> None:
    for i in range(start, start + n):
        inst = make_instance(ctx["acme"], f"acme-i{i}", host=ctx["app_host"])
        License.objects.create(
            instance=inst,
            product="jira-software",
            key=f"key-{i}",
            expiry_date=timezone.now().date() + timedelta(days=i),
        )


def _licenses(ctx: dict, start: int, n: int) -> None:
    for i in range(start, start + n):
        License.objects.create(
            instance=ctx["acme_jira"], product="jira-software", key=f"key-{i}", sen=f"SEN-{i}"
        )


def _operations(ctx: dict, start: int, n: int) -> None:
    token = ApiToken.objects.filter(user=ctx["alice"]).first()
    for i in range(start, start + n):
        inst = make_instance(ctx["acme"], f"acme-o{i}")
        op = Operation.objects.create(
            kind="instance.create",
            tenant=ctx["acme"],
            instance=inst,
            host=ctx["app_host"],
            requested_by=ctx["alice"],
            requested_by_token=token,
            status="succeeded",
        )
        OperationStep.objects.create(operation=op, message="done")


def _backups(ctx: dict, start: int, n: int) -> None:
    for i in range(start, start + n):
        inst = make_instance(ctx["acme"], f"acme-b{i}", host=ctx["app_host"])
        make_point(inst)


def _memberships(ctx: dict, start: int, n: int) -> None:
    for i in range(start, start + n):
        user = User.objects.create_user(f"member{i}")
        Membership.objects.create(user=user, tenant=ctx["acme"], role="viewer")


def _tenants(ctx: dict, start: int, n: int) -> None:
    for i in range(start, start + n):
        tenant = Tenant.objects.create(
            name=f"T{i}", slug=f"tenant-{i}", contact_email="t@example.com"
        )
        Membership.objects.create(user=ctx["alice"], tenant=tenant, role="viewer")


def _tokens(ctx: dict, start: int, n: int) -> None:
    for i in range(start, start + n):
        secret, prefix, key_hash = ApiToken.generate()
        ApiToken.objects.create(
            user=ctx["alice"], tenant=ctx["acme"], name=f"t{i}", prefix=prefix, key_hash=key_hash
        )


def _me(ctx: dict, start: int, n: int) -> None:
    _tenants(ctx, 1000 + start, n)


def _notification_settings(ctx: dict, start: int, n: int) -> None:
    for i in range(start, start + n):
        tenant = Tenant.objects.create(
            name=f"N{i}", slug=f"notified-{i}", contact_email="n@example.com"
        )
        Membership.objects.create(user=ctx["alice"], tenant=tenant, role="admin")
        if i % 2:  # half chose their own settings, half keep the defaults
            NotificationPreference.objects.create(tenant=tenant, recipients="ops@example.com")


FILL: dict[str, Callable[[dict, int, int], None]] = {
    "/api/instances/": _instances,
    "/api/licenses/": _licenses,
    "/api/operations/": _operations,
    "/api/memberships/": _memberships,
    "/api/tenants/": _tenants,
    "/api/tokens/": _tokens,
    "/api/me/": _me,
    "/api/backups/": _backups,
    "/api/notification-settings/": _notification_settings,
}


@pytest.fixture
def ctx(alice, acme, acme_jira, app_host, make_token) -> dict:
    make_token(alice, acme)
    with_backup_host(app_host, backup_host())
    return {"alice": alice, "acme": acme, "acme_jira": acme_jira, "app_host": app_host}


def _count(client, url: str, django_assert_max_num_queries, expected_rows: int | None) -> int:
    with django_assert_max_num_queries(PINNED[url]) as captured:
        response = client.get(url)
    assert response.status_code == 200
    if expected_rows is not None:
        assert response.json()["count"] >= expected_rows
    return len(captured.captured_queries)


@pytest.mark.parametrize("url", list(PINNED))
def test_list_queries_do_not_grow_with_rows(api, ctx, url, django_assert_max_num_queries):
    client = api(ctx["alice"])
    rows = None if url == "/api/me/" else 5
    FILL[url](ctx, 0, 5)
    at_5 = _count(client, url, django_assert_max_num_queries, rows)
    FILL[url](ctx, 5, 20)
    at_25 = _count(client, url, django_assert_max_num_queries, rows and 25)
    assert at_5 == at_25


def test_staff_lists_do_not_grow_with_tenants(api, sam, ctx, django_assert_max_num_queries):
    client = api(sam)
    counts = []
    for start, n in ((0, 5), (5, 20)):
        _instances(ctx, start, n)
        _operations(ctx, start, n)
        _backups(ctx, start, n)
        with django_assert_max_num_queries(PINNED["/api/instances/"]) as captured:
            assert client.get("/api/instances/").status_code == 200
        with django_assert_max_num_queries(PINNED["/api/operations/"]) as captured_ops:
            assert client.get("/api/operations/").status_code == 200
        with django_assert_max_num_queries(PINNED["/api/backups/"]) as captured_backups:
            backups = client.get("/api/backups/").json()
        assert backups["count"] == Backup.objects.count()
        counts.append(
            (
                len(captured.captured_queries),
                len(captured_ops.captured_queries),
                len(captured_backups.captured_queries),
            )
        )
    assert counts[0] == counts[1]


def test_token_requests_do_not_grow_with_rows(api, ctx, make_token, django_assert_max_num_queries):
    client = api(token=make_token(ctx["alice"], ctx["acme"]))
    client.get("/api/me/")  # the first use records last_used_at (at most once a minute)
    counts = []
    for start, n in ((0, 5), (5, 20)):
        _instances(ctx, start, n)
        with django_assert_max_num_queries(PINNED["/api/instances/"]) as captured:
            assert client.get("/api/instances/").status_code == 200
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]
