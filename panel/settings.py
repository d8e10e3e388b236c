"""Settings for the panel, driven by environment variables.

With no environment at all the panel runs on embedded defaults (SQLite, a filesystem Celery
broker, keys generated under ``var/``) so that one command starts a working demo. Production sets
``DATABASE_URL``, ``CELERY_BROKER_URL``, ``PANEL_SECRET_KEY`` and ``PANEL_ENCRYPTION_KEYS``; each
secret may also be given as ``<NAME>_FILE`` pointing to a file (Docker secrets).
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the embedded defaults keep their files (generated keys, SQLite, the filesystem broker);
# created only when one of them is used, so a configured production panel writes nothing here.
VAR_DIR = Path(os.environ.get("PANEL_VAR_DIR", BASE_DIR / "var"))


def env(name: str, default: str | None = None) -> str | None:
    """Read ``name`` from the environment, or from the file named by ``<name>_FILE``."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """An integer from the environment; unset or empty gives ``default``."""
    value = env(name)
    return default if value is None or not value.strip() else int(value)


def env_float(name: str, default: float) -> float:
    """A number from the environment; unset or empty gives ``default``."""
    value = env(name)
    return default if value is None or not value.strip() else float(value)


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list from the environment (items stripped, empty ones dropped);
    unset or empty gives the items of ``default``."""
    return [item.strip() for item in (env(name) or default).split(",") if item.strip()]


def _generated_secret(file_name: str, make: callable) -> str:
    """A development secret, generated once and kept under var/ (never used when env is set)."""
    path = VAR_DIR / file_name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("PANEL_DEBUG", default=False)
TESTING = env_bool("PANEL_TESTING", default=False)
# True when the panel runs on the embedded defaults (the demo, a developer's tree): no secret
# key was configured. Production always sets one; `demo_seed` refuses to run there.
PANEL_EMBEDDED_DEFAULTS = not env("PANEL_SECRET_KEY")
SECRET_KEY = env("PANEL_SECRET_KEY") or _generated_secret(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation: prepend a new key,
# run `manage.py secrets_rotate`, then drop the old one).
PANEL_ENCRYPTION_KEYS = [
    k.strip()
    for k in (
        env("PANEL_ENCRYPTION_KEYS")
        or _generated_secret("encryption_keys", lambda: Fernet.generate_key().decode())
    ).split(",")
    if k.strip()
]

ALLOWED_HOSTS = [
    h.strip()
    for h in (env("PANEL_ALLOWED_HOSTS") or "localhost,127.0.0.1,[::1],testserver").split(",")
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in (env("PANEL_CSRF_TRUSTED_ORIGINS") or "").split(",") if o.strip()
]
PANEL_BASE_URL = env("PANEL_BASE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",  # one-time recovery codes
    "axes",
    "panel",
    "tenants",
    "provisioning",
    "backups",
    "certificates",
    "notifications",  # on top: tells people what the apps below raise (panel.notices)
]

MIDDLEWARE = [
    # First: every later layer (rate limits, django-axes, the audit log) sees the client.
    "panel.clientaddr.ClientAddressMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "panel.csp.ContentSecurityPolicyMiddleware",
    "panel.api.throttles.ApiRateLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "tenants.twofactor.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "panel.audit.AuditContextMiddleware",
    # Last, as django-axes asks: it turns lockouts into a response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses logins for a locked-out username + IP before checking.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(env("PANEL_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(env("PANEL_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
# REMOTE_ADDR is already the client's address (panel.clientaddr); axes must not read the
# forwarding headers itself, which any caller can write.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# Reverse proxies in front of the panel (addresses or networks, comma-separated), as the
# panel sees them. Only a request from one of these has its X-Forwarded-For read; with none
# (the default) the header is ignored. The production stack sets its proxy's network.
PANEL_TRUSTED_PROXIES = [
    n.strip() for n in env("PANEL_TRUSTED_PROXIES", "").split(",") if n.strip()
]
# The panel's own code (the bottom layer) imports no domain app: the tenants app provides who
# may see what and the audit trail's writer, named here as Django names its auth backends.
PANEL_ACCESS_RESOLVER = "tenants.access.access_for_user"
PANEL_AUDIT_RECORDER = "tenants.audit.audit_event_record"
OTP_TOTP_ISSUER = "Atlassian hosting panel"
PANEL_STAFF_REQUIRE_2FA = env_bool("PANEL_STAFF_REQUIRE_2FA", default=True)

ROOT_URLCONF = "panel.urls"
WSGI_APPLICATION = "panel.wsgi.application"
ASGI_APPLICATION = "panel.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "panel.context_processors.panel",
            ],
        },
    },
]

# Rate limits and login lockouts need one cache all processes share in production (Redis).
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env("PANEL_CACHE_URL"),
        }
        if env("PANEL_CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

_default_db = f"sqlite:///{VAR_DIR / 'panel.sqlite3'}"
if not env("DATABASE_URL"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL") or _default_db, conn_max_age=60)}
if env("PANEL_DB_PASSWORD"):
    DATABASES["default"]["PASSWORD"] = env("PANEL_DB_PASSWORD")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; the timeout rides out short locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
# Operation steps are written through a second connection to the same database, so a step is
# committed at once (a watcher sees it live) even when the code that logged it is inside a
# transaction that later rolls back.
DATABASES["operation_log"] = {**DATABASES["default"], "TEST": {"DEPENDENCIES": []}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("PANEL_STATIC_ROOT") or BASE_DIR / "staticfiles")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool(
    "PANEL_SECURE_COOKIES", default=not DEBUG and not TESTING and bool(env("DATABASE_URL"))
)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_HSTS_SECONDS = int(env("PANEL_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_SSL_REDIRECT = env_bool("PANEL_SSL_REDIRECT", default=False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (the production stack's nginx).
if env_bool("PANEL_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
# panel/csp.py: scripts only from the panel's own files, no inline code; no framing.
PANEL_CONTENT_SECURITY_POLICY = env(
    "PANEL_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # 1 MiB: no form or API body of ours is bigger

EMAIL_BACKEND = env("PANEL_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("PANEL_EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(env("PANEL_EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = env("PANEL_EMAIL_FROM", "panel@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["panel.api.permissions.PanelPermission"],
    "DEFAULT_PAGINATION_CLASS": "panel.api.pagination.PanelPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "panel.api.exceptions.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Per IP: panel.api.throttles.ApiRateLimitMiddleware (before authentication).
    "DEFAULT_THROTTLE_CLASSES": ["panel.api.throttles.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "token": env("PANEL_API_RATE_PER_TOKEN", "600/min"),
        "ip": env("PANEL_API_RATE_PER_IP", "1200/min"),
    },
    # REMOTE_ADDR is the client's address already (panel.clientaddr, PANEL_TRUSTED_PROXIES):
    # 0 makes DRF use it and never the raw X-Forwarded-For (None would trust the header).
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Atlassian hosting panel API",
    "DESCRIPTION": (
        "Tenants, instances, licenses, hosts and operations. Actions that start remote work "
        "answer 202 with an Operation to poll; send an Idempotency-Key header to retry safely."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI served from our own static files: the panel works offline (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The refusals every operation can answer (401, 403, 429, bad pages and bodies), and times
    # of day as DRF writes them, are added by hooks after the default enum hook.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "panel.api.schema.common_refusals",
        "panel.api.schema.times_of_day",
        # Request bodies take no key they do not declare (an unknown field answers 400).
        "panel.api.schema.strict_request_bodies",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "MembershipRoleEnum": "tenants.models.Membership.Role",
        "HostRoleEnum": "provisioning.models.Host.Role",
        "HostStatusEnum": "provisioning.models.Host.Status",
        "InstanceStatusEnum": "provisioning.models.InstanceStatus",
        "OperationStatusEnum": "provisioning.models.OperationStatus",
        "ServiceTierEnum": "tenants.tiers.ServiceTier",
    },
}

# --- Celery ---------------------------------------------------------------------------------
# Time limits of an operation's task. The soft limit lies above the longest single remote step
# (a home rsync, a pg_dump or pg_restore: PANEL_BACKUP_*_TIMEOUT, 4 h by default), so no step
# is cut short by it; when it fires, handlers roll back (uncancellably), and the hard limit
# leaves that roll-back (which may pull a whole home again) the time of one more long step.
PANEL_OPERATION_LONGEST_STEP = int(env("PANEL_OPERATION_LONGEST_STEP", str(4 * 3600)))
CELERY_TASK_SOFT_TIME_LIMIT = int(
    env("CELERY_TASK_SOFT_TIME_LIMIT", str(PANEL_OPERATION_LONGEST_STEP + 3600))
)
CELERY_TASK_TIME_LIMIT = int(
    env(
        "CELERY_TASK_TIME_LIMIT",
        str(CELERY_TASK_SOFT_TIME_LIMIT + PANEL_OPERATION_LONGEST_STEP + 1800),
    )
)
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest task's hard limit, so Redis never re-delivers a task that is
    # still running on a slow worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 1800}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
# Two queues, each with its own worker pool (docker-compose.yml, README "Workers"): operations
# can run for hours and would otherwise fill every slot while the reaper, the requeue sweeper,
# the backup dispatcher, health checks and notifications wait behind them.
PANEL_CELERY_QUEUE_OPERATIONS = env("PANEL_CELERY_QUEUE_OPERATIONS", "operations")
PANEL_CELERY_QUEUE_HOUSEKEEPING = env("PANEL_CELERY_QUEUE_HOUSEKEEPING", "housekeeping")
# Everything not routed below (periodic and short tasks) goes to the housekeeping queue.
CELERY_TASK_DEFAULT_QUEUE = PANEL_CELERY_QUEUE_HOUSEKEEPING
CELERY_TASK_ROUTES = {
    "provisioning.tasks.operation_run": {"queue": PANEL_CELERY_QUEUE_OPERATIONS},
}
# The beat schedule is not set here: each app registers its periodic jobs from its ready()
# (panel.registry.periodic_job_register) and panel/celery.py builds it once Django is set up.

# --- Panel ----------------------------------------------------------------------------------
# A running operation whose worker has not sent a heartbeat for this long is considered dead.
PANEL_OPERATION_HEARTBEAT_TIMEOUT = timedelta(
    seconds=int(env("PANEL_OPERATION_HEARTBEAT_TIMEOUT", "120"))
)
# A pending operation not claimed for this long is enqueued again (its message was lost).
PANEL_OPERATION_REQUEUE_AFTER = timedelta(seconds=int(env("PANEL_OPERATION_REQUEUE_AFTER", "120")))
PANEL_OPERATION_OUTPUT_LIMIT = 8000
# Extra modules that register operation handlers (tests register diagnostic kinds this way).
PANEL_OPERATION_MODULES = [m for m in (env("PANEL_OPERATION_MODULES") or "").split(",") if m]
PANEL_IMAGE_PREFIX = env("PANEL_IMAGE_PREFIX", "atlassian/")
PANEL_POSTGRES_IMAGE = env("PANEL_POSTGRES_IMAGE", "postgres:15")
# SSH to hosts (provisioning/remote/ssh.py): connect timeout and default command timeout
# (seconds); tries on network errors only, with a first pause that doubles per try.
PANEL_SSH_CONNECT_TIMEOUT = env_float("PANEL_SSH_CONNECT_TIMEOUT", 10)
PANEL_SSH_COMMAND_TIMEOUT = env_float("PANEL_SSH_COMMAND_TIMEOUT", 600)
PANEL_SSH_CONNECT_TRIES = env_int("PANEL_SSH_CONNECT_TRIES", 3)
PANEL_SSH_RETRY_BACKOFF = env_float("PANEL_SSH_RETRY_BACKOFF", 1.0)
PANEL_HOST_DISK_WARNING_PERCENT = int(env("PANEL_HOST_DISK_WARNING_PERCENT", "85"))

# Ordinary events take one line: a 4xx answer is logged without a traceback (client_errors),
# and each process says once that it started (celery's "ready."), not which app versions and
# connections it found on the way.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "sanitize": {"()": "panel.sanitize.SanitizeFilter"},
        "client_errors": {"()": "panel.log_filters.ClientErrorFilter"},
        "broker_hostname": {"()": "panel.log_filters.BrokerHostnameFilter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["client_errors", "sanitize"]}
    },
    "root": {"handlers": ["console"], "level": env("PANEL_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # django-axes announces its version and lock-out rule at INFO in every process.
        "axes": {"level": "WARNING"},
        # "Connected to <broker>" before every worker's "ready."; losing it is a warning.
        "celery.worker.consumer.connection": {"level": "WARNING"},
        "kombu.connection": {"filters": ["broker_hostname"]},
    },
}
# Versions offered besides the catalogue's: product=v1|v2,product=v3 (provisioning/products.py).
PANEL_EXTRA_VERSIONS = env_list("PANEL_EXTRA_VERSIONS")
PANEL_OPERATION_LOG_SEPARATE = env_bool("PANEL_OPERATION_LOG_SEPARATE", default=True)
PANEL_ROLLOUT_TIMEOUT = float(env("PANEL_ROLLOUT_TIMEOUT", "600"))
PANEL_ROLLOUT_POLL_INTERVAL = float(env("PANEL_ROLLOUT_POLL_INTERVAL", "3"))
# How long a rollout waits for an app that answers 503 MAINTENANCE (Jira's start-up held by a
# reindex after an upgrade can take hours on a large instance); this time does not count
# against PANEL_ROLLOUT_TIMEOUT.
PANEL_ROLLOUT_MAINTENANCE_TIMEOUT = env_float("PANEL_ROLLOUT_MAINTENANCE_TIMEOUT", 14400)
# How long an app may answer 500 ERROR before the rollout fails with its answer (instead of
# waiting out PANEL_ROLLOUT_TIMEOUT).
PANEL_ROLLOUT_ERROR_GRACE = env_float("PANEL_ROLLOUT_ERROR_GRACE", 60)
PANEL_DELETED_RETENTION_DAYS = int(env("PANEL_DELETED_RETENTION_DAYS", "30"))
# Host ports (first-last) where instances' non-HTTP ports are published, one per instance and
# unique per host (provisioning/ports.py): Bitbucket's git over SSH, Bamboo's agent broker.
# App hosts' firewalls must let this range in.
PANEL_INSTANCE_PORT_RANGE = env("PANEL_INSTANCE_PORT_RANGE", "20000-20999")
# Instance names Docker resolves on the shared proxy network (service names and the platform's
# containers); names starting with panel- and ending in -app-<n>/-db-<n> are refused as well.
# wal and wal-partial: the WAL areas on backup hosts (a point push under such a name would be
# routed to the WAL area by the backup key's forced command).
PANEL_RESERVED_INSTANCE_NAMES = [
    n.strip()
    for n in (
        env("PANEL_RESERVED_INSTANCE_NAMES")
        or "app,db,proxy,nginx,postgres,panel,host,gateway,localhost,docker,synchrony,"
        "wal,wal-partial"
    ).split(",")
    if n.strip()
]

# --- DNS, ACME and the proxy (certificates app) ----------------------------------------------
# The ACME CA's directory URL; empty: no CA, instances are served with self-signed placeholders.
PANEL_ACME_DIRECTORY = env("PANEL_ACME_DIRECTORY") or ""
# Contact address given to the CA when the panel's account is made.
PANEL_ACME_EMAIL = env("PANEL_ACME_EMAIL") or ""
# CA bundle to verify the ACME server with (empty: the system's trust store).
PANEL_ACME_CA_BUNDLE = env("PANEL_ACME_CA_BUNDLE") or None
# New orders per registered domain in 7 days, kept below the CA's own limit (Let's Encrypt: 50).
PANEL_ACME_WEEKLY_ORDER_BUDGET = env_int("PANEL_ACME_WEEKLY_ORDER_BUDGET", 40)
# ACME HTTP requests: tries per request, the first pause between tries (doubling), the timeout
# in seconds.
PANEL_ACME_TRIES = env_int("PANEL_ACME_TRIES", 4)
PANEL_ACME_BACKOFF = env_float("PANEL_ACME_BACKOFF", 1.0)
PANEL_ACME_TIMEOUT = env_float("PANEL_ACME_TIMEOUT", 120)
# After a failed order the next attempt waits this long, doubled per failure (at most a day).
PANEL_ACME_RETRY_BASE_SECONDS = env_float("PANEL_ACME_RETRY_BASE_SECONDS", 3600)
# Key type of certificates: ec256 or rsa2048.
PANEL_CERTIFICATE_KEY_TYPE = env("PANEL_CERTIFICATE_KEY_TYPE") or "ec256"
# Hostnames outside every managed zone: "customer" (the customer creates the record, the panel
# checks it) or "refuse".
PANEL_DNS_UNMANAGED = env("PANEL_DNS_UNMANAGED") or "customer"
# Nameservers (host[:port], comma-separated) customer-managed records are checked through;
# empty: the system's resolver.
PANEL_DNS_CHECK_NAMESERVERS = env_list("PANEL_DNS_CHECK_NAMESERVERS")
# How long a DNS change may take to be in sync at the provider (seconds), and the first pause
# between polls (Route53 GetChange).
PANEL_DNS_INSYNC_TIMEOUT = env_float("PANEL_DNS_INSYNC_TIMEOUT", 120)
PANEL_DNS_INSYNC_POLL = env_float("PANEL_DNS_INSYNC_POLL", 2)
# A DNS provider account's "Test connection" waits this long for each answer (seconds; one
# retry), while the person who asked waits for the page.
PANEL_DNS_CHECK_TIMEOUT = env_float("PANEL_DNS_CHECK_TIMEOUT", 5)
# Names no instance may take (DNS takeover): in a managed zone, the apex ("@") and these
# leftmost labels; everywhere, the panel's own names (PANEL_BASE_URL, ALLOWED_HOSTS) and these
# full hostnames.
PANEL_DNS_RESERVED_LABELS = [
    n.lower()
    for n in env_list(
        "PANEL_DNS_RESERVED_LABELS",
        "@,www,mail,smtp,imap,pop,mx,ns,ns1,ns2,autodiscover,autoconfig,_acme-challenge,"
        "_dmarc,_domainkey,panel",
    )
]
PANEL_DNS_RESERVED_HOSTNAMES = [n.lower() for n in env_list("PANEL_DNS_RESERVED_HOSTNAMES")]
# The nginx image of the hosts' reverse proxy.
PANEL_PROXY_IMAGE = env("PANEL_PROXY_IMAGE", "nginx:1.27-bookworm")
# The largest request body the proxy passes to an application (nginx client_max_body_size).
PANEL_PROXY_MAX_BODY_SIZE = env("PANEL_PROXY_MAX_BODY_SIZE") or "1024m"
# Proxy timeouts towards the application (seconds): connecting, and waiting for an answer.
PANEL_PROXY_CONNECT_TIMEOUT = env_int("PANEL_PROXY_CONNECT_TIMEOUT", 10)
PANEL_PROXY_READ_TIMEOUT = env_int("PANEL_PROXY_READ_TIMEOUT", 300)
# The Django template an instance's nginx site is rendered from.
PANEL_PROXY_SITE_TEMPLATE = env("PANEL_PROXY_SITE_TEMPLATE") or "certificates/proxy/site.conf"

# --- Notifications (notifications app) -------------------------------------------------------
PANEL_WEBHOOK_ALLOW_PRIVATE = env_bool("PANEL_WEBHOOK_ALLOW_PRIVATE", default=False)
PANEL_WEBHOOK_TIMEOUT = float(env("PANEL_WEBHOOK_TIMEOUT", "10"))
# Webhooks are sent only to these ports (notifications/transports.py).
PANEL_WEBHOOK_PORTS = [int(p) for p in (env("PANEL_WEBHOOK_PORTS") or "80,443").split(",") if p]
# Networks (CIDR) allowed although not public, e.g. an internal receiver; empty by default.
PANEL_WEBHOOK_ALLOWED_NETWORKS = [
    n.strip() for n in (env("PANEL_WEBHOOK_ALLOWED_NETWORKS") or "").split(",") if n.strip()
]
# CA bundle for https webhooks (empty: the system's trust store).
PANEL_WEBHOOK_CA_BUNDLE = env("PANEL_WEBHOOK_CA_BUNDLE") or None
# Test notifications each audience may send per hour (each mails up to 20 addresses).
PANEL_NOTIFICATION_TESTS_PER_HOUR = int(env("PANEL_NOTIFICATION_TESTS_PER_HOUR", "5"))
PANEL_NOTIFICATION_RETRY_DELAYS = [
    int(s) for s in (env("PANEL_NOTIFICATION_RETRY_DELAYS") or "30,120,600,1800,7200").split(",")
]
PANEL_STAFF_NOTIFICATION_EMAILS = [
    e for e in (env("PANEL_STAFF_NOTIFICATION_EMAILS") or "").split(",") if e
]

# --- Backups --------------------------------------------------------------------------------
# Backups at a time per backup host and per app host. Three per backup host run a night of 500
# instances per backup host in 4 h, a third of the window to spare (bench/results/scheduler.md:
# two take 5 h 58 min of 6 h); one per app host, as rrsync copies one directory at a time.
PANEL_BACKUP_MAX_PER_BACKUP_HOST = env_int("PANEL_BACKUP_MAX_PER_BACKUP_HOST", 3)
PANEL_BACKUP_MAX_PER_APP_HOST = env_int("PANEL_BACKUP_MAX_PER_APP_HOST", 1)
# A scheduled run is on time when it starts within its policy's interval after it was due, at
# most this many minutes (the nightly window); later, it is missed (backups.policies.run_missed).
PANEL_BACKUP_WINDOW_MINUTES = env_int("PANEL_BACKUP_WINDOW_MINUTES", 360)
# How many instances of a failed host an evacuation restores at once (backups.evacuate).
PANEL_EVACUATE_PARALLEL = env_int("PANEL_EVACUATE_PARALLEL", 2)


# Automatic evacuation, off by default: "tier1=10,tier2=30" evacuates a host's tier-1 instances
# once it has been unreachable for 10 minutes and its tier-2 ones after 30 (others: by hand).
def _tier_minutes(name: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in env_list(name):
        tier, _, minutes = (part.strip() for part in item.partition("="))
        if tier not in ("tier0", "tier1", "tier2", "tier3") or not minutes.isdigit():
            raise ImproperlyConfigured(
                f"{name}={env(name)!r}: give tier=minutes pairs, e.g. tier1=10,tier2=30."
            )
        found[tier] = int(minutes)
    return found


PANEL_EVACUATE_AUTO_MINUTES = _tier_minutes("PANEL_EVACUATE_AUTO_MINUTES")
# Extra (manual) backups tenant admins may start in 24 hours, per instance and per tenant
# (staff and scheduled/pre-upgrade backups are not counted); 0 = no limit.
PANEL_BACKUP_MANUAL_PER_INSTANCE_PER_DAY = env_int("PANEL_BACKUP_MANUAL_PER_INSTANCE_PER_DAY", 4)
PANEL_BACKUP_MANUAL_PER_TENANT_PER_DAY = env_int("PANEL_BACKUP_MANUAL_PER_TENANT_PER_DAY", 20)
# A new point is refused when the backup host's disk would be fuller than this (percent).
PANEL_BACKUP_DISK_MAX_PERCENT = env_float("PANEL_BACKUP_DISK_MAX_PERCENT", 90)
PANEL_BACKUP_DRILL_INTERVAL_HOURS = env_int("PANEL_BACKUP_DRILL_INTERVAL_HOURS", 24)
# The point every upgrade takes first: "cold" (default) stops the app and leaves it stopped
# until the new version starts, so the point is exactly the state the new version upgrades
# and restoring it loses nothing; "hot" keeps the app up until the new version is deployed
# (shorter downtime; what is written in between is lost if a failed upgrade restores it).
PANEL_UPGRADE_BACKUP_MODE = env("PANEL_UPGRADE_BACKUP_MODE", "cold")
PANEL_BACKUP_RSYNC_BWLIMIT = env_int("PANEL_BACKUP_RSYNC_BWLIMIT", 0)
# rsync's I/O timeout (seconds without data, its --timeout).
PANEL_BACKUP_RSYNC_IO_TIMEOUT = env_int("PANEL_BACKUP_RSYNC_IO_TIMEOUT", 60)
# The longest single remote step of a backup (seconds): a home rsync, its verification pass,
# a database dump (see PANEL_OPERATION_LONGEST_STEP, which the task limits are built on).
PANEL_BACKUP_RSYNC_TIMEOUT = env_int("PANEL_BACKUP_RSYNC_TIMEOUT", 4 * 3600)
PANEL_BACKUP_VERIFY_TIMEOUT = env_int("PANEL_BACKUP_VERIFY_TIMEOUT", 4 * 3600)
PANEL_BACKUP_DUMP_TIMEOUT = env_int("PANEL_BACKUP_DUMP_TIMEOUT", 4 * 3600)
# How long a copy waits while the backup host's rrsync serves another copy of the same app
# host (rrsync allows one at a time per directory), in seconds.
PANEL_BACKUP_RRSYNC_BUSY_WAIT = env_int("PANEL_BACKUP_RRSYNC_BUSY_WAIT", 300)
# Point-in-time recovery (backups.wal): seconds between the app host shipper's passes, how
# long an operation waits for WAL to reach the backup host, and for a replay to finish.
PANEL_WAL_SHIP_INTERVAL = env_int("PANEL_WAL_SHIP_INTERVAL", 5)
PANEL_WAL_SHIP_WAIT = env_int("PANEL_WAL_SHIP_WAIT", 150)
PANEL_WAL_RECOVERY_TIMEOUT = env_int("PANEL_WAL_RECOVERY_TIMEOUT", 4 * 3600)
# An archive that shipped nothing for this long (seconds) is broken: staff are alerted. The
# shipper passes every few seconds, so a few minutes means the receiver or the link is down.
PANEL_WAL_BROKEN_AFTER = env_int("PANEL_WAL_BROKEN_AFTER", 300)
# Hours between scheduled base backups of an archiving instance (0: only on demand). A base
# bounds a restore's replay and lets retention drop the WAL before it.
PANEL_WAL_BASE_INTERVAL_HOURS = env_float("PANEL_WAL_BASE_INTERVAL_HOURS", 24.0)
# Scheduled and extra points of an instance whose WAL is archived carry no pg_dump: their
# database is the archive replayed to the point's second (backups.wal.point_database). Off:
# every point carries a dump, as before archiving.
# A new instance archives its WAL from the start: once its create operation succeeded, the
# panel turns archiving on (a backup.wal_enable operation: the database restarts once, then the
# first base backup). Off: staff turn it on per instance.
PANEL_WAL_ON_CREATE = env_bool("PANEL_WAL_ON_CREATE", default=True)
PANEL_BACKUP_WAL_POINTS = env_bool("PANEL_BACKUP_WAL_POINTS", default=True)
# A cold point of the archive freezes the home in a copy on the app host (a delta rsync while
# the app is stopped) and starts the app before pushing that copy: the downtime is the freeze.
# It costs the home's size once more on the app host's disk (skipped when there is no room).
PANEL_BACKUP_COLD_STAGING = env_bool("PANEL_BACKUP_COLD_STAGING", default=True)
# Days extra, pre-upgrade and safety points are kept besides the retention policy's points.
PANEL_BACKUP_EXTRA_KEEP_DAYS = env_int("PANEL_BACKUP_EXTRA_KEEP_DAYS", 7)
# Restore drills: the app host scratch instances run on (its name; empty: the source's host),
# the domain their hostnames are made in, and the environment they get instead of the
# source's (JSON object; the source's extras could report the copy as production).
PANEL_BACKUP_DRILL_HOST = env("PANEL_BACKUP_DRILL_HOST") or ""
PANEL_BACKUP_DRILL_DOMAIN = env("PANEL_BACKUP_DRILL_DOMAIN") or "drills.panel.invalid"
PANEL_BACKUP_DRILL_EXTRA_ENV: dict[str, str] = json.loads(
    env("PANEL_BACKUP_DRILL_EXTRA_ENV") or "{}"
)
PANEL_BACKUP_ALERT_EMAILS = env_list("PANEL_BACKUP_ALERT_EMAILS")
# Off-site copies (S3-compatible, SSE AES256); off without a bucket. Secrets may be *_FILE.
PANEL_BACKUP_S3_BUCKET = env("PANEL_BACKUP_S3_BUCKET", "")
PANEL_BACKUP_S3_ENDPOINT_URL = env("PANEL_BACKUP_S3_ENDPOINT_URL") or None
PANEL_BACKUP_S3_REGION = env("PANEL_BACKUP_S3_REGION", "us-east-1")
PANEL_BACKUP_S3_ACCESS_KEY_ID = env("PANEL_BACKUP_S3_ACCESS_KEY_ID", "")
PANEL_BACKUP_S3_SECRET_ACCESS_KEY = env("PANEL_BACKUP_S3_SECRET_ACCESS_KEY", "")
PANEL_BACKUP_S3_PREFIX = env("PANEL_BACKUP_S3_PREFIX", "panel-backups")
# The bucket lifecycle rule's backstop: objects older than this many days expire.
PANEL_BACKUP_S3_MAX_AGE_DAYS = env_int("PANEL_BACKUP_S3_MAX_AGE_DAYS", 400)
