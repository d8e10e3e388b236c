"""The Celery application; tasks live in each app's tasks.py and stay thin.

The beat schedule comes from the registry: each app registers its periodic jobs from its
``AppConfig.ready()`` (:func:`panel.registry.periodic_job_register`), so it can only be built
once Django is set up. Celery's Django fixup runs ``django.setup()`` when the worker or beat
imports the task modules (the ``import_modules`` signal); the schedule is applied right after,
and again when beat starts, before its scheduler reads ``app.conf.beat_schedule``.
"""

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")

app = Celery("panel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def beat_schedule_apply(**_: Any) -> dict[str, dict[str, Any]]:
    """Set ``app.conf.beat_schedule`` from the registered periodic jobs (Django must be set
    up: the apps' ``ready()`` fill the registry) and return it."""
    import django
    from django.apps import apps

    from panel.registry import beat_schedule

    if not apps.ready:
        if apps.loading:  # the fixup's setup failed half-way; its error is already reported
            return dict(app.conf.beat_schedule or {})
        django.setup()
    schedule = beat_schedule()
    app.conf.beat_schedule = schedule
    return schedule


# Connected after the Django fixup's own import_modules receiver (made when the app was
# created), so Django is set up when this one runs. weak=False: module-level functions stay.
signals.import_modules.connect(beat_schedule_apply, sender=app, weak=False)
signals.beat_init.connect(beat_schedule_apply, weak=False)
signals.beat_embedded_init.connect(beat_schedule_apply, weak=False)


def sanitize_handlers(logger: Any = None, **_: Any) -> None:
    """Put the secret filter on the handlers Celery sets up in a worker or beat: Celery
    replaces the root logger's handlers (``worker_hijack_root_logger``), so LOGGING's own
    filtered handler is gone there, and a task's arguments (e.g. in "Received unregistered
    task ... body: ...") or an exception's text would reach the log as they are."""
    from panel.sanitize import SanitizeFilter

    for handler in getattr(logger, "handlers", []):
        if not any(isinstance(f, SanitizeFilter) for f in handler.filters):
            handler.addFilter(SanitizeFilter())


signals.after_setup_logger.connect(sanitize_handlers, weak=False)
signals.after_setup_task_logger.connect(sanitize_handlers, weak=False)
