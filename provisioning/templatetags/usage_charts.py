"""Resource-use charts of the instance page and the host page's totals: server-rendered SVG,
drawn like the health chart beside it (no JavaScript, no CDN: the panel runs offline)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django import template
from django.template.defaultfilters import filesizeformat

from provisioning.selectors import host_usage_totals, instance_usage_history
from provisioning.usage import DISK_SAMPLE_EVERY, USAGE_FRESH

register = template.Library()

WIDTH, TOP, BOTTOM = 480, 6, 58  # each strip's viewBox is WIDTH x 64


def _y(value: float, scale: float) -> float:
    return round(BOTTOM - (BOTTOM - TOP) * min(value, scale) / scale, 1)


def _runs(values: Sequence[float | None], scale: float) -> list[dict[str, Any]]:
    """The points of a series as runs of consecutive slots with a value (a slot without
    samples breaks the line): each run a polyline, or a dot when it is a single point."""
    step = WIDTH / len(values)
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for i, value in enumerate(values):
        if value is None or not scale:
            if current:
                runs.append(current)
            current = []
            continue
        current.append((round(i * step + step / 2, 1), _y(value, scale)))
    if current:
        runs.append(current)
    return [
        {
            "points": " ".join(f"{x},{y}" for x, y in run),
            "dot": run[0] if len(run) == 1 else None,
        }
        for run in runs
    ]


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _size(value: float | None) -> str:
    return filesizeformat(value) if value is not None else "—"


def _cpu_strip(history: dict[str, Any]) -> dict[str, Any]:
    slots, limits = history["slots"], history["limits"]
    app = [s["app_cpu_percent"] for s in slots]
    db = [s["db_cpu_percent"] for s in slots]
    limit = 100 * limits["app_cpus"]
    peak = max((v for v in app + db if v is not None), default=0.0)
    scale = max(limit, peak) * 1.05
    return {
        "app": _runs(app, scale),
        "db": _runs(db, scale),
        "limit_y": _y(limit, scale),
        "limit": limit,
        "peak": round(peak, 1),
    }


def _memory_strip(history: dict[str, Any]) -> dict[str, Any]:
    slots = history["slots"]
    app = [s["app_memory_bytes"] for s in slots]
    db = [s["db_memory_bytes"] for s in slots]
    heap, limit = history["heap_bytes"], history["app_memory_limit_bytes"]
    peak = max((v for v in app + db if v is not None), default=0)
    scale = max(heap, limit, peak) * 1.05
    return {
        "app": _runs(app, scale),
        "db": _runs(db, scale),
        "heap_y": _y(heap, scale),
        "limit_y": _y(limit, scale),
        "heap": _size(heap),
        "limit": _size(limit),
        "peak": _size(history["app_memory_peak_bytes"]),
    }


def _disk_strip(history: dict[str, Any]) -> dict[str, Any]:
    disk = [s["disk_bytes"] for s in history["slots"]]
    peak = max((v for v in disk if v is not None), default=0)
    latest = history["latest"]
    return {
        "line": _runs(disk, peak * 1.1 if peak else 0),
        "home": _size(latest.home_bytes if latest else None),
        "db": _size(latest.db_disk_bytes if latest else None),
        "measured_at": latest.disk_sampled_at if latest else None,
        "error": latest.disk_error if latest else "",
    }


@register.inclusion_tag("provisioning/_usage_chart.html", takes_context=True)
def instance_usage_chart(context: Any, instance: Any, hours: int = 24) -> dict[str, Any]:
    """CPU against the app container's CPU limit, memory against the heap and the container's
    limit, and disk use of home and database, in half-hour slots over the last ``hours``."""
    history = instance_usage_history(context["access"], instance, hours=hours)
    latest = history["latest"]
    return {
        "instance": instance,
        "history": history,
        "latest": latest,
        "cpu": _cpu_strip(history),
        "memory": _memory_strip(history),
        "disk": _disk_strip(history),
        "app_memory": _size(latest.app_memory_bytes if latest else None),
        "db_memory": _size(latest.db_memory_bytes if latest else None),
        "width": WIDTH,
        "bottom": BOTTOM,
        "disk_minutes": _minutes(DISK_SAMPLE_EVERY),
    }


@register.inclusion_tag("provisioning/_host_usage.html", takes_context=True)
def host_usage(context: Any, host: Any) -> dict[str, Any]:
    """The newest sample of each instance on ``host`` and their totals against its capacity."""
    return {
        "host": host,
        "totals": host_usage_totals(context["access"], host),
        "disk_minutes": _minutes(DISK_SAMPLE_EVERY),
        "fresh_minutes": _minutes(USAGE_FRESH),
    }
