"""A request body carries only the fields its route takes: any other key answers 400 naming it.

The walker of ``tests.support.isolation`` lists every API route; each POST, PUT and PATCH is
sent a body with a key no route takes, as a platform admin (who may use every route, so no
permission answers first), on a real object for routes with an id. Each must answer 400 with
that key among the field messages and change nothing. A new write route without an object
here fails ``test_every_write_route_is_walked``.
"""

from __future__ import annotations

import pytest
from django.urls import resolve

from backups.services import policy_for, restore_request_create
from certificates.models import DnsProviderAccount
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Operation
from tenants.models import ApiToken, AuditEvent
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.isolation import ApiRoute, api_routes

pytestmark = pytest.mark.django_db

UNKNOWN = "not_a_field_of_any_route"
WRITES = ("post", "put", "patch")

# The object a write route with an id is called on (a key of the ``world`` fixture).
OBJECTS = {
    "api-backup-policy-detail": "backup_policy",
    "api-backup-restore": "backup",
    "api-dns-account-check": "dns_account",
    "api-dns-account-detail": "dns_account",
    "api-evacuation-purge-fenced": "host",
    "api-evacuation-start": "host",
    "api-host-health": "host",
    "api-host-provision": "host",
    "api-host-trust": "host",
    "api-instance-certificate-renew": "instance",
    "api-instance-delete": "instance",
    "api-instance-dns-update": "instance",
    "api-instance-outbound-enable": "instance",
    "api-instance-proxy-deploy": "instance",
    "api-instance-resize": "instance",
    "api-instance-restart": "instance",
    "api-instance-retry": "instance",
    "api-instance-start": "instance",
    "api-instance-stop": "instance",
    "api-instance-upgrade": "instance",
    "api-notification-setting-detail": "tenant",
    "api-notification-setting-test": "tenant",
    "api-operation-cancel": "operation",
    "api-point-in-time-base-backup": "instance",
    "api-point-in-time-enable": "instance",
    "api-point-in-time-restore": "instance",
    "api-restore-request-handle": "restore_request",
    "api-tenant-detail": "tenant",
    "api-token-revoke": "token",
}


def _answers(route: ApiRoute, method: str) -> bool:
    """Whether the route's view answers ``method`` at all (a router maps PUT and PATCH for a
    ModelViewSet whose ``http_method_names`` then refuses them with 405)."""
    view = resolve(route.template.replace("{pk}", "00000000-0000-4000-8000-000000000000")).func
    view_class = getattr(view, "cls", None)
    return method in getattr(view_class, "http_method_names", [method])


ROUTES = api_routes()
WRITE_ROUTES = [(r, m) for r in ROUTES for m in r.methods if m in WRITES and _answers(r, m)]


@pytest.fixture
def world(alice, pat, acme, acme_jira, app_host, make_token) -> dict:
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    make_token(pat)
    point = make_point(acme_jira)
    return {
        "tenant": acme,
        "token": ApiToken.objects.get(user=pat),
        "instance": acme_jira,
        "operation": Operation.objects.create(
            kind="instance.restart",
            tenant=acme,
            instance=acme_jira,
            status="pending",
            lock_key=f"instance:{acme_jira.pk}",
        ),
        "host": app_host,
        "backup": point,
        "backup_policy": policy_for(acme_jira),
        "restore_request": restore_request_create(
            actor=access_for_user(alice), instance=acme_jira, backup=point, note="x"
        ),
        "dns_account": DnsProviderAccount.objects.create(
            name="acme-route53", kind=DnsProviderAccount.Kind.ROUTE53
        ),
    }


def test_every_write_route_is_walked():
    with_id = {r.name for r, _ in WRITE_ROUTES if r.takes_pk}
    assert with_id == set(OBJECTS), "give each write route with an id an object in OBJECTS"
    assert len(WRITE_ROUTES) >= 28  # the walker found the routes (not an empty list)


@pytest.mark.parametrize(
    ("route", "method"), WRITE_ROUTES, ids=[f"{m.upper()} {r.template}" for r, m in WRITE_ROUTES]
)
def test_an_unknown_field_answers_400_naming_it(
    api, pat, world, route: ApiRoute, method: str
) -> None:
    url = route.url(world[OBJECTS[route.name]].pk if route.takes_pk else None)
    operations, audit = Operation.objects.count(), AuditEvent.objects.count()
    response = getattr(api(pat), method)(url, {UNKNOWN: "x"}, format="json")
    assert response.status_code == 400, response.content
    messages = response.json()[UNKNOWN]
    assert messages[0].startswith("Unknown field; this request takes"), messages
    assert (Operation.objects.count(), AuditEvent.objects.count()) == (operations, audit)


def test_the_message_lists_the_fields_a_route_takes_and_other_errors_stay(api, pat, world):
    response = api(pat).post(
        f"/api/instances/{world['instance'].pk}/upgrade/", {"versoin": "9.17.0"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "version": ["This field is required."],
        "versoin": ["Unknown field; this request takes: version."],
    }
    bodiless = api(pat).post(
        f"/api/instances/{world['instance'].pk}/restart/", {"force": True}, format="json"
    )
    assert bodiless.json() == {"force": ["Unknown field; this request takes no fields."]}
    # An empty body (or none) is what a body-less action takes.
    assert api(pat).post(f"/api/operations/{world['operation'].pk}/cancel/").status_code == 200


def test_the_browsable_apis_csrf_token_in_a_form_post_is_not_an_unknown_field(api, pat, world):
    # DRF's browsable API posts HTML forms, which carry Django's csrfmiddlewaretoken.
    url = f"/api/operations/{world['operation'].pk}/cancel/"
    assert api(pat).post(url, {"csrfmiddlewaretoken": "x"}).status_code == 200
    refused = api(pat).post(url, {"csrfmiddlewaretoken": "x", "why": "y"})
    assert refused.status_code == 400 and list(refused.json()) == ["why"]


def test_the_schema_says_request_bodies_take_no_other_keys(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]
    bodies = 0
    for methods in schema["paths"].values():
        for operation in methods.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                name = media["schema"]["$ref"].rsplit("/", 1)[-1]
                assert components[name]["additionalProperties"] is False, name
                bodies += 1
    assert bodies >= 20
    # Response shapes stay open, and a free-form JSON field keeps its own rule.
    assert "additionalProperties" not in components["Instance"]
