"""Backup policies: an instance's policy (made from its service tier's and product's defaults
the first time it is needed), its retention rule, when the next scheduled backup is due, and
the window it must start in (its deadline: the dispatcher's order and the *missed* rule)."""

from __future__ import annotations

import math
import zlib
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Func, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from backups.models import BackupMode, BackupPolicy
from backups.retention import Retention
from provisioning.models import AtlassianInstance
from tenants.tiers import objectives_for

DAY_MINUTES = 24 * 60
# Slots are counted from this fixed instant, so an interval that divides a day lands on the
# same times every day.
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)

# Products whose home and database must come from the same moment, which a hot backup (dump
# first, home copy after) cannot give. Bitbucket: "consistent snapshots" of home and database
# (https://confluence.atlassian.com/display/BITBUCKETSERVER091/Data+recovery+and+backups); its
# DIY Backup exists to get them by locking the product
# (https://confluence.atlassian.com/bitbucketserver091/bitbucket-diy-backup-1443039252.html), and
# the Backup Client "is currently not supported in the Docker setup"
# (https://atlassian.github.io/data-center-helm-charts/containers/BITBUCKET/, "Backup"). Until
# the panel holds the sysadmin credential the lock needs, they are backed up cold by default.
COLD_BY_DEFAULT = frozenset({"bitbucket"})


def default_mode(product: str | None) -> str:
    """The backup mode a new policy of ``product`` gets (None: a product not known yet)."""
    return BackupMode.COLD if product in COLD_BY_DEFAULT else BackupMode.HOT


def policy_defaults(tier: str, product: str | None = None) -> dict[str, Any]:
    """A policy that meets ``tier``'s RPO: one backup a day when the RPO is a day or longer,
    otherwise one every half RPO (so the newest point is never older than the RPO even when
    one run fails), keeping the intra-day points of the last 24 hours; cold for a product
    whose home and database must be copied at one moment (:data:`COLD_BY_DEFAULT`), hot
    otherwise. Callers with an instance pass its product.

    Existing policies keep their mode: changing it would change a customer's downtime
    without anyone deciding it."""
    rpo_minutes = int(objectives_for(tier).rpo.total_seconds() // 60)
    if rpo_minutes >= DAY_MINUTES:
        interval = DAY_MINUTES
    else:
        interval = max(15, rpo_minutes // 2)
    keep_hourly = (
        0 if interval >= DAY_MINUTES else min(24, math.ceil(DAY_MINUTES / max(interval, 60)))
    )
    return {
        "interval_minutes": interval,
        "window_start": time(1, 0),
        "jitter_minutes": min(60, interval // 4),
        "keep_hourly": keep_hourly,
        "keep_daily": 7,
        "keep_weekly": 4,
        "keep_monthly": 12,
        "mode": default_mode(product),
    }


def policy_for(instance: AtlassianInstance) -> BackupPolicy:
    """The instance's policy, made from its tier's and product's defaults the first time it is
    needed."""
    policy = BackupPolicy.objects.filter(instance=instance).first()
    if policy is not None:
        return policy
    policy = BackupPolicy(instance=instance, **policy_defaults(instance.tier, instance.product))
    policy.next_run_at = next_run_after(policy, timezone.now())
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError:  # made concurrently
        return BackupPolicy.objects.get(instance=instance)
    return policy


def policy_retention(policy: BackupPolicy) -> Retention:
    """The retention rule of ``policy`` (its ``keep_*`` fields)."""
    return Retention(
        hourly=policy.keep_hourly,
        daily=policy.keep_daily,
        weekly=policy.keep_weekly,
        monthly=policy.keep_monthly,
    )


def jitter_offset(policy: BackupPolicy) -> timedelta:
    """A stable per-instance offset within the jitter window (the same every day, so the
    instances of one host spread out instead of all starting at the window's first minute)."""
    window = max(0, int(policy.jitter_minutes)) * 60
    if window == 0:
        return timedelta(0)
    seed = zlib.crc32(str(policy.instance_id).encode())
    return timedelta(seconds=seed % window)


def next_run_after(policy: BackupPolicy, after: datetime) -> datetime:
    """The first scheduled slot strictly after ``after``."""
    interval = timedelta(minutes=max(15, policy.interval_minutes))
    start = policy.window_start
    base = _EPOCH + timedelta(hours=start.hour, minutes=start.minute) + jitter_offset(policy)
    steps = math.floor((after - base) / interval) + 1
    return base + steps * interval


def window_minutes() -> int:
    """The nightly window (``PANEL_BACKUP_WINDOW_MINUTES``), between 15 minutes and a day."""
    return min(DAY_MINUTES, max(15, settings.PANEL_BACKUP_WINDOW_MINUTES))


def run_window(policy: BackupPolicy) -> timedelta:
    """How long after it is due a scheduled run may start and still be on time: the policy's
    interval (a run never runs into the next one's slot), at most the nightly window
    (:func:`window_minutes`, 6 h by default)."""
    return window_of(policy.interval_minutes)


def window_of(interval_minutes: int) -> timedelta:
    """:func:`run_window` of a policy with this interval."""
    return timedelta(minutes=min(max(15, interval_minutes), window_minutes()))


def run_deadline(policy: BackupPolicy, due: datetime) -> datetime:
    """The latest on-time start of the run of ``policy`` due at ``due``."""
    return due + run_window(policy)


def run_missed(policy: BackupPolicy, due: datetime, started: datetime) -> bool:
    """A scheduled run is *missed* when it starts after its deadline (:func:`run_deadline`),
    whatever the reason: the backup hosts had no free slot in time, or the dispatcher or the
    workers were down. Waiting in the queue within the window is not missing it."""
    return started > run_deadline(policy, due)


def deadline_expression() -> ExpressionWrapper:
    """:func:`run_deadline` of each policy's next run, in SQL (the dispatcher orders by it)."""
    minutes = Least(Greatest(F("interval_minutes"), Value(15)), Value(window_minutes()))
    return ExpressionWrapper(
        F("next_run_at") + MinutesDuration(minutes), output_field=DateTimeField()
    )


class MinutesDuration(Func):
    """A number of minutes as a duration, in SQL. Django cannot multiply an integer by a
    duration on SQLite (the demo's database: "Invalid arguments for operator *"), so each
    backend gets its own form: an interval on PostgreSQL, microseconds (how Django stores a
    duration there) on SQLite."""

    output_field = DurationField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="make_interval(mins => %(expressions)s)")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="(%(expressions)s * 60000000)")


def runs_per_window(policy_interval_minutes: int) -> float:
    """How many runs of a policy with this interval fall into one nightly window (at least
    one: a daily or weekly policy runs once in it)."""
    return max(1.0, window_minutes() / max(15, policy_interval_minutes))
