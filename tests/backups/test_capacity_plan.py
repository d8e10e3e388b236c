"""The DR dashboard's capacity plan: per backup host, one night's scheduled backups (each
timed by its last run) against its slots and the window, and a warning an operator can act
on when a host's night cannot fit."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backups.models import BackupPolicy
from backups.selectors import backup_capacity_plan
from backups.services import policy_for
from panel.access import access_for_user
from provisioning.models import Host
from tests.backups.factories import backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def _app(backup: Host, name: str) -> Host:
    return Host.objects.create(
        name=name, role="app", address="10.0.0.1", status="ready", backup_host=backup
    )


def _timed(acme, name: str, app: Host, seconds: float | None, **fields) -> BackupPolicy:
    policy = policy_for(make_instance(acme, name, host=app, tier=fields.pop("tier", "tier3")))
    BackupPolicy.objects.filter(pk=policy.pk).update(last_run_seconds=seconds, **fields)
    return policy


def _night(sam, name: str):
    plan = backup_capacity_plan(access_for_user(sam))
    return next(h for h in plan["hosts"] if h.name == name)


@pytest.fixture
def caps(settings):
    settings.PANEL_BACKUP_MAX_PER_BACKUP_HOST = 2
    settings.PANEL_BACKUP_MAX_PER_APP_HOST = 1
    settings.PANEL_BACKUP_WINDOW_MINUTES = 360
    return settings


def test_a_hosts_night_is_its_work_over_its_slots_plus_the_longest_runs_tail(sam, acme, caps):
    backup = backup_host("backup-a")
    apps = [_app(backup, "app-1"), _app(backup, "app-2")]
    for i in range(4):
        _timed(acme, f"acme-{i}", apps[i % 2], 600)
    night = _night(sam, "backup-a")
    assert (night.instances, night.runs, night.work_seconds) == (4, 4, 2400)
    # 2,400 s over 2 slots, and the longest run can leave one slot idle for half of it
    assert night.makespan_seconds == 1200 + 300
    assert night.busiest_app_seconds == 1200 and night.fits
    assert round(night.use_percent, 1) == round(100 * 2400 / (2 * 6 * 3600), 1)


def test_a_frequent_policy_counts_every_run_that_falls_into_the_window(sam, acme, caps):
    backup = backup_host("backup-a")
    _timed(acme, "acme-often", _app(backup, "app-1"), 60, tier="tier1")  # every 30 minutes
    night = _night(sam, "backup-a")
    assert night.runs == 12 and night.work_seconds == 12 * 60


def test_an_instance_never_timed_counts_at_its_hosts_mean(sam, acme, caps):
    backup = backup_host("backup-a")
    app = _app(backup, "app-1")
    _timed(acme, "acme-a", app, 100)
    _timed(acme, "acme-b", app, 300)
    _timed(acme, "acme-new", _app(backup, "app-2"), None)
    night = _night(sam, "backup-a")
    assert night.untimed == 1 and night.work_seconds == 100 + 300 + 200


def test_a_host_whose_night_cannot_fit_is_warned_with_the_cap_or_the_work_to_move(
    browser, sam, acme, caps
):
    caps.PANEL_BACKUP_WINDOW_MINUTES = 30
    full, roomy = backup_host("backup-full"), backup_host("backup-roomy")
    for i in range(8):
        _timed(acme, f"acme-full{i}", _app(full, f"full-{i}"), 600)
    _timed(acme, "acme-roomy", _app(roomy, "roomy-1"), 600)
    night = _night(sam, "backup-full")
    # 4,800 s over 2 slots + 300 s of tail = 2,700 s for a 1,800 s window
    assert night.makespan_seconds == 2700 and not night.fits
    assert night.cap_that_fits == 4  # 1,200 + 450 s
    assert night.excess_seconds == 4800 - 2 * (1800 - 300)
    assert _night(sam, "backup-roomy").fits
    html = browser(sam).get(reverse("backups:dr_dashboard")).content.decode()
    assert html.count('data-testid="dr-capacity-warning"') == 1
    warning = html.split('data-testid="dr-capacity-warning"')[1].split("</li>")[0]
    assert 'data-host="backup-full"' in warning and "predicted to take 45 min" in warning
    assert "4 at a time per backup host would fit" in warning and "30 min" in warning
    assert 'data-host="backup-roomy" data-fits="true"' in html
    assert 'data-host="backup-full" data-fits="false"' in html


def test_an_app_host_that_alone_cannot_fit_is_named_instead_of_a_cap(sam, browser, acme, caps):
    caps.PANEL_BACKUP_WINDOW_MINUTES = 30
    backup = backup_host("backup-a")
    crowded = _app(backup, "app-crowded")
    for i in range(4):
        _timed(acme, f"acme-{i}", crowded, 600)
    night = _night(sam, "backup-a")
    assert night.app_host_bound and night.cap_that_fits is None
    assert night.makespan_seconds == 2400  # one at a time on that app host
    html = browser(sam).get(reverse("backups:dr_dashboard")).content.decode()
    assert "App host app-crowded alone needs 40 min at 1 at a time" in html


def test_disabled_policies_and_instances_not_backed_up_are_left_out(sam, acme, caps):
    backup = backup_host("backup-a")
    app = _app(backup, "app-1")
    _timed(acme, "acme-on", app, 60)
    _timed(acme, "acme-off", app, 60, enabled=False)
    policy_for(make_instance(acme, "acme-failed", host=app, status="failed"))
    night = _night(sam, "backup-a")
    assert night.instances == 1 and night.work_seconds == 60


def test_the_plan_reads_the_same_whatever_the_number_of_hosts(sam, acme, caps):
    access = access_for_user(sam)
    backup = backup_host("backup-0")
    _timed(acme, "acme-0", _app(backup, "app-0"), 60)
    with CaptureQueriesContext(connection) as few:
        backup_capacity_plan(access)
    for b in range(1, 5):
        backup = backup_host(f"backup-{b}")
        for a in range(3):
            _timed(acme, f"acme-{b}-{a}", _app(backup, f"app-{b}-{a}"), 60)
    with CaptureQueriesContext(connection) as many:
        plan = backup_capacity_plan(access)
    assert len(plan["hosts"]) == 5 and len(many) == len(few) == 2


def test_the_dashboard_keeps_its_plan_but_shows_an_edited_policy_or_a_new_host_at_once(
    browser, sam, acme, caps
):
    client = browser(sam)
    url = reverse("backups:dr_dashboard")
    backup = backup_host("backup-a")
    policy = _timed(acme, "acme-a", _app(backup, "app-1"), 600)

    def row(name: str) -> str:
        html = client.get(url).content.decode()
        return html.split(f'data-testid="dr-capacity-host" data-host="{name}"')[1].split("</tr>")[0]

    assert "10 min" in row("backup-a")
    # A backup's new duration waits for the plan's next computation ...
    BackupPolicy.objects.filter(pk=policy.pk).update(last_run_seconds=1200)
    assert "10 min" in row("backup-a")
    # ... an edited policy or a new backup host does not.
    policy.refresh_from_db()
    policy.interval_minutes = 60
    policy.save()
    edited = row("backup-a")
    assert "<td>6</td>" in edited and "app-1 (2 h)" in edited  # six runs of 20 minutes
    backup_host("backup-b")
    assert "backup-b" in client.get(url).content.decode()
