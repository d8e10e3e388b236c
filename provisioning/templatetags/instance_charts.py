"""Small server-rendered SVG charts of the instance page (no JavaScript, no CDN)."""

from __future__ import annotations

from typing import Any

from django import template

from provisioning.selectors import instance_health_history

register = template.Library()

WIDTH, LINE_TOP, LINE_BOTTOM, BAR_TOP, BAR_HEIGHT = 480, 6, 58, 66, 18


def _tone(slot: dict[str, Any]) -> str:
    if not slot["total"]:
        return "none"
    if slot["ok"] == slot["total"]:
        return "ok"
    return "bad" if slot["ok"] == 0 else "warn"


@register.inclusion_tag("provisioning/_health_chart.html", takes_context=True)
def instance_health_chart(context: Any, instance: Any, hours: int = 24) -> dict[str, Any]:
    """A strip of health-check results (green passed, amber some failed, red all failed, grey
    no checks) under a line of mean response times, over the last ``hours`` hours."""
    history = instance_health_history(context["access"], instance, hours=hours)
    slots = history["slots"]
    step = WIDTH / len(slots)
    peak = max((s["mean_ms"] for s in slots if s["mean_ms"] is not None), default=0)
    bars, points = [], []
    for i, slot in enumerate(slots):
        x = round(i * step, 2)
        tone = _tone(slot)
        if slot["total"]:
            title = (
                f"{slot['start']:%H:%M}–{slot['end']:%H:%M} UTC: {slot['ok']} of "
                f"{slot['total']} checks passed"
                + (f", {slot['mean_ms']} ms on average" if slot["mean_ms"] is not None else "")
            )
        else:
            title = f"{slot['start']:%H:%M}–{slot['end']:%H:%M} UTC: no checks"
        bars.append({"x": x, "width": round(step - 1, 2), "tone": tone, "title": title})
        if slot["mean_ms"] is not None and peak:
            y = LINE_BOTTOM - (LINE_BOTTOM - LINE_TOP) * slot["mean_ms"] / peak
            points.append(f"{round(x + step / 2, 1)},{round(y, 1)}")
    return {
        "instance": instance,
        "history": history,
        "bars": bars,
        "points": " ".join(points),
        "single_point": len(points) == 1,
        "first_point": points[0].split(",") if points else None,
        "peak_ms": peak,
        "width": WIDTH,
        "bar_top": BAR_TOP,
        "bar_height": BAR_HEIGHT,
        "line_bottom": LINE_BOTTOM,
    }
