"""Which backup points to keep: hourly / daily / weekly / monthly, like rsnapshot's
``retain`` levels but decided from the points' real timestamps (pure code, no I/O).

The rule, applied newest first, one level after another (the semantics of ``borg prune``):

* ``hourly N``: the newest point of each of the N most recent clock hours that have one;
* ``daily N``: the newest point of each of the N most recent days that have one, skipping days
  whose newest point an earlier level already keeps (so 7 daily are 7 *more* days);
* ``weekly N`` (ISO weeks, Monday first) and ``monthly N`` likewise.

A kept point is labelled with its level and rank (``daily.0`` is the newest daily point), the
names rsnapshot gives its directories. The newest point is always kept. Points taken outside
the schedule (an extra backup a tenant admin asked for, the one before an upgrade, the safety
backup before a restore) do not take part and take no slot: each is kept for ``extra_days``, so
the next scheduled run never ages out the point someone took on purpose an hour ago. Pinned
points (used by a restore or drill in progress) are never pruned. All periods are in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

POINT_NAME_RE = re.compile(r"\A(\d{8}T\d{6}Z)(?:-(manual|upgrade|safety))?\Z")
# The directory-name suffix of each kind of point taken outside the schedule.
EXTRA_SUFFIX = {"manual": "manual", "pre_upgrade": "upgrade", "safety": "safety"}
EXTRA_LABEL = {"manual": "extra", "upgrade": "pre-upgrade", "safety": "safety"}
POINT_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Retention:
    """How many points each level keeps (a policy's ``keep_*`` fields)."""

    hourly: int = 0
    daily: int = 7
    weekly: int = 4
    monthly: int = 12


@dataclass(frozen=True)
class Point:
    """A point on the backup host, known by its directory name."""

    name: str
    taken_at: datetime
    extra: str = ""  # "", "manual", "upgrade" or "safety"


@dataclass
class RetentionPlan:
    """The outcome: which points stay (with their labels) and which go."""

    keep: dict[str, str] = field(default_factory=dict)
    prune: list[str] = field(default_factory=list)


def point_name(taken_at: datetime, *, kind: str = "scheduled") -> str:
    """The directory name of a point of ``kind`` taken at ``taken_at`` (UTC, seconds)."""
    name = taken_at.astimezone(UTC).strftime(POINT_TIME_FORMAT)
    suffix = EXTRA_SUFFIX.get(kind)
    return f"{name}-{suffix}" if suffix else name


def point_parse(name: str) -> Point | None:
    """The point a directory name stands for, or None for anything else (never pruned)."""
    match = POINT_NAME_RE.match(name)
    if match is None:
        return None
    taken_at = datetime.strptime(match.group(1), POINT_TIME_FORMAT).replace(tzinfo=UTC)
    return Point(name=name, taken_at=taken_at, extra=match.group(2) or "")


_PERIODS: list[tuple[str, Callable[[datetime], tuple]]] = [
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: tuple(t.isocalendar())[:2]),
    ("monthly", lambda t: (t.year, t.month)),
]


def retention_plan(
    points: Iterable[Point],
    rule: Retention,
    *,
    now: datetime,
    extra_days: int = 7,
    pinned: Iterable[str] = (),
) -> RetentionPlan:
    """Decide which of ``points`` to keep under ``rule`` and label them."""
    points = list(points)
    regular = sorted((p for p in points if not p.extra), key=lambda p: p.taken_at, reverse=True)
    plan = RetentionPlan()
    for level, period_of in _PERIODS:
        wanted = getattr(rule, level)
        if wanted <= 0:
            continue
        count, last = 0, None
        for point in regular:
            period = period_of(point.taken_at.astimezone(UTC))
            if period == last:
                continue
            last = period
            if point.name in plan.keep:
                continue
            plan.keep[point.name] = f"{level}.{count}"
            count += 1
            if count == wanted:
                break
    for point in points:
        if point.extra and now - point.taken_at < timedelta(days=extra_days):
            plan.keep[point.name] = EXTRA_LABEL[point.extra]
    newest = max(points, key=lambda p: p.taken_at, default=None)
    if newest is not None and newest.name not in plan.keep:
        plan.keep[newest.name] = "latest"
    for name in pinned:
        if any(p.name == name for p in points):
            plan.keep.setdefault(name, "pinned")
    plan.prune = sorted(
        (p.name for p in points if p.name not in plan.keep),
        key=lambda name: name,
    )
    return plan
