"""The Django project and shared infrastructure of the hosting panel (no domain models)."""

from panel.celery import app as celery_app

__all__ = ["celery_app"]
