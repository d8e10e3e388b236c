"""Tenant isolation over every API route and verb, generated from the routers.

Charlie (admin of Globex) gets 404 for each of Acme's objects on every verb, and changes
nothing; Bob (viewer in Acme) reads them but every change is 403; anonymous callers get 401.
A new detail route without an object below fails ``test_every_detail_route_is_covered``.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern

from provisioning.api.urls import router as provisioning_router
from provisioning.models import AtlassianInstance, License, Operation
from tenants.api.urls import router as tenants_router
from tenants.models import ApiToken, AuditEvent, Membership, Tenant

pytestmark = pytest.mark.django_db

# One object of Acme per route basename; the token is Alice's own (private to her).
OBJECTS = {
    "api-tenant": lambda f: f["acme"],
    "api-membership": lambda f: Membership.objects.get(user=f["alice"]),
    "api-token": lambda f: ApiToken.objects.get(user=f["alice"]),
    "api-instance": lambda f: f["acme_jira"],
    "api-license": lambda f: f["acme_license"],
    "api-operation": lambda f: f["acme_operation"],
}
# A body that would be valid for any of the routes, so refusals are not validation errors.
BODY = {"version": "9.17.0", "confirm": "acme-jira", "heap_min_mb": 1024, "heap_max_mb": 4096,
        "name": "Renamed", "slug": "renamed", "contact_email": "x@example.com"}
UNSAFE = {"post", "put", "patch", "delete"}


def _routes(router) -> list[tuple[str, str, str]]:
    """(basename-ish url name, path template, method) for every detail route and verb."""
    routes = []
    for pattern in router.urls:
        assert isinstance(pattern, URLPattern)
        if "<uuid:pk>" not in str(pattern.pattern):
            continue
        template = "/api/" + str(pattern.pattern).replace("<uuid:pk>", "{pk}")
        for method in pattern.callback.actions:
            routes.append((pattern.name, template, method))
    return routes


DETAIL_ROUTES = _routes(tenants_router) + _routes(provisioning_router)
LIST_URLS = ["/api/tenants/", "/api/memberships/", "/api/tokens/", "/api/instances/",
             "/api/licenses/", "/api/operations/"]


def _basename(url_name: str) -> str:
    return next(b for b in OBJECTS if url_name.startswith(b + "-"))


@pytest.fixture
def acme_operation(acme_jira) -> Operation:
    return Operation.objects.create(kind="instance.restart", tenant=acme_jira.tenant,
                                    instance=acme_jira, status="pending",
                                    lock_key=f"instance:{acme_jira.pk}")


@pytest.fixture
def world(alice, bob, charlie, acme, acme_jira, acme_license, acme_operation, make_token,
          globex_wiki) -> dict:
    make_token(alice, acme)
    return {"alice": alice, "bob": bob, "charlie": charlie, "acme": acme,
            "acme_jira": acme_jira, "acme_license": acme_license,
            "acme_operation": acme_operation}


def _snapshot() -> tuple:
    return (
        list(Tenant.objects.values_list("name", "slug").order_by("slug")),
        list(Membership.objects.values_list("user__username", "role").order_by("user__username")),
        list(ApiToken.objects.values_list("revoked_at", flat=True)),
        list(AtlassianInstance.objects.values_list("name", "status", "version").order_by("name")),
        License.objects.count(),
        list(Operation.objects.values_list("status", "cancel_requested")),
        AuditEvent.objects.count(),
    )


def test_every_detail_route_is_covered():
    assert DETAIL_ROUTES, "no detail routes found"
    for name, _, _ in DETAIL_ROUTES:
        assert any(name.startswith(b + "-") for b in OBJECTS), f"{name} has no isolation case"


@pytest.mark.parametrize(("name", "template", "method"), DETAIL_ROUTES,
                         ids=[f"{m.upper()} {t}" for _, t, m in DETAIL_ROUTES])
def test_a_foreign_tenant_gets_404_on_every_verb(api, world, name, template, method):
    obj = OBJECTS[_basename(name)](world)
    before = _snapshot()
    response = getattr(api(world["charlie"]), method)(template.format(pk=obj.pk), BODY,
                                                      format="json")
    assert response.status_code == 404, response.content
    assert str(obj.pk) not in response.content.decode()
    assert _snapshot() == before


@pytest.mark.parametrize(("name", "template", "method"), DETAIL_ROUTES,
                         ids=[f"{m.upper()} {t}" for _, t, m in DETAIL_ROUTES])
def test_a_viewer_reads_but_cannot_change(api, world, name, template, method):
    basename = _basename(name)
    obj = OBJECTS[basename](world)
    before = _snapshot()
    response = getattr(api(world["bob"]), method)(template.format(pk=obj.pk), BODY,
                                                  format="json")
    if basename == "api-token":
        # tokens are private to their owner, even within one tenant
        assert response.status_code == 404, response.content
        assert _snapshot() == before
    elif method in UNSAFE:
        assert response.status_code == 403, response.content
        assert _snapshot() == before
    else:
        assert response.status_code == 200


@pytest.mark.parametrize(("name", "template", "method"), DETAIL_ROUTES,
                         ids=[f"{m.upper()} {t}" for _, t, m in DETAIL_ROUTES])
def test_anonymous_callers_get_401_everywhere(api, world, name, template, method):
    obj = OBJECTS[_basename(name)](world)
    before = _snapshot()
    response = getattr(api(), method)(template.format(pk=obj.pk), BODY, format="json")
    assert response.status_code == 401
    assert _snapshot() == before


@pytest.mark.parametrize("url", LIST_URLS)
def test_lists_never_show_a_foreign_tenants_rows(api, world, url):
    body = api(world["charlie"]).get(url).content.decode()
    for key in ("acme", "acme_jira", "acme_license", "acme_operation"):
        assert str(world[key].pk) not in body
    assert "Acme" not in body and "acme-jira" not in body


@pytest.mark.parametrize("url", LIST_URLS)
def test_support_lists_every_tenants_rows_except_private_tokens(api, world, sam, url):
    body = api(sam).get(url).content.decode()
    if url == "/api/tokens/":
        assert body.count('"id"') == 0
    else:
        assert "Acme" in body or str(world["acme_jira"].pk) in body


def test_support_reads_any_tenants_objects(api, world, sam):
    client = api(sam)
    for name, template, method in DETAIL_ROUTES:
        basename = _basename(name)
        if method != "get" or basename == "api-token":
            continue
        obj = OBJECTS[basename](world)
        assert client.get(template.format(pk=obj.pk)).status_code == 200, template


def test_support_sees_every_tenant_but_not_hosts(api, world, sam, app_host):
    client = api(sam)
    assert client.get("/api/hosts/").status_code == 403
    assert client.get(f"/api/hosts/{app_host.pk}/").status_code in (403, 404)
    instance = client.get(f"/api/instances/{world['acme_jira'].pk}/").json()
    assert "address" not in instance and "127.0.0.11" not in str(instance)
