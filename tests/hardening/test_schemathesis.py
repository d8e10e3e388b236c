"""The API keeps its own OpenAPI contract under generated input (Schemathesis).

The schema is loaded from the panel's WSGI app (``/api/schema/``, no network) and every
operation in it is called with positive and negative generated input, once as a customer
(Alice: admin of Acme, with Globex's data present), once as support staff (Sam) and once as a
platform admin (Pat), each through a write token. Every response must:

- never be a 5xx;
- use a status code the schema documents for that operation;
- carry the documented content type, and a body that validates against the documented schema.

Path ids are drawn from a fixed set of real rows (the caller's, another tenant's, and unknown
ones), so the calls reach real objects rather than only 404s. Each call runs in a savepoint
that is rolled back, so one example's writes (a revoked token, a deleted membership, a started
operation) never change what the next one sees; runs are seeded and repeatable.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backups.models import Backup, BackupPolicy, RestoreRequest
from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP
from provisioning.models import (
    AtlassianInstance,
    Host,
    License,
    Operation,
    OperationStep,
)
from tenants.models import ApiToken, Membership, Tenant

pytestmark = pytest.mark.django_db

# Generated examples per operation, role and mode (positive, negative). The coverage phase
# (every boundary value of every field: thousands of requests per role) is off by default to
# keep this under a minute or two; PANEL_SCHEMATHESIS_DEEP=1 turns it on for a longer run.
MAX_EXAMPLES = int(os.environ.get("PANEL_SCHEMATHESIS_EXAMPLES", "8"))
DEEP = os.environ.get("PANEL_SCHEMATHESIS_DEEP", "") == "1"
SEED = 20260107

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"coverage": {"enabled": DEEP}, "stateful": {"enabled": False}},
    }
)

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=CONFIG)


def _id(name: str) -> uuid.UUID:
    """A fixed UUID per fixture row, so generated paths can name real objects."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"panel-schemathesis:{name}")


ACME, GLOBEX = _id("tenant-acme"), _id("tenant-globex")
APP_HOST, BACKUP_HOST, NEW_HOST = _id("host-app"), _id("host-backup"), _id("host-new")
ACME_JIRA, ACME_WIKI, ACME_BROKEN = _id("acme-jira"), _id("acme-wiki"), _id("acme-broken")
GLOBEX_WIKI = _id("globex-wiki")
ACME_LICENSE, GLOBEX_LICENSE = _id("license-acme"), _id("license-globex")
OP_ACME_DONE, OP_ACME_PENDING = _id("op-acme-done"), _id("op-acme-pending")
OP_GLOBEX, OP_HOST = _id("op-globex"), _id("op-host")
MEMBER_ALICE, MEMBER_BOB, MEMBER_CHARLIE = _id("m-alice"), _id("m-bob"), _id("m-charlie")
TOKEN_ALICE_SPARE, TOKEN_CHARLIE = _id("token-alice-spare"), _id("token-charlie")
POLICY_ACME, POLICY_GLOBEX = _id("policy-acme"), _id("policy-globex")
POINT_ACME, POINT_GLOBEX = _id("point-acme"), _id("point-globex")
RESTORE_REQUEST_ACME = _id("restore-request-acme")
UNKNOWN = _id("nobody")

# Which real ids a path's ``{id}`` may be replaced with, by resource.
KNOWN_IDS: dict[str, list[uuid.UUID]] = {
    "tenants": [ACME, GLOBEX],
    "hosts": [APP_HOST, BACKUP_HOST, NEW_HOST],
    "instances": [ACME_JIRA, ACME_WIKI, ACME_BROKEN, GLOBEX_WIKI],
    "licenses": [ACME_LICENSE, GLOBEX_LICENSE],
    "operations": [OP_ACME_DONE, OP_ACME_PENDING, OP_GLOBEX, OP_HOST],
    "memberships": [MEMBER_ALICE, MEMBER_BOB, MEMBER_CHARLIE],
    "tokens": [TOKEN_ALICE_SPARE, TOKEN_CHARLIE],
    "backups": [POINT_ACME, POINT_GLOBEX],
    "backup-policies": [POLICY_ACME, POLICY_GLOBEX],
    "restore-requests": [RESTORE_REQUEST_ACME],
}


@schema.hook("flatmap_path_parameters")
def _known_ids(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Swap a well-formed generated ``id`` for a real row's id most of the time."""
    if not path_parameters or "id" not in path_parameters:
        return st.just(path_parameters)
    value = path_parameters["id"]
    resource = context.operation.path.split("/")[2]
    try:
        uuid.UUID(str(value))
    except ValueError:
        return st.just(path_parameters)  # a malformed id stays: the negative case is the point
    ids = [str(i) for i in KNOWN_IDS.get(resource, [])] + [str(UNKNOWN), str(value)]
    return st.sampled_from(ids).map(lambda chosen: {**path_parameters, "id": chosen})


# --- the world the calls see ------------------------------------------------------------------


def _user(name: str, *groups: str) -> User:
    # Prefixed: the module's rows outlive each test, so they must not collide with the shared
    # fixtures' Alice, Sam, ... that other tests here create.
    username = f"fuzz-{name}"
    user = User.objects.create_user(username, f"{username}@example.com", "not-used-here")
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def _token(user: User, tenant: Tenant | None, *, pk: uuid.UUID | None = None) -> str:
    secret, prefix, key_hash = ApiToken.generate()
    ApiToken.objects.create(
        id=pk or uuid.uuid4(),
        user=user,
        tenant=tenant,
        name=f"{user.username} write",
        scope=ApiToken.Scope.WRITE,
        prefix=prefix,
        key_hash=key_hash,
    )
    return secret


def _instance(pk: uuid.UUID, tenant: Tenant, name: str, host: Host | None, **fields: Any) -> Any:
    return AtlassianInstance.objects.create(
        id=pk,
        tenant=tenant,
        name=name,
        hostname=f"{name}.example.com",
        host=host,
        product=fields.pop("product", "jira-software"),
        version=fields.pop("version", "9.12.0"),
        db_name=name.replace("-", "_"),
        db_user=name.replace("-", "_"),
        db_password=f"pw-{name}",
        **fields,
    )


def _world() -> dict[str, str]:
    """Two tenants with instances, licenses, operations, members and hosts; returns the write
    tokens of Alice (Acme admin), Sam (support) and Pat (platform admin)."""
    acme = Tenant.objects.create(
        id=ACME, name="Acme", slug="fuzz-acme", contact_email="ops@acme.example"
    )
    globex = Tenant.objects.create(
        id=GLOBEX, name="Globex", slug="fuzz-globex", contact_email="it@globex.example"
    )
    alice, bob, charlie = _user("alice"), _user("bob"), _user("charlie")
    sam, pat = _user("sam", SUPPORT_GROUP), _user("pat", PLATFORM_ADMIN_GROUP)
    Membership.objects.create(id=MEMBER_ALICE, user=alice, tenant=acme, role="admin")
    Membership.objects.create(id=MEMBER_BOB, user=bob, tenant=acme, role="viewer")
    Membership.objects.create(id=MEMBER_CHARLIE, user=charlie, tenant=globex, role="admin")

    backup = Host.objects.create(
        id=BACKUP_HOST,
        name="fuzz-backup",
        role="backup",
        address="10.0.0.20",
        status="ready",
    )
    app = Host.objects.create(
        id=APP_HOST,
        name="fuzz-app",
        role="app",
        address="10.0.0.10",
        status="ready",
        backup_host=backup,
        memory_mb=65536,
        cpu_count=16,
        disk_total_bytes=500 * 1024**3,
        disk_free_bytes=400 * 1024**3,
    )
    Host.objects.create(
        id=NEW_HOST,
        name="fuzz-new",
        role="app",
        address="10.0.0.30",
        status="enrolled",
        seen_host_key_fingerprint="SHA256:" + "A" * 43,
        seen_host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExample",
    )

    jira = _instance(ACME_JIRA, acme, "fuzz-acme-jira", app, status="running")
    _instance(
        ACME_WIKI,
        acme,
        "fuzz-acme-wiki",
        app,
        status="stopped",
        product="confluence",
        version="8.5.0",
    )
    _instance(ACME_BROKEN, acme, "fuzz-acme-broken", None, status="failed")
    wiki = _instance(
        GLOBEX_WIKI,
        globex,
        "fuzz-globex-wiki",
        app,
        status="running",
        product="confluence",
        version="8.5.0",
    )
    soon = timezone.now().date() + timedelta(days=20)
    License.objects.create(
        id=ACME_LICENSE,
        instance=jira,
        product="jira-software",
        key="AAAB-acme-license",
        sen="SEN-1",
        expiry_date=soon,
    )
    License.objects.create(
        id=GLOBEX_LICENSE,
        instance=wiki,
        product="confluence",
        key="AAAB-globex-license",
        sen="SEN-2",
        expiry_date=soon,
    )

    done = Operation.objects.create(
        id=OP_ACME_DONE,
        kind="instance.create",
        tenant=acme,
        instance=jira,
        host=app,
        requested_by=alice,
        status="succeeded",
        params={"db_password": "pw"},
        result={"url": "https://acme-jira.example.com"},
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    for i in range(3):
        OperationStep.objects.create(
            operation=done,
            message=f"step {i}",
            command="true",
            exit_code=0,
            duration_ms=5,
            output="ok",
        )
    Operation.objects.create(
        id=OP_ACME_PENDING, kind="instance.restart", tenant=acme, instance=jira, requested_by=alice
    )
    Operation.objects.create(
        id=OP_GLOBEX,
        kind="instance.stop",
        tenant=globex,
        instance=wiki,
        requested_by=charlie,
        status="failed",
        error="it broke",
    )
    Operation.objects.create(
        id=OP_HOST,
        kind="host.health",
        host=app,
        requested_by=pat,
        status="running",
        started_at=timezone.now(),
    )

    for policy_id, point_id, instance in (
        (POLICY_ACME, POINT_ACME, jira),
        (POLICY_GLOBEX, POINT_GLOBEX, wiki),
    ):
        BackupPolicy.objects.create(id=policy_id, instance=instance)
        taken = timezone.now() - timedelta(hours=3)
        Backup.objects.create(
            id=point_id,
            instance=instance,
            backup_host=backup,
            app_host=app,
            kind="scheduled",
            status="succeeded",
            point_name=taken.strftime("%Y%m%dT%H%M%SZ"),
            label="daily.0",
            taken_at=taken,
            product=instance.product,
            version=instance.version,
            started_at=taken,
            finished_at=taken + timedelta(minutes=2),
            duration_seconds=120.0,
        )
    RestoreRequest.objects.create(
        id=RESTORE_REQUEST_ACME,
        instance=jira,
        requested_by=alice,
        note="please restore last night's point",
    )

    _token(alice, acme, pk=TOKEN_ALICE_SPARE)
    _token(charlie, globex, pk=TOKEN_CHARLIE)
    return {
        "customer": _token(alice, acme),
        "support": _token(sam, None),
        "platform-admin": _token(pat, None),
    }


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[dict[str, str]]:
    """The rows every test here reads, built once for the module inside a transaction that is
    rolled back at its end (each test, and each call, nests a savepoint inside it)."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield _world()
        transaction.set_rollback(True)


@pytest.fixture(scope="module")
def in_process_wsgi() -> Iterator[None]:
    """Requests run in the test's own transaction: as Django's test client does, keep the
    request signals from closing that connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(
    world: dict[str, str], in_process_wsgi: None, db: None, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The role tokens; operations are only started here, nothing may reach a broker."""
    monkeypatch.setattr("panel.operations.operation_enqueue", lambda operation_id: None)
    return world


def _call_and_validate(case: Any, token: str) -> None:
    """One generated request in a savepoint that is rolled back, with the contract checks."""
    with transaction.atomic():
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
        transaction.set_rollback(True)


HYPOTHESIS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@schema.parametrize()
@HYPOTHESIS
def test_the_api_keeps_its_contract_for_a_customer(case, tokens):
    _call_and_validate(case, tokens["customer"])


@schema.parametrize()
@HYPOTHESIS
def test_the_api_keeps_its_contract_for_support_staff(case, tokens):
    _call_and_validate(case, tokens["support"])


@schema.parametrize()
@HYPOTHESIS
def test_the_api_keeps_its_contract_for_a_platform_admin(case, tokens):
    _call_and_validate(case, tokens["platform-admin"])


# --- regressions of what the runs above found --------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/instances/not-a-uuid/", "/api/hosts/0/provision/", "/api/no-such-thing/"]
)
def test_an_api_path_no_route_matches_answers_json_not_an_html_page(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_page_path_no_route_matches_still_answers_the_html_page(client):
    response = client.get("/instances/not-a-uuid/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_the_served_schema_documents_the_refusals_every_operation_can_answer(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            codes = set(operation["responses"])
            assert {"401", "403", "429"} <= codes, (method, path)
            if method != "get":
                assert {"400", "409"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
    assert {"400", "404"} <= set(paths["/api/instances/"]["get"]["responses"])
    assert {"413", "415"} <= set(paths["/api/instances/"]["post"]["responses"])
    assert "403" in paths["/api/hosts/"]["get"]["responses"]


def test_a_nul_byte_in_a_search_is_a_400_with_a_detail_object(api, db):
    from django.contrib.auth.models import Group, User

    # (not the `sam` fixture: this module's committed world already has a user of that name)
    support = User.objects.create_user("nul-byte-support")
    support.groups.add(Group.objects.get_or_create(name="support")[0])
    response = api(support).get("/api/instances/?search=%00")
    assert response.status_code == 400
    assert response.json() == {"detail": "Null characters are not allowed."}


def test_times_of_day_are_documented_as_sent_without_an_offset(client):
    schema_text = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert '"format": "time"' not in schema_text and '"format":"time"' not in schema_text
    window = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"][
        "schemas"
    ]["BackupPolicy"]["properties"]["window_start"]
    assert re.fullmatch(window["pattern"], "01:00:00")
