"""Settings for the in-process test suite: the real PostgreSQL and Redis on this machine."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/panel")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("PANEL_TESTING", "1")

from panel.settings import *  # noqa: F403

# The test-case transaction would hide operation rows from a second connection; the real
# worker (a separate process on panel.settings) keeps the separate step connection.
PANEL_OPERATION_LOG_SEPARATE = env_bool("PANEL_OPERATION_LOG_SEPARATE", default=False)  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = env("PANEL_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")  # noqa: F405
PANEL_OPERATION_MODULES = ["tests.support.operations"]

# Several test runs may share this machine's PostgreSQL: each gets its own test database.
_test_db = os.environ.get("PANEL_TEST_DB_NAME", f"test_panel_{os.getpid()}")
DATABASES["default"]["TEST"] = {"NAME": _test_db}  # noqa: F405
DATABASES["operation_log"]["TEST"] = {"NAME": _test_db, "DEPENDENCIES": []}  # noqa: F405

# The lab's images (scripts/lab up builds them) stand in for the real atlassian/* images.
PANEL_IMAGE_PREFIX = "panel-lab/"
PANEL_POSTGRES_IMAGE = "panel-lab/postgres:15"
PANEL_EXTRA_VERSIONS = [
    f"{p}=0.0.0-broken"
    for p in (
        "jira-software",
        "jira-servicemanagement",
        "confluence",
        "bitbucket",
        "bamboo",
        "crowd",
    )
] + [
    # X.Y.Z-failing: marks the database with X.Y.Z, then answers ERROR (a failed upgrade that
    # leaves an upgraded schema behind; scripts/lab builds them, lab/README.md).
    "jira-software=9.18.0-failing",
    "jira-servicemanagement=5.18.0-failing",
    "confluence=8.10.0-failing",
    "bitbucket=9.5.0-failing",
    "bamboo=9.7.0-failing",
    "crowd=5.4.0-failing",
]
PANEL_ROLLOUT_TIMEOUT = 90
PANEL_ROLLOUT_POLL_INTERVAL = 1
PANEL_ROLLOUT_MAINTENANCE_TIMEOUT = 60
PANEL_ROLLOUT_ERROR_GRACE = 10
# Explicit, whatever the environment says: the upgrade tests prove the cold pre-upgrade point.
PANEL_UPGRADE_BACKUP_MODE = "cold"
# Generous limits so the suite itself is never throttled; tests of throttling lower them.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"token": "100000/min", "ip": "100000/min"},
}
# Most in-process tests log staff in with force_login; tests/hardening/test_two_factor.py and
# the browser tests turn the staff two-factor requirement back on.
PANEL_STAFF_REQUIRE_2FA = False
LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"], "axes": {"level": "WARNING"}}}  # noqa: F405
# Each test session (and the worker it starts, which inherits the environment) uses its own
# queue, so concurrent test runs on one machine never take each other's tasks.
os.environ.setdefault("PANEL_TEST_QUEUE", f"panel-test-{os.getpid()}")
# Both queues are derived from the run's prefix (never taken from the environment), so two
# runs on one Redis never share either of them; the routes keep pointing at the same roles.
_test_queue_of = {
    PANEL_CELERY_QUEUE_OPERATIONS: f"{os.environ['PANEL_TEST_QUEUE']}-operations",  # noqa: F405
    PANEL_CELERY_QUEUE_HOUSEKEEPING: f"{os.environ['PANEL_TEST_QUEUE']}-housekeeping",  # noqa: F405
}
PANEL_CELERY_QUEUE_OPERATIONS = _test_queue_of[PANEL_CELERY_QUEUE_OPERATIONS]  # noqa: F405
PANEL_CELERY_QUEUE_HOUSEKEEPING = _test_queue_of[PANEL_CELERY_QUEUE_HOUSEKEEPING]  # noqa: F405
CELERY_TASK_DEFAULT_QUEUE = PANEL_CELERY_QUEUE_HOUSEKEEPING
CELERY_TASK_ROUTES = {
    name: {**route, "queue": _test_queue_of[route["queue"]]}
    for name, route in CELERY_TASK_ROUTES.items()  # noqa: F405
}

# The lab's nginx proxy image; no ACME CA unless a test points at the lab's pebble.
PANEL_PROXY_IMAGE = "panel-lab/proxy:bookworm"
PANEL_ACME_DIRECTORY = ""

# New instances do not archive their WAL unless a test asks (tests/backups/lab/
# test_point_in_time.py runs the production default, PANEL_WAL_ON_CREATE on, through the lab):
# the other tests' instances stay as small as they were.
PANEL_WAL_ON_CREATE = False
