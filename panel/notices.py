"""The one way any app tells a person something: :func:`notify` and :func:`notify_resolved`.

``panel`` is the bottom layer, so it cannot know who hears about what: these facades wrap the
call in a :class:`Notice` and hand it to every sink in ``registry["notification_sinks"]``. The
``notifications`` app (on top) registers the sink that records the notice once per
``dedupe_key`` and fans it out by email and webhook to the people who asked for its event.
Events are declared with :func:`panel.registry.notification_event_register` by the app that
raises them; :func:`notify` refuses an undeclared one (a typo must not pass silently).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import models

from panel.registry import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """Something worth telling people about, as raised by an app.

    ``tenant`` None is a platform notice (staff only). ``dedupe_key`` names the thing *and its
    state* (e.g. ``rpo:<instance id>``): it is told once until it changes or is resolved.
    ``object_type``/``object_id`` name the row it is about (``app_label.model``, primary key).
    A ``resolved`` notice closes an earlier one with the same event, audience and key.
    """

    event: str
    tenant: models.Model | None
    dedupe_key: str
    subject: str = ""
    body: str = ""
    url: str = ""
    object_type: str = ""
    object_id: str = ""
    resolved: bool = False

    @property
    def tenant_id(self) -> Any:
        return self.tenant.pk if self.tenant is not None else None


def _deliver(notice: Notice) -> Any:
    """Hand ``notice`` to every sink; the first sink's answer that is not None is returned."""
    if notice.event not in registry["notification_events"]:
        raise ValueError(f"unknown notification event {notice.event!r}")
    sinks = registry["notification_sinks"]
    if not sinks:
        # Only when the notifications app is not installed (some test settings): say so.
        log.warning(
            "no notification sink registered; %s %s not told", notice.event, notice.dedupe_key
        )
    answer = None
    for sink in sinks:
        result = sink(notice)
        if answer is None:
            answer = result
    return answer


def notify(
    *,
    event: str,
    tenant: models.Model | None,
    obj: models.Model | None,
    dedupe_key: str,
    subject: str,
    body: str,
    url: str,
) -> Any:
    """Tell the people who asked for ``event`` about it, once per ``dedupe_key``.

    ``url`` (a path or an absolute URL) links to ``obj`` in the panel. Returns what the
    notifications sink recorded (its event row, or None when this key was told already).
    Deliveries are sent after the current transaction commits.
    """
    return _deliver(
        Notice(
            event=event,
            tenant=tenant,
            dedupe_key=dedupe_key,
            subject=subject,
            body=body,
            url=url,
            object_type=obj._meta.label_lower if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
        )
    )


def notify_resolved(*, event: str, tenant: models.Model | None, dedupe_key: str) -> bool:
    """Close a notice (the condition went away) so that it is told again if it comes back."""
    return bool(_deliver(Notice(event=event, tenant=tenant, dedupe_key=dedupe_key, resolved=True)))
