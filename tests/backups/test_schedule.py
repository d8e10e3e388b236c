"""The dispatcher's plan without the lab: earliest deadline first within the caps, a free
slot given to the next instance on a free app host, a freed slot filled when a backup ends,
the *missed* rule (started after the policy's window), and a call whose reads do not grow
with the queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backups.models import BackupOperationKind, BackupPolicy
from backups.policies import run_deadline, run_missed, run_window
from backups.services import backup_ended_dispatch, backups_dispatch, policy_for
from panel.registry import registry
from provisioning.models import Host, Operation
from tests.backups.factories import backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def _app(backup: Host, name: str) -> Host:
    return Host.objects.create(
        name=name, role="app", address="10.0.0.1", status="ready", backup_host=backup
    )


def _due(instance, due: datetime, **fields) -> BackupPolicy:
    policy = policy_for(instance)
    BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=due, **fields)
    policy.refresh_from_db()
    return policy


def _started(result) -> list[str]:
    """The instances the dispatcher started, in the order it started them."""
    names = dict(
        Operation.objects.filter(pk__in=result["started"]).values_list("pk", "instance__name")
    )
    return [names[uuid.UUID(op)] for op in result["started"]]


def _end(name: str, *, status: str = "succeeded", at: datetime) -> Operation:
    op = Operation.objects.get(instance__name=name, kind=BackupOperationKind.BACKUP_CREATE)
    Operation.objects.filter(pk=op.pk).update(
        status=status, lock_key=None, started_at=at - timedelta(seconds=95), finished_at=at
    )
    op.refresh_from_db()
    return op


@pytest.fixture
def backup(db) -> Host:
    return backup_host()


@pytest.fixture
def caps(settings):
    def set_caps(backup_host: int, app_host: int = 1) -> None:
        settings.PANEL_BACKUP_MAX_PER_BACKUP_HOST = backup_host
        settings.PANEL_BACKUP_MAX_PER_APP_HOST = app_host

    return set_caps


def test_a_runs_window_is_its_interval_at_most_the_nightly_window(acme, backup, settings):
    settings.PANEL_BACKUP_WINDOW_MINUTES = 360
    instance = make_instance(acme, "acme-jira", host=_app(backup, "app-a"))
    policy = policy_for(instance)
    due = datetime(2026, 11, 2, 1, 20, tzinfo=UTC)
    for interval, window in ((1440, 360), (240, 240), (30, 30), (7 * 1440, 360)):
        policy.interval_minutes = interval
        assert run_window(policy) == timedelta(minutes=window)
        assert run_deadline(policy, due) == due + timedelta(minutes=window)
    policy.interval_minutes = 1440
    assert not run_missed(policy, due, due + timedelta(hours=6))  # waited, on time
    assert run_missed(policy, due, due + timedelta(hours=6, seconds=1))
    settings.PANEL_BACKUP_WINDOW_MINUTES = 120
    assert run_window(policy) == timedelta(hours=2)


def test_the_earliest_deadline_starts_first_not_the_earliest_due(acme, backup, caps):
    caps(backup_host=1)
    now = timezone.now()
    daily = make_instance(acme, "acme-daily", host=_app(backup, "app-a"), tier="tier3")
    frequent = make_instance(acme, "acme-frequent", host=_app(backup, "app-b"))
    _due(daily, now - timedelta(hours=2))  # deadline in 4 hours
    _due(frequent, now - timedelta(minutes=5), interval_minutes=30)  # deadline in 25 minutes
    assert _started(backups_dispatch(now)) == ["acme-frequent"]


def test_among_equal_windows_the_run_due_first_starts_first(acme, backup, caps):
    caps(backup_host=2)
    now = timezone.now()
    for i, minutes in enumerate((10, 50, 30)):
        instance = make_instance(acme, f"acme-{minutes}", host=_app(backup, f"app-{i}"))
        _due(instance, now - timedelta(minutes=minutes))
    assert _started(backups_dispatch(now)) == ["acme-50", "acme-30"]


def test_a_free_slot_goes_to_the_next_instance_on_a_free_app_host(acme, backup, caps):
    caps(backup_host=2, app_host=1)
    now = timezone.now()
    busy, free = _app(backup, "app-busy"), _app(backup, "app-free")
    for name, minutes in (("acme-first", 40), ("acme-second", 30)):
        _due(make_instance(acme, name, host=busy), now - timedelta(minutes=minutes))
    _due(make_instance(acme, "acme-elsewhere", host=free), now - timedelta(minutes=1))
    # acme-second is due before acme-elsewhere, but its app host is taken by acme-first.
    assert _started(backups_dispatch(now)) == ["acme-first", "acme-elsewhere"]
    assert BackupPolicy.objects.get(instance__name="acme-second").next_run_at <= now


def test_every_cap_holds_across_backup_hosts(acme, caps):
    caps(backup_host=2, app_host=1)
    now = timezone.now()
    for b in ("backup-a", "backup-b"):
        bh = backup_host(b)
        for i in range(3):
            app = _app(bh, f"{b}-app{i}")
            for j in range(2):
                _due(make_instance(acme, f"{b[-1]}-{i}-{j}", host=app), now - timedelta(hours=1))
    started = backups_dispatch(now)["started"]
    active = Operation.objects.filter(pk__in=started)
    assert len(started) == 4
    per_backup = {}
    per_app = {}
    for params in active.values_list("params", flat=True):
        per_backup[params["backup_host"]] = per_backup.get(params["backup_host"], 0) + 1
        per_app[params["app_host"]] = per_app.get(params["app_host"], 0) + 1
    assert sorted(per_backup.values()) == [2, 2] and set(per_app.values()) == {1}
    assert backups_dispatch(now)["started"] == []  # full: nothing more


def test_a_run_that_waited_within_its_window_is_not_missed(acme, backup, caps):
    caps(backup_host=1)
    now = timezone.now()
    instance = make_instance(acme, "acme-jira", host=_app(backup, "app-a"), tier="tier3")
    _due(instance, now - timedelta(hours=5, minutes=59))  # daily: a 6-hour window
    result = backups_dispatch(now)
    assert len(result["started"]) == 1 and result["missed"] == []
    assert BackupPolicy.objects.get(instance=instance).missed_count == 0


def test_a_frequent_run_that_waited_past_its_interval_is_missed(acme, backup, caps):
    caps(backup_host=1)
    now = timezone.now()
    instance = make_instance(acme, "acme-jira", host=_app(backup, "app-a"), tier="tier1")
    _due(instance, now - timedelta(minutes=31))  # tier 1: every 30 minutes
    assert backups_dispatch(now)["missed"] == ["acme-jira"]


def test_an_ended_backup_fills_its_slot_at_once_on_its_own_backup_host(acme, caps):
    caps(backup_host=1)
    now = timezone.now()
    one, other = backup_host("backup-a"), backup_host("backup-b")
    _due(make_instance(acme, "acme-a1", host=_app(one, "a1")), now - timedelta(minutes=3))
    _due(make_instance(acme, "acme-a2", host=_app(one, "a2")), now - timedelta(minutes=2))
    _due(make_instance(acme, "acme-b1", host=_app(other, "b1")), now - timedelta(minutes=1))
    assert sorted(_started(backups_dispatch(now))) == ["acme-a1", "acme-b1"]
    ended = _end("acme-a1", at=now + timedelta(seconds=95))
    result = backup_ended_dispatch(ended)
    assert _started(result) == ["acme-a2"]
    # It timed the slot for the capacity plan.
    assert BackupPolicy.objects.get(instance__name="acme-a1").last_run_seconds == 95
    a2 = Operation.objects.get(pk=result["started"][0])
    assert a2.created_at >= now  # started as of the end, not on the next minute


def test_a_failed_backup_frees_its_slot_too_but_is_not_timed(acme, backup, caps):
    caps(backup_host=1)
    now = timezone.now()
    app_a, app_b = _app(backup, "app-a"), _app(backup, "app-b")
    _due(make_instance(acme, "acme-one", host=app_a), now - timedelta(minutes=2))
    _due(make_instance(acme, "acme-two", host=app_b), now - timedelta(minutes=1))
    backups_dispatch(now)
    result = backup_ended_dispatch(_end("acme-one", status="failed", at=now))
    assert _started(result) == ["acme-two"]
    assert BackupPolicy.objects.get(instance__name="acme-one").last_run_seconds is None


def test_the_listener_is_registered_for_ended_operations_and_ignores_other_kinds(acme):
    assert backup_ended_dispatch in registry["operation_listeners"]["succeeded"]
    assert backup_ended_dispatch in registry["operation_listeners"]["failed"]
    other = Operation.objects.create(kind="instance.restart", tenant=acme, status="succeeded")
    assert backup_ended_dispatch(other) is None


def test_an_instance_without_a_policy_gets_one_on_beats_ten_minute_pass(acme, backup):
    instance = make_instance(acme, "acme-new", host=_app(backup, "app-a"))
    at = timezone.now().replace(minute=3)
    backups_dispatch(at)
    assert not BackupPolicy.objects.filter(instance=instance).exists()
    backup_ended_dispatch(
        Operation(kind=BackupOperationKind.BACKUP_CREATE, params={"backup_host": str(backup.pk)})
    )
    assert not BackupPolicy.objects.filter(instance=instance).exists()  # not after an end
    backups_dispatch(at.replace(minute=10))
    policy = BackupPolicy.objects.get(instance=instance)
    assert policy.next_run_at > at  # its first run is at its next slot


def _queue(acme, backup: Host, count: int, now: datetime, start: int = 0) -> None:
    for i in range(start, start + count):
        app = _app(backup, f"app-{i}")
        _due(make_instance(acme, f"acme-{i:03d}", host=app), now - timedelta(minutes=30 + i))


def _dispatch_queries(now: datetime) -> int:
    with CaptureQueriesContext(connection) as captured:
        backups_dispatch(now)
    return len(captured)


def test_a_call_reads_the_same_whatever_the_length_of_the_queue(acme, backup, caps):
    caps(backup_host=2)
    now = timezone.now()
    _queue(acme, backup, 4, now)
    backups_dispatch(now)  # fills both slots; the other two wait
    short = _dispatch_queries(now)
    _queue(acme, backup, 40, now, start=4)
    assert BackupPolicy.objects.filter(next_run_at__lte=now).count() == 42
    assert _dispatch_queries(now) == short
