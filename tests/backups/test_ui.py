"""Backup pages for each role: customers see their points, chart, RPO state and can ask for a
restore (no restore button); support restores with the instance's name typed; staff pages are
404 for customers; another tenant gets 404 everywhere."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backups.models import BackupPolicy, RestoreRequest
from backups.services import policy_for
from provisioning.models import AtlassianInstance, Host, Operation
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def jira(acme_jira, app_host):
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    return acme_jira


@pytest.fixture
def points(jira):
    now = timezone.now()
    return [
        make_point(
            jira,
            taken_at=now - timedelta(days=d, hours=1),
            label=f"daily.{d}",
            logical_bytes=1000 + 10 * d,
            disk_bytes=100 + d,
        )
        for d in range(3)
    ]


# (route name, method, takes the instance) -> who gets what
INSTANCE_ROUTES = [
    ("backups:instance_backups", "get"),
    ("backups:backup_start", "post"),
    ("backups:restore_request", "post"),
    ("backups:restore", "get"),
    ("backups:restore", "post"),
    ("backups:policy", "get"),
    ("backups:policy", "post"),
]
STAFF_ROUTES = [
    ("backups:dr_dashboard", "get"),
    ("backups:drill_start", "post"),
    ("backups:restore_requests", "get"),
]


def _snapshot() -> tuple:
    return (
        Operation.objects.count(),
        RestoreRequest.objects.count(),
        list(BackupPolicy.objects.values_list("keep_daily", flat=True)),
    )


@pytest.mark.parametrize(("name", "method"), INSTANCE_ROUTES)
def test_another_tenant_gets_404_on_every_backup_page_and_changes_nothing(
    browser, charlie, points, name, method
):
    before = _snapshot()
    url = reverse(name, args=[points[0].instance_id])
    response = getattr(browser(charlie), method)(url, {"keep_daily": 1, "confirm_name": "x"})
    assert response.status_code == 404
    assert b"acme" not in response.content.lower()
    assert _snapshot() == before


@pytest.mark.parametrize(("name", "method"), INSTANCE_ROUTES + STAFF_ROUTES)
def test_anonymous_visitors_are_sent_to_login(browser, points, name, method):
    args = [points[0].instance_id] if (name, method) in INSTANCE_ROUTES else []
    response = getattr(browser(None), method)(reverse(name, args=args))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize(("name", "method"), STAFF_ROUTES)
def test_staff_pages_are_404_for_customers(browser, alice, charlie, points, name, method):
    for user in (alice, charlie):
        assert getattr(browser(user), method)(reverse(name)).status_code == 404


def test_a_viewer_reads_backups_and_the_policy_but_changes_nothing(browser, bob, points):
    client = browser(bob)
    instance = points[0].instance
    before = _snapshot()
    page = client.get(reverse("backups:instance_backups", args=[instance.pk]))
    assert page.status_code == 200 and b'data-testid="points-table"' in page.content
    assert b'id="backup-start"' not in page.content and b'id="restore-request"' not in page.content
    assert client.get(reverse("backups:policy", args=[instance.pk])).status_code == 200
    for name in ("backups:backup_start", "backups:restore_request", "backups:policy"):
        assert client.post(reverse(name, args=[instance.pk]), {}).status_code == 403
    assert client.get(reverse("backups:restore", args=[instance.pk])).status_code == 404
    assert _snapshot() == before


def test_a_tenant_admin_sees_points_sizes_chart_and_may_ask_for_a_restore_not_do_one(
    browser, alice, points
):
    instance = points[0].instance
    page = browser(alice).get(reverse("backups:instance_backups", args=[instance.pk]))
    html = page.content.decode()
    assert html.count('data-testid="point-row"') >= 3
    assert "daily.2" in html and "1000\xa0bytes" in html
    assert 'data-testid="size-chart"' in html and "<polyline" in html
    assert 'id="backup-start"' in html and 'id="restore-request"' in html
    assert 'id="restore-start"' not in html and "Restore…" not in html
    response = browser(alice).post(
        reverse("backups:restore_request", args=[instance.pk]),
        {"backup": str(points[1].pk), "note": "Yesterday please"},
    )
    assert response.status_code == 302
    request = RestoreRequest.objects.get()
    assert request.backup == points[1] and request.requested_by == alice
    assert request.status == "open"


def test_a_tenant_admin_starts_an_extra_backup_and_follows_it(browser, alice, points):
    instance = points[0].instance
    response = browser(alice).post(
        reverse("backups:backup_start", args=[instance.pk]), {"mode": "", "idempotency_key": "ui-1"}
    )
    op = Operation.objects.get()
    assert response["Location"] == reverse("provisioning:operation_detail", args=[op.pk])
    assert op.kind == "backup.create" and op.params["kind"] == "manual"


def test_support_restores_in_place_only_after_typing_the_instance_name(browser, sam, points):
    instance = points[0].instance
    url = reverse("backups:restore", args=[instance.pk])
    client = browser(sam)
    form = client.get(url + f"?point={points[1].pk}")
    assert form.status_code == 200 and b'id="restore-form"' in form.content
    wrong = client.post(
        url,
        {
            "backup": str(points[1].pk),
            "mode": "in_place",
            "confirm_name": "acme",
            "idempotency_key": "ui-r1",
        },
    )
    assert wrong.status_code == 200 and b"Type acme-jira to confirm" in wrong.content
    assert not Operation.objects.exists()
    right = client.post(
        url,
        {
            "backup": str(points[1].pk),
            "mode": "in_place",
            "confirm_name": "acme-jira",
            "idempotency_key": "ui-r2",
        },
    )
    op = Operation.objects.get()
    assert right["Location"] == reverse("provisioning:operation_detail", args=[op.pk])
    assert op.kind == "backup.restore" and op.params["backup"] == str(points[1].pk)


def test_support_changes_a_policy_and_customers_cannot(browser, sam, alice, jira):
    policy = policy_for(jira)
    url = reverse("backups:policy", args=[jira.pk])
    page = browser(alice).get(url).content.decode()
    assert 'data-testid="policy-read-only"' in page and 'id="policy-submit"' not in page
    data = {
        "enabled": "on",
        "interval_minutes": 60,
        "window_start": "02:00",
        "jitter_minutes": 10,
        "mode": "cold",
        "keep_hourly": 12,
        "keep_daily": 10,
        "keep_weekly": 4,
        "keep_monthly": 6,
        "backup_host": "",
    }
    assert browser(alice).post(url, data).status_code == 403
    response = browser(sam).post(url, data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    policy.refresh_from_db()
    assert (policy.interval_minutes, policy.mode, policy.keep_daily) == (60, "cold", 10)


def test_the_instance_page_shows_objectives_and_a_visible_alert_when_the_rpo_is_missed(
    browser, alice, jira
):
    make_point(jira, taken_at=timezone.now() - timedelta(hours=30))  # tier2: RPO 8 h
    page = browser(alice).get(reverse("provisioning:instance_detail", args=[jira.pk]))
    html = page.content.decode()
    assert 'data-testid="instance-backups"' in html
    assert 'data-testid="rpo-breach"' in html and "Outside RPO" in html
    assert "RPO 8 h, RTO 24 h" in html
    make_point(jira, taken_at=timezone.now() - timedelta(minutes=20))
    html = (
        browser(alice).get(reverse("provisioning:instance_detail", args=[jira.pk])).content.decode()
    )
    assert 'data-testid="rpo-breach"' not in html and "Within RPO" in html


def test_the_dashboard_counts_instances_within_their_rpo_in_constant_queries(
    browser, alice, acme, jira, app_host
):
    make_point(jira, taken_at=timezone.now() - timedelta(minutes=20))
    client = browser(alice)
    url = reverse("dashboard")
    html = client.get(url).content.decode()
    assert 'data-testid="rpo-summary"' in html and "<strong>1</strong> of 1 instance" in html
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for i in range(5):
        old = make_instance(acme, f"acme-old{i}", host=app_host)
        make_point(old, taken_at=timezone.now() - timedelta(days=3))
    with CaptureQueriesContext(connection) as many:
        html = client.get(url).content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)
    assert "<strong>1</strong> of 6 instances" in html and 'data-testid="rpo-breaches"' in html


def test_a_new_instance_without_a_backup_is_not_counted_within_its_rpo(
    browser, alice, acme, jira, app_host
):
    make_point(jira, taken_at=timezone.now() - timedelta(minutes=20))
    make_instance(acme, "acme-new", host=app_host)  # made now: no backup, not yet in breach
    html = browser(alice).get(reverse("dashboard")).content.decode()
    assert "<strong>1</strong> of 2 instances within" in html
    assert 'data-testid="rpo-no-backup">1 new instance with no backup yet' in html
    assert 'data-testid="rpo-breaches"' not in html


def test_support_sees_the_dr_dashboard_and_the_restore_requests(browser, sam, alice, points):
    browser(alice).post(
        reverse("backups:restore_request", args=[points[0].instance_id]), {"note": "please"}
    )
    client = browser(sam)
    dr = client.get(reverse("backups:dr_dashboard")).content.decode()
    assert dr.count('data-testid="dr-tier"') == 4 and "1 of 1" in dr
    listing = client.get(reverse("backups:restore_requests")).content.decode()
    assert "please" in listing and 'data-status="open"' in listing
    request = RestoreRequest.objects.get()
    client.post(
        reverse("backups:restore_request_handle", args=[request.pk]),
        {"status": "done", "response": "done"},
    )
    request.refresh_from_db()
    assert request.status == "done" and request.handled_by == sam


def _app_host(name: str, backup, *, memory_mb: int = 16384, **fields) -> Host:
    return Host.objects.create(
        name=name,
        role=Host.Role.APP,
        address=f"127.0.2.{Host.objects.count() + 1}",
        status=fields.pop("status", Host.Status.READY),
        backup_host=backup,
        memory_mb=memory_mb,
        cpu_count=4,
        disk_total_bytes=200 * 1024**3,
        disk_free_bytes=150 * 1024**3,
        **fields,
    )


def _choices(content: bytes) -> list[str]:
    select = re.search(rb'<select name="host".*?</select>', content, re.S)
    assert select is not None, content
    return [m.decode() for m in re.findall(rb"<option[^>]*>([^<]*)</option>", select.group(0))]


def test_support_sees_ready_hosts_with_capacity_by_name(browser, sam, points):
    instance = points[0].instance
    backup = points[0].backup_host
    _app_host("app-two", backup, memory_mb=32768)
    _app_host("app-full", backup, memory_mb=1024)
    _app_host("app-elsewhere", backup_host("backup-two"))
    _app_host("app-new", backup, status=Host.Status.ENROLLED)
    url = reverse("backups:restore", args=[instance.pk])
    client = browser(sam)  # support staff: no platform-admin role
    choices = _choices(client.get(url).content)
    assert choices[0] == "The source&#x27;s host (if it has room)"
    names = [c.split(" ")[0] for c in choices[1:]]
    assert names == ["app-one", "app-two"], choices  # by name; no full, foreign or new host
    assert re.fullmatch(r"app-two \(\d+ MB memory, 150 GB disk free\)", choices[2]), choices
    form = {
        "backup": str(points[0].pk),
        "mode": "new_instance",
        "name": "acme-copy",
        "hostname": "acme-copy.acme.example",
    }
    full = Host.objects.get(name="app-full")
    refused = client.post(url, {**form, "host": str(full.pk), "idempotency_key": "ui-h1"})
    assert refused.status_code == 200 and b"Choose one of the listed app hosts" in refused.content
    assert not Operation.objects.exists()
    two = Host.objects.get(name="app-two")
    started = client.post(url, {**form, "host": str(two.pk), "idempotency_key": "ui-h2"})
    op = Operation.objects.get()
    assert started["Location"] == reverse("provisioning:operation_detail", args=[op.pk])
    assert op.params["host"] == "app-two"
    assert AtlassianInstance.objects.get(name="acme-copy").host_id == two.pk


def test_a_copy_onto_the_source_host_without_room_is_a_form_error(browser, sam, points):
    instance = points[0].instance
    # The source's own host is too small for a second instance of its size.
    Host.objects.filter(pk=instance.host_id).update(memory_mb=6000)
    url = reverse("backups:restore", args=[instance.pk])
    response = browser(sam).post(
        url,
        {
            "backup": str(points[0].pk),
            "mode": "new_instance",
            "name": "acme-copy",
            "hostname": "acme-copy.acme.example",
            "host": "",
            "idempotency_key": "ui-h3",
        },
    )
    assert response.status_code == 200
    assert b'data-testid="error-host"' in response.content
    assert b"Choose an app host with room for the copy." in response.content
    assert b'data-testid="no-target-hosts"' in response.content
    assert not Operation.objects.exists()
    assert not AtlassianInstance.objects.filter(name="acme-copy").exists()


def test_buttons_that_cannot_work_are_disabled_with_the_reason(browser, alice, sam, acme_jira):
    # on no host, hence no backup host; no point yet
    url = reverse("backups:instance_backups", args=[acme_jira.pk])
    html = browser(alice).get(url).content.decode()
    assert 'id="backup-start" disabled' in html
    assert 'data-testid="backup-blocked">acme-jira has no backup host' in html
    staff = browser(sam).get(url).content.decode()
    assert 'id="restore-start" disabled' in staff and "No point to restore yet." in staff


def test_a_backup_that_can_run_has_its_button_enabled(browser, alice, sam, points):
    url = reverse("backups:instance_backups", args=[points[0].instance_id])
    html = browser(alice).get(url).content.decode()
    assert '<button type="submit" id="backup-start">' in html and "backup-blocked" not in html
    assert 'href="/instances/' in browser(sam).get(url).content.decode()
