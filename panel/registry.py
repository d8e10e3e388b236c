"""The one place where apps plug into the panel (after NetBox's ``netbox/registry.py``).

``panel/`` is the bottom layer: it never imports a domain app. Each app adds its own entries
from its ``AppConfig.ready()`` (operation kinds, hooks around an instance's life, periodic
jobs, notification events and scanners, page panels); ``panel`` code and the apps above read
them from here. Stores are fixed: a typo in a store name fails at import, not silently.

Where a new thing goes (also in the README's "Layout" section):

- an operation kind: ``@operation_handler(kind, label=...)`` in ``<app>/operations.py``,
  imported by the app's ``ready()``;
- a periodic job: ``periodic_job_register(name, task=..., seconds=...)`` in ``ready()``;
- a notification event or scanner: ``notification_event_register`` / ``registry
  ["notification_scans"]`` in ``ready()``; the notifications app does the fan-out;
- a panel on the dashboard, the instance page or a host's page: ``panel_register(
  "dashboard_panels" | "instance_panels" | "host_panels", template_name)`` in ``ready()``
  (a host panel renders with the page's ``host``; backups adds its evacuation panel);
- a hook around an instance's life (after publishing, before an upgrade, after a failed
  upgrade, on delete): ``hook_register("instance_hooks", moment, func)`` in ``ready()``.
  Each is called ``func(ctx, instance)``. A "pre_upgrade" hook that takes a backup point
  records its id in ``ctx.operation.params["pre_upgrade_point"]`` (saved on the operation
  row, so it outlives the hook). An "upgrade_failed" hook runs uncancellable once the new
  version failed, was cancelled or timed out after ``up`` (its app already stopped and the
  previous compose files back in place, not started): it brings the previous version back
  on the state before the upgrade (backups restores that point) and returns a sentence for
  the operation's error; it raises ``OperationFailed`` if it could not, leaving the instance
  stopped. Never the old image on the upgraded database: the products refuse a database a
  newer version upgraded;
- something to put back when an evacuation's move of an instance is undone after it began
  publishing on the target: ``hook_register("instance_hooks", "moved_back", func)``, called
  ``func(ctx, instance)`` with the instance as it was on its old host (certificates points its
  DNS record back there); uncancellable, and a failure is a warning, not the error;
- something to do on a returning host to an evacuated instance's old deployment:
  ``hook_register("host_hooks", "fence", func)``, called ``func(conn, host, copy)``;
- something to hear about ended operations: ``hook_register("operation_listeners", "failed",
  func)``;
- a count on the dashboard summary: ``registry["summary_counts"][key] = func(access)``.

The runner (:mod:`panel.operations`) is bound to the Operation model by the app that owns it
(``operation_bind`` in ``ProvisioningConfig.ready()``, stored in ``operation_runtime``); the
Celery beat schedule is :func:`beat_schedule`, applied by ``panel/celery.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PeriodicJob:
    """A Celery beat entry an app asks for (the beat schedule is built from these)."""

    name: str
    task: str
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotificationEvent:
    """A kind of notice an app can raise: its key, its label for preferences, and whether it
    concerns the platform (staff) rather than a tenant."""

    key: str
    label: str
    platform: bool = False


class _Registry(dict):
    """A dict whose set of stores is fixed at creation."""

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("the registry's stores are fixed; add to a store instead")

    def __getitem__(self, key: str) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            raise KeyError(f"no registry store {key!r}") from None


registry: dict[str, Any] = _Registry(
    # kind -> panel.operations.OperationKindSpec (handler, label, on_abort, staff_cancel)
    operation_kinds={},
    # event ("failed", "succeeded") -> callables taking the ended operation
    operation_listeners={"failed": [], "succeeded": []},
    # moment ("publish", "unpublish", "pre_upgrade", "upgrade_failed", "moved_back") ->
    # callables (ctx, instance); see the module docstring for what the upgrade ones return
    instance_hooks={
        "publish": [],
        "unpublish": [],
        "pre_upgrade": [],
        "upgrade_failed": [],
        "moved_back": [],
    },
    # moment ("fence") -> callables (conn, host, copy): after an evacuated instance's old
    # deployment on a returning host is stopped, over the same connection (certificates
    # removes its proxy site and certificate file there)
    host_hooks={"fence": []},
    # name -> PeriodicJob
    periodic_jobs={},
    # key -> NotificationEvent
    notification_events={},
    # callables (now) -> iterable of notices; run by the notifications app's periodic scan
    notification_scans=[],
    # callables receiving each notice raised with panel.notices.notify() (the notifications
    # app registers the one that fans out to people)
    notification_sinks=[],
    # template names rendered on the dashboard / the instance page / a host's page, in
    # registration order
    dashboard_panels=[],
    instance_panels=[],
    host_panels=[],
    # key -> callable (access) -> int: extra counts on the dashboard summary (the certificates
    # app adds "certificates_expiring")
    summary_counts={},
    # the runner's bound models and enqueue function (see panel.operations.operation_bind)
    operation_runtime={},
)


def periodic_job_register(
    name: str, *, task: str, seconds: float, options: dict[str, Any] | None = None
) -> None:
    """Ask for a periodic Celery task (idempotent: ``ready()`` may run more than once)."""
    registry["periodic_jobs"][name] = PeriodicJob(name, task, seconds, options or {})


def notification_event_register(key: str, *, label: str, platform: bool = False) -> None:
    """Declare a notification event an app can raise."""
    registry["notification_events"][key] = NotificationEvent(key, label, platform)


def hook_register(store: str, moment: str, func: Callable[..., Any]) -> None:
    """Append ``func`` to a hook list once (``ready()`` may run more than once in tests)."""
    hooks = registry[store][moment]
    if func not in hooks:
        hooks.append(func)


# template name -> its order on its page (the stores themselves stay plain lists of names)
_panel_orders: dict[str, int] = {}


def panel_register(store: str, template_name: str, *, order: int = 50) -> None:
    """Add a page panel (a template name) once; lower ``order`` renders first, equal orders
    keep the registration order (the apps' order in ``INSTALLED_APPS``)."""
    panels = registry[store]
    if template_name in panels:
        return
    _panel_orders[template_name] = order
    index = len(panels)
    while index > 0 and _panel_orders.get(panels[index - 1], 50) > order:
        index -= 1
    panels.insert(index, template_name)


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The Celery beat schedule built from every registered periodic job."""
    return {
        job.name: {"task": job.task, "schedule": job.seconds, **job.options}
        for job in registry["periodic_jobs"].values()
    }
