"""Central orchestration without the lab: tier defaults, the schedule with jitter, the
dispatcher's caps and missed-schedule detection, RPO alerts, scheduled drills."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from backups.models import BackupOperationKind, BackupPolicy
from backups.policies import jitter_offset, next_run_after, policy_defaults
from backups.services import (
    backups_dispatch,
    drills_dispatch,
    policy_for,
    rpo_check,
)
from notifications.models import NotificationEvent
from provisioning.models import Host, Operation
from tenants.models import AuditEvent
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def hosts(app_host):
    backup = backup_host()
    return with_backup_host(app_host, backup), backup


def _active_backups() -> list[Operation]:
    return list(
        Operation.objects.filter(
            kind=BackupOperationKind.BACKUP_CREATE, status__in=["pending", "running"]
        )
    )


@pytest.mark.parametrize(
    ("tier", "interval", "hourly"),
    [
        ("tier0", 30, 24),
        ("tier1", 30, 24),
        ("tier2", 240, 6),
        ("tier3", 1440, 0),
    ],
)
def test_a_tier_whose_rpo_is_under_a_day_gets_several_backups_a_day(tier, interval, hourly):
    defaults = policy_defaults(tier)
    assert defaults["interval_minutes"] == interval and defaults["keep_hourly"] == hourly
    assert (defaults["keep_daily"], defaults["keep_weekly"], defaults["keep_monthly"]) == (7, 4, 12)
    assert defaults["mode"] == "hot"


def test_slots_repeat_every_interval_from_the_window_at_a_stable_offset(acme, hosts):
    instance = make_instance(acme, "acme-jira", host=hosts[0], tier="tier2")
    policy = policy_for(instance)
    assert policy.interval_minutes == 240
    offset = jitter_offset(policy)
    assert timedelta(0) <= offset < timedelta(minutes=policy.jitter_minutes)
    assert jitter_offset(policy) == offset  # the same every time
    day = datetime(2025, 5, 5, tzinfo=UTC)
    first = next_run_after(policy, day)
    assert first == day + timedelta(hours=1) + offset
    assert next_run_after(policy, first) == first + timedelta(hours=4)
    policy.interval_minutes, policy.window_start = 1440, time(3, 30)
    assert next_run_after(policy, day + timedelta(hours=5)) == (
        day + timedelta(days=1, hours=3, minutes=30) + jitter_offset(policy)
    )


def test_the_dispatcher_starts_due_backups_and_moves_their_next_run(acme, hosts):
    instance = make_instance(acme, "acme-jira", host=hosts[0])
    policy = policy_for(instance)
    now = timezone.now()
    BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=now - timedelta(minutes=1))
    result = backups_dispatch(now)
    assert len(result["started"]) == 1 and result["missed"] == []
    op = Operation.objects.get(pk=result["started"][0])
    assert op.kind == BackupOperationKind.BACKUP_CREATE and op.instance == instance
    assert op.params["kind"] == "scheduled" and op.lock_key == f"instance:{instance.pk}"
    policy.refresh_from_db()
    assert policy.next_run_at > now and policy.last_dispatched_at == now
    assert backups_dispatch(now)["started"] == []  # claimed: nothing runs twice


def test_instances_on_one_app_host_are_backed_up_one_at_a_time(acme, hosts, settings):
    settings.PANEL_BACKUP_MAX_PER_APP_HOST = 1
    now = timezone.now()
    for name in ("acme-one", "acme-two"):
        policy = policy_for(make_instance(acme, name, host=hosts[0]))
        BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=now - timedelta(minutes=2))
    first = backups_dispatch(now)
    assert len(first["started"]) == 1 and len(_active_backups()) == 1
    assert backups_dispatch(now)["started"] == []  # still at the cap
    Operation.objects.filter(pk=first["started"][0]).update(status="succeeded", lock_key=None)
    assert len(backups_dispatch(now)["started"]) == 1


def test_a_backup_host_takes_at_most_its_cap_of_backups_at_once(acme, hosts, settings):
    settings.PANEL_BACKUP_MAX_PER_BACKUP_HOST = 2
    _, backup = hosts
    now = timezone.now()
    for i in range(3):
        app = Host.objects.create(
            name=f"app-{i}", role="app", address=f"10.0.0.{i}", status="ready", backup_host=backup
        )
        policy = policy_for(make_instance(acme, f"acme-{i}", host=app))
        BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=now - timedelta(minutes=1))
    result = backups_dispatch(now)
    assert len(result["started"]) == 2 and len(_active_backups()) == 2
    assert BackupPolicy.objects.filter(next_run_at__lte=now).count() == 1  # still due


def test_a_run_started_after_its_window_is_reported_missed_and_run_once(acme, hosts):
    instance = make_instance(acme, "acme-jira", host=hosts[0], tier="tier3")
    policy = policy_for(instance)  # daily: its window is 6 hours
    now = timezone.now()
    due = now - timedelta(hours=7)
    BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=due)
    result = backups_dispatch(now)
    assert result["missed"] == ["acme-jira"] and len(result["started"]) == 1
    policy.refresh_from_db()
    assert policy.missed_count == 1 and policy.last_missed_at == due
    event = AuditEvent.objects.get(action="backup.missed", target_id=str(instance.pk))
    assert event.changes["deadline"] == (due + timedelta(hours=6)).isoformat()
    assert event.changes["late_seconds"] == 3600
    notice = NotificationEvent.objects.get(event="backup.failed")
    assert "within its 6-hour window" in notice.body and "60 minutes after" in notice.body
    assert backups_dispatch(now)["started"] == []  # once: the next run is tomorrow's


def test_a_busy_instance_stays_due_with_its_deadline_and_starts_when_the_other_ends(acme, hosts):
    instance = make_instance(acme, "acme-jira", host=hosts[0])
    policy = policy_for(instance)
    now = timezone.now()
    due = now - timedelta(minutes=1)
    BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=due)
    upgrade = Operation.objects.create(
        kind="instance.upgrade",
        tenant=acme,
        instance=instance,
        status="running",
        lock_key=f"instance:{instance.pk}",
    )
    assert backups_dispatch(now)["started"] == []
    policy.refresh_from_db()
    assert policy.next_run_at == due  # not pushed back: it is judged against the same deadline
    Operation.objects.filter(pk=upgrade.pk).update(status="succeeded", lock_key=None)
    result = backups_dispatch(now + timedelta(minutes=5))
    assert len(result["started"]) == 1 and result["missed"] == []


def test_instances_without_a_backup_host_or_not_running_are_left_alone(acme, app_host):
    make_instance(acme, "acme-nohost", host=app_host)
    make_instance(acme, "acme-pending", host=app_host, status="pending")
    assert backups_dispatch()["started"] == []
    assert not BackupPolicy.objects.exists()


def test_an_rpo_breach_alerts_once_and_clears_when_a_backup_comes(acme, hosts):
    instance = make_instance(acme, "acme-jira", host=hosts[0], tier="tier2")
    make_point(instance, taken_at=timezone.now() - timedelta(hours=9))
    assert rpo_check()["breached"] == ["acme-jira"]
    assert rpo_check()["breached"] == []  # told once
    assert NotificationEvent.objects.filter(event="backup.rpo_breached").count() == 1
    assert AuditEvent.objects.filter(action="backup.rpo_breach").count() == 1
    assert BackupPolicy.objects.get(instance=instance).rpo_alerted_at is not None
    make_point(instance, taken_at=timezone.now() - timedelta(minutes=5))
    assert rpo_check()["recovered"] == ["acme-jira"]
    assert NotificationEvent.objects.get(event="backup.rpo_breached").resolved_at is not None


def test_a_drill_is_started_when_one_is_due_on_an_instance_with_a_point(acme, hosts, settings):
    settings.PANEL_BACKUP_DRILL_INTERVAL_HOURS = 24
    instance = make_instance(acme, "acme-jira", host=hosts[0])
    assert drills_dispatch() is None  # nothing to drill yet
    point = make_point(instance)
    op = Operation.objects.get(pk=drills_dispatch())
    assert op.kind == BackupOperationKind.BACKUP_DRILL and op.instance == instance
    assert op.params["backup"] == str(point.pk)
    assert drills_dispatch() is None  # one at a time
