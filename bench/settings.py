"""Settings for the benchmarks: the panel's own settings on the ``panel_bench`` database.

Everything else is production-like (DEBUG off, Redis cache shared by the gunicorn workers);
only the API rate limits are lifted so the load test measures the panel, not its throttle.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/panel_bench")
os.environ.setdefault("PANEL_CACHE_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("PANEL_API_RATE_PER_TOKEN", "100000000/min")
os.environ.setdefault("PANEL_API_RATE_PER_IP", "100000000/min")
os.environ.setdefault("PANEL_SECURE_COOKIES", "0")

from panel.settings import *  # noqa: F403

# Django's password hashing is deliberately slow; the bench logs in a handful of users only.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Notifications (e.g. the dispatcher's missed-backup mails) stay in memory.
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
