"""The retention rule on its own: which points 7 daily / 4 weekly / 12 monthly (and hourly)
keeps, with labels, and what is never pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backups.retention import Point, Retention, point_name, point_parse, retention_plan

START = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)


def _daily(days: int, start: datetime = START) -> list[Point]:
    return [point_parse(point_name(start + timedelta(days=d))) for d in range(days)]


def test_forty_daily_points_keep_7_daily_4_weekly_and_the_newest_of_the_month_before():
    points = _daily(40)
    plan = retention_plan(points, Retention(), now=points[-1].taken_at)
    assert plan.keep == {
        "20250209T020000Z": "daily.0",
        "20250208T020000Z": "daily.1",
        "20250207T020000Z": "daily.2",
        "20250206T020000Z": "daily.3",
        "20250205T020000Z": "daily.4",
        "20250204T020000Z": "daily.5",
        "20250203T020000Z": "daily.6",
        "20250202T020000Z": "weekly.0",
        "20250126T020000Z": "weekly.1",
        "20250119T020000Z": "weekly.2",
        "20250112T020000Z": "weekly.3",
        "20250131T020000Z": "monthly.0",
    }
    assert len(plan.prune) == 28 and not set(plan.prune) & set(plan.keep)


def test_a_year_and_more_keeps_exactly_23_points_with_one_per_month():
    points = _daily(420)
    plan = retention_plan(points, Retention(), now=points[-1].taken_at)
    assert len(plan.keep) == 7 + 4 + 12
    monthly = sorted(name for name, label in plan.keep.items() if label.startswith("monthly"))
    assert len(monthly) == 12
    # the newest point of each month, twelve different months
    assert len({name[:6] for name in monthly}) == 12
    assert all(point_parse(n).taken_at.day == _last_day(point_parse(n).taken_at) for n in monthly)


def _last_day(moment: datetime) -> int:
    following = (moment.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - timedelta(days=1)).day


def test_several_backups_a_day_keep_the_newest_of_each_hour_then_of_each_day():
    points = [point_parse(point_name(START + timedelta(minutes=30 * i))) for i in range(200)]
    plan = retention_plan(points, Retention(hourly=24), now=points[-1].taken_at)
    hourly = [n for n, label in plan.keep.items() if label.startswith("hourly")]
    assert len(hourly) == 24
    assert all(n.endswith("3000Z") for n in hourly)  # the :30 point is the newest of its hour
    daily = [n for n, label in plan.keep.items() if label.startswith("daily")]
    assert len(daily) == 3  # only 4 days of points, the newest day's are hourly already


def test_extra_points_are_kept_a_week_outside_the_slots_and_the_newest_always_stays():
    points = _daily(10)
    extra = point_parse(point_name(START + timedelta(days=9, hours=1), kind="manual"))
    old_safety = point_parse(point_name(START + timedelta(days=1), kind="safety"))
    plan = retention_plan(
        [*points, extra, old_safety], Retention(daily=2, weekly=0, monthly=0), now=extra.taken_at
    )
    assert plan.keep[extra.name] == "extra"
    assert old_safety.name in plan.prune  # older than the week extra points are kept
    assert sorted(n for n, label in plan.keep.items() if label.startswith("daily")) == [
        points[8].name,
        points[9].name,
    ]
    nothing = retention_plan(
        points, Retention(daily=0, weekly=0, monthly=0), now=points[-1].taken_at
    )
    assert nothing.keep == {points[-1].name: "latest"}


def test_a_point_in_use_by_a_restore_is_never_pruned():
    points = _daily(20)
    plan = retention_plan(
        points,
        Retention(daily=3, weekly=0, monthly=0),
        now=points[-1].taken_at,
        pinned=[points[0].name, "not-a-point"],
    )
    assert plan.keep[points[0].name] == "pinned"
    assert points[0].name not in plan.prune and "not-a-point" not in plan.keep


def test_names_round_trip_and_other_directories_are_not_points():
    moment = datetime(2025, 6, 30, 23, 59, 58, tzinfo=UTC)
    assert point_parse(point_name(moment)).taken_at == moment
    assert point_name(moment, kind="pre_upgrade") == "20250630T235958Z-upgrade"
    assert point_parse("20250630T235958Z-upgrade").extra == "upgrade"
    for junk in ("lost+found", "20250630T235958Z.tmp", "../x", "daily.0"):
        assert point_parse(junk) is None
