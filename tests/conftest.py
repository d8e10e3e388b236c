"""Shared fixtures. People follow Healthchecks' convention: Alice administers tenant Acme,
Bob is a viewer in Acme, Charlie administers Globex (no access to Acme), Sam is support staff
and Pat a platform admin.

Fixtures shared by several test packages live in ``tests/support`` modules loaded below as
pytest plugins (pytest allows ``pytest_plugins`` only in this root conftest); no test module
or conftest imports fixtures from another conftest. Plain helpers (``make_instance``,
``PASSWORD`` …) are imported from ``tests.support`` modules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP, access_for_user
from provisioning.models import AtlassianInstance, Host, License
from tenants.models import ApiToken, Membership, Tenant
from tests.support.factories import make_instance, make_user

pytest_plugins = [
    "tests.support.lab",  # the lab's hosts, enrolment, inline operations, compose cleanup
    "tests.support.lab_edge",  # the lab's BIND, pebble and proxy; moto's Route53
    "tests.support.mail_sink",  # the lab's SMTP/POP sink (mail_sink)
    "tests.support.smtp",  # a real SMTP server for the panel's own mail (smtp_server)
]

# Fixtures that reach the lab's shared hosts, proxies and sink. A test using one (directly or
# through another fixture) is a lab test whatever its own marks say: `-m "not lab"` must never
# touch the lab, because scripts/test runs those tests beside the lab ones, in another process.
LAB_FIXTURES = {"lab_state", "lab", "mail_sink"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


@pytest.fixture
def acme(db) -> Tenant:
    return Tenant.objects.create(name="Acme", slug="acme", contact_email="ops@acme.example")


@pytest.fixture
def globex(db) -> Tenant:
    return Tenant.objects.create(name="Globex", slug="globex", contact_email="it@globex.example")


@pytest.fixture
def alice(acme) -> User:
    user = make_user("alice")
    Membership.objects.create(user=user, tenant=acme, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def bob(acme) -> User:
    user = make_user("bob")
    Membership.objects.create(user=user, tenant=acme, role=Membership.Role.VIEWER)
    return user


@pytest.fixture
def charlie(globex) -> User:
    user = make_user("charlie")
    Membership.objects.create(user=user, tenant=globex, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def sam(db) -> User:
    return make_user("sam", SUPPORT_GROUP)


@pytest.fixture
def pat(db) -> User:
    return make_user("pat", PLATFORM_ADMIN_GROUP)


@pytest.fixture
def app_host(db) -> Host:
    return Host.objects.create(
        name="app-one",
        role=Host.Role.APP,
        address="127.0.0.11",
        ssh_port=2222,
        data_root="/srv/atlassian",
        status=Host.Status.READY,
        memory_mb=16384,
        cpu_count=4,
        disk_total_bytes=200 * 1024**3,
        disk_free_bytes=150 * 1024**3,
    )


@pytest.fixture
def acme_jira(acme) -> AtlassianInstance:
    return make_instance(acme, "acme-jira")


@pytest.fixture
def globex_wiki(globex) -> AtlassianInstance:
    return make_instance(globex, "globex-wiki", product="confluence", version="8.5.0")


@pytest.fixture
def acme_license(acme_jira) -> License:
    return License.objects.create(
        instance=acme_jira,
        product="jira-software",
        key="AAAB-secret-license-key",
        sen="SEN-123",
        expiry_date=timezone.now().date() + timedelta(days=20),
    )


@pytest.fixture
def api() -> Callable[..., APIClient]:
    """``api(user)`` is a session-authenticated client; ``api(token=secret)`` uses a token."""

    def make(user: User | None = None, token: str | None = None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=None)
            client.force_login(user)
        if token is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def browser() -> Callable[[Any], Client]:
    """``browser(user)`` is a client logged in as ``user``; ``browser(None)`` is anonymous."""

    def make(user: Any = None) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def make_token() -> Callable[..., str]:
    """``make_token(user, tenant=..., scope="write")`` returns a clear token secret."""

    def make(
        user: User, tenant: Tenant | None = None, scope: str = "write", expires_at=None
    ) -> str:
        secret, prefix, key_hash = ApiToken.generate()
        ApiToken.objects.create(
            user=user,
            tenant=tenant,
            name="test",
            scope=scope,
            prefix=prefix,
            key_hash=key_hash,
            expires_at=expires_at,
        )
        return secret

    return make


@pytest.fixture
def access_of() -> Callable:
    return access_for_user


@pytest.fixture(scope="session")
def celery_worker_proc(django_db_setup, django_db_blocker):
    """The session's real Celery workers on the test database, one on the operations queue and
    one on the housekeeping queue, as in production (restarted if killed)."""
    from pathlib import Path

    import redis
    from django.conf import settings
    from django.db import connection

    from tests.support.worker import WorkerPools, run_queue_keys

    # Other test runs share this Redis database: drop only this run's queues (left over from
    # an earlier run with the same pid), never theirs.
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(*run_queue_keys())
    worker = WorkerPools(
        connection.settings_dict["NAME"], Path(settings.BASE_DIR) / "test-artifacts"
    )
    worker.start()
    yield worker
    worker.stop()
    broker.delete(*run_queue_keys())


@pytest.fixture
def worker(celery_worker_proc, transactional_db):
    """The running real worker; tests using it commit their rows (transactional_db)."""
    if not celery_worker_proc.alive:
        celery_worker_proc.start()
    return celery_worker_proc
