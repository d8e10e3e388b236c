"""Tenant isolation over every API route and verb, generated from the root URLconf.

``tests.support.isolation.api_routes()`` walks every route under ``/api/`` (all routers and
plain paths: tenants, provisioning, hosts, backups, certificates, the schema). Charlie (admin
of Globex) gets 404 for each of Acme's objects on every verb, and changes nothing; staff-only
routes (hosts, DNS accounts and zones, drills, the DR dashboard, handling restore requests)
refuse customers with 403 and change nothing; lists never show Acme's rows to Charlie; Bob
(viewer in Acme) reads but every change is 403; anonymous callers get 401. A new route without
a rule in ``RULES`` fails ``test_every_api_route_has_a_rule``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.test import override_settings
from django.urls import include, path
from django.utils import timezone
from django.views import View

from backups.models import Backup, BackupPolicy, Restore, RestoreDrill, RestoreRequest
from backups.services import policy_for, restore_request_create
from certificates.models import Certificate, DnsProviderAccount, DnsZone
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Host, License, Operation
from tenants.models import ApiToken, AuditEvent, Invitation, Membership, Tenant
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.isolation import ApiRoute, RouteNotUnderstood, api_routes

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Rule:
    """How one route treats callers: the object its ``pk`` names, and whether only staff may
    use it (customers get 403, whatever the object)."""

    obj: str = ""  # a key of the ``world`` fixture; "" for routes without an id
    staff_only: bool = False


RULES: dict[str, Rule] = {
    # tenants
    "api-me": Rule(),
    "api-tenant-list": Rule(),
    "api-tenant-detail": Rule("tenant"),
    "api-membership-list": Rule(),
    "api-membership-detail": Rule("membership"),
    # invitations by email: a viewer is refused (tests/tenants/test_invitations.py)
    "api-invitation-list": Rule(),
    "api-invitation-detail": Rule("invitation"),
    "api-token-list": Rule(),
    "api-token-detail": Rule("token"),
    "api-token-revoke": Rule("token"),
    "api-audit-event-list": Rule(),
    "api-audit-event-export": Rule(),
    # provisioning
    "api-instance-list": Rule(),
    "api-instance-detail": Rule("instance"),
    "api-instance-logs": Rule("instance"),
    "api-instance-usage": Rule("instance"),
    "api-instance-delete": Rule("instance"),
    "api-instance-resize": Rule("instance"),
    "api-instance-restart": Rule("instance"),
    "api-instance-retry": Rule("instance"),
    "api-instance-outbound-enable": Rule("instance", staff_only=True),
    "api-instance-start": Rule("instance"),
    "api-instance-stop": Rule("instance"),
    "api-instance-upgrade": Rule("instance"),
    "api-license-list": Rule(),
    "api-license-detail": Rule("license"),
    "api-operation-list": Rule(),
    "api-operation-detail": Rule("operation"),
    "api-operation-cancel": Rule("operation"),
    "api-operation-steps": Rule("operation"),
    # hosts: platform admins only, and no tenant's objects
    "api-host-list": Rule(staff_only=True),
    "api-host-detail": Rule("host", staff_only=True),
    "api-host-health": Rule("host", staff_only=True),
    "api-host-provision": Rule("host", staff_only=True),
    "api-host-trust": Rule("host", staff_only=True),
    "api-host-usage": Rule("host", staff_only=True),
    # backups
    "api-backup-list": Rule(),
    "api-backup-detail": Rule("backup"),
    "api-backup-restore": Rule("backup"),
    "api-backup-policy-list": Rule(),
    "api-backup-policy-detail": Rule("backup_policy"),
    "api-restore-list": Rule(),
    "api-restore-detail": Rule("restore"),
    "api-restore-drill-list": Rule(),
    "api-restore-drill-detail": Rule("restore_drill"),
    "api-restore-request-list": Rule(),
    "api-restore-request-detail": Rule("restore_request"),
    "api-restore-request-handle": Rule("restore_request"),
    "api-dr-dashboard": Rule(staff_only=True),
    "api-point-in-time-detail": Rule("instance"),
    "api-point-in-time-enable": Rule("instance"),
    "api-point-in-time-base-backup": Rule("instance"),
    "api-point-in-time-restore": Rule("instance"),
    # evacuation: staff only, and a customer sees no host at all (404, not 403)
    "api-evacuation-detail": Rule("host"),
    "api-evacuation-start": Rule("host"),
    "api-evacuation-purge-fenced": Rule("host"),
    # certificates, DNS and the proxy
    "api-certificate-list": Rule(),
    "api-certificate-detail": Rule("certificate"),
    "api-instance-endpoint": Rule("instance"),
    "api-instance-apache-config": Rule("instance"),
    "api-instance-certificate-renew": Rule("instance"),
    "api-instance-proxy-deploy": Rule("instance"),
    "api-instance-dns-update": Rule("instance"),
    "api-dns-account-list": Rule(staff_only=True),
    "api-dns-account-detail": Rule("dns_account", staff_only=True),
    "api-dns-account-check": Rule("dns_account", staff_only=True),
    "api-dns-zone-list": Rule(staff_only=True),
    "api-dns-zone-detail": Rule("dns_zone", staff_only=True),
    # notifications: a tenant's settings (its viewers are refused: tests/api/
    # test_notification_settings.py), the platform's (platform admins)
    "api-notification-setting-list": Rule(),
    "api-notification-setting-detail": Rule("notification_tenant"),
    "api-notification-setting-deliveries": Rule("notification_tenant"),
    "api-notification-setting-test": Rule("notification_tenant"),
    "api-notification-setting-platform": Rule(staff_only=True),
    "api-notification-setting-platform-deliveries": Rule(staff_only=True),
    "api-notification-setting-platform-test": Rule(staff_only=True),
    # staff search across tenants
    "api-search": Rule(staff_only=True),
    # the API itself
    "api-root": Rule(),
    "api-schema": Rule(),
    "api-docs": Rule(),
}
# Verbs only staff may use on routes that are otherwise a customer's: a customer of the
# object's own tenant gets 403 (another tenant's customer gets 404, as everywhere).
STAFF_ONLY_VERBS = {
    ("api-restore-drill-list", "post"),
    ("api-restore-request-handle", "post"),
    ("api-point-in-time-enable", "post"),
    ("api-point-in-time-base-backup", "post"),
    ("api-point-in-time-restore", "post"),
}
# Documentation pages whose prose names the example tenant (``e.g. acme-jira``): only ids count.
API_DOCS = {"api-schema", "api-docs"}

# A body that would be valid for any of the routes, so refusals are not validation errors.
BODY = {
    "version": "9.17.0",
    "confirm": "acme-jira",
    "heap_min_mb": 1024,
    "heap_max_mb": 4096,
    "name": "Renamed",
    "slug": "renamed",
    "contact_email": "x@example.com",
    "mode": "in_place",
    "keep_daily": 1,
    "status": "done",
}
UNSAFE = {"post", "put", "patch", "delete"}
# The objects the API tests of tenants and provisioning were written for (viewer and support
# rules below); the other apps' tests hold their own role rules.
CORE_OBJECTS = {"tenant", "membership", "token", "instance", "license", "operation"}

ROUTES = api_routes()
DETAIL = [(r, m) for r in ROUTES if r.takes_pk for m in r.methods]
TENANT_DETAIL = [(r, m) for r, m in DETAIL if not RULES[r.name].staff_only]
STAFF_ONLY = [
    (r, m)
    for r in ROUTES
    for m in r.methods
    if RULES[r.name].staff_only or (r.name, m) in STAFF_ONLY_VERBS
]
LISTS = [r for r in ROUTES if not r.takes_pk and "get" in r.methods]
CORE_DETAIL = [(r, m) for r, m in TENANT_DETAIL if RULES[r.name].obj in CORE_OBJECTS]
LIST_URLS = [
    "/api/tenants/",
    "/api/memberships/",
    "/api/tokens/",
    "/api/instances/",
    "/api/licenses/",
    "/api/operations/",
]


def _ids(pairs: list[tuple[ApiRoute, str]]) -> list[str]:
    return [f"{method.upper()} {route.template}" for route, method in pairs]


@pytest.fixture
def world(
    alice, bob, charlie, acme, acme_jira, acme_license, app_host, make_token, globex_wiki
) -> dict:
    """One object of Acme behind every route (the token is Alice's own, private to her)."""
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    make_token(alice, acme)
    point = make_point(acme_jira)
    account = DnsProviderAccount.objects.create(
        name="acme-route53", kind=DnsProviderAccount.Kind.ROUTE53
    )
    return {
        "alice": alice,
        "bob": bob,
        "charlie": charlie,
        "tenant": acme,
        "membership": Membership.objects.get(user=alice),
        "token": ApiToken.objects.get(user=alice),
        "instance": acme_jira,
        "license": acme_license,
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
        "restore": Restore.objects.create(
            instance=acme_jira,
            source=acme_jira,
            backup=point,
            point_name=point.point_name,
            mode="in_place",
        ),
        "restore_drill": RestoreDrill.objects.create(
            instance=acme_jira, backup=point, tier=acme_jira.tier
        ),
        "restore_request": restore_request_create(
            actor=access_for_user(alice), instance=acme_jira, backup=point, note="x"
        ),
        "certificate": Certificate.objects.create(
            instance=acme_jira, names=["acme-jira.example.com"]
        ),
        "dns_account": account,
        "dns_zone": DnsZone.objects.create(name="acme.example", account=account),
        "invitation": Invitation.objects.create(
            tenant=acme,
            email="new@acme.example",
            key_hash=Invitation.generate()[1],
            invited_by=alice,
            expires_at=timezone.now() + timedelta(days=7),
        ),
        # the same tenant, under a key of its own: its viewer rules are not the core ones
        "notification_tenant": acme,
    }


def _snapshot() -> tuple:
    return (
        list(Tenant.objects.values_list("name", "slug").order_by("slug")),
        list(Membership.objects.values_list("user__username", "role").order_by("user__username")),
        list(ApiToken.objects.values_list("revoked_at", flat=True)),
        list(AtlassianInstance.objects.values_list("name", "status", "version").order_by("name")),
        License.objects.count(),
        list(Operation.objects.values_list("status", "cancel_requested").order_by("created_at")),
        AuditEvent.objects.count(),
        list(Host.objects.values_list("name", "status", "host_key_fingerprint").order_by("name")),
        Backup.objects.count(),
        RestoreRequest.objects.count(),
        list(RestoreRequest.objects.values_list("status", flat=True)),
        list(BackupPolicy.objects.values_list("keep_daily", "mode")),
        list(Certificate.objects.values_list("names", "status")),
        list(DnsProviderAccount.objects.values_list("name", "kind")),
        list(DnsZone.objects.values_list("name", "default_ttl")),
        list(Invitation.objects.values_list("email", "revoked_at").order_by("email")),
    )


def _call(client, route: ApiRoute, method: str, world: dict):
    rule = RULES[route.name]
    url = route.url(world[rule.obj].pk if route.takes_pk else None)
    if method in UNSAFE:
        return getattr(client, method)(url, BODY, format="json")
    return client.get(url)


def _text(response) -> str:
    if response.streaming:  # the audit export streams its CSV
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def test_every_api_route_has_a_rule():
    names = {route.name for route in ROUTES}
    # The walker reaches every router and plain path of the root URLconf.
    for expected in ("api-instance-detail", "api-host-detail", "api-backup-detail"):
        assert expected in names
    for expected in ("api-certificate-detail", "api-dns-zone-detail", "api-instance-endpoint"):
        assert expected in names
    missing = sorted(names - set(RULES))
    assert missing == [], f"add a rule to tests/api/test_isolation.py for {missing}"
    assert sorted(set(RULES) - names) == [], "a rule names a route that is gone"
    for route in ROUTES:
        assert route.takes_pk == bool(RULES[route.name].obj), route.name


def _plain_view(request, **kwargs):
    return HttpResponse("")


class _ThingView(View):
    def get(self, request, **kwargs):
        return HttpResponse("")


class _UnknownArgument:
    """A URLconf (ROOT_URLCONF may be any object with ``urlpatterns``) whose route takes an
    argument the walker cannot fill in."""

    urlpatterns = [
        path("api/", include([path("things/<slug:slug>/", _ThingView.as_view(), name="api-t")]))
    ]


class _PlainFunction:
    """A URLconf whose API route is a plain function: its methods cannot be told."""

    urlpatterns = [path("api/", include([path("things/", _plain_view, name="api-things")]))]


@pytest.mark.parametrize("urlconf", [_UnknownArgument, _PlainFunction])
def test_the_walker_fails_on_a_route_it_cannot_build_a_request_for(urlconf):
    with override_settings(ROOT_URLCONF=urlconf), pytest.raises(RouteNotUnderstood):
        api_routes()


@pytest.mark.parametrize(("route", "method"), TENANT_DETAIL, ids=_ids(TENANT_DETAIL))
def test_a_foreign_tenant_gets_404_on_every_verb(api, world, route, method):
    obj = world[RULES[route.name].obj]
    before = _snapshot()
    response = _call(api(world["charlie"]), route, method, world)
    assert response.status_code == 404, response.content
    assert str(obj.pk) not in _text(response)
    assert _snapshot() == before


@pytest.mark.parametrize(("route", "method"), STAFF_ONLY, ids=_ids(STAFF_ONLY))
def test_staff_only_routes_refuse_customers_and_change_nothing(api, world, route, method):
    before = _snapshot()
    # Permission is checked before any lookup: 403 for Acme's own admin, and for Charlie too
    # where the route is about no tenant's object (hosts, DNS, drills, the DR dashboard).
    users = ["alice"] if (route.name, method) in STAFF_ONLY_VERBS else ["alice", "charlie"]
    for user in users:
        response = _call(api(world[user]), route, method, world)
        assert response.status_code == 403, (user, response.content)
        assert "acme" not in response.content.decode().lower()
    assert _snapshot() == before


@pytest.mark.parametrize(("route", "method"), CORE_DETAIL, ids=_ids(CORE_DETAIL))
def test_a_viewer_reads_but_cannot_change(api, world, route, method):
    obj_key = RULES[route.name].obj
    before = _snapshot()
    response = _call(api(world["bob"]), route, method, world)
    if obj_key == "token":
        # tokens are private to their owner, even within one tenant
        assert response.status_code == 404, response.content
        assert _snapshot() == before
    elif method in UNSAFE:
        assert response.status_code == 403, response.content
        assert _snapshot() == before
    else:
        assert response.status_code == 200


@pytest.mark.parametrize(("route", "method"), DETAIL, ids=_ids(DETAIL))
def test_anonymous_callers_get_401_everywhere(api, world, route, method):
    before = _snapshot()
    response = _call(api(), route, method, world)
    assert response.status_code == 401
    assert _snapshot() == before


@pytest.mark.parametrize("route", LISTS, ids=[r.template for r in LISTS])
def test_lists_never_show_a_foreign_tenants_rows(api, world, route):
    response = _call(api(world["charlie"]), route, "get", world)
    expected = 403 if RULES[route.name].staff_only else 200
    assert response.status_code == expected, response.content[:300]
    body = _text(response)
    for obj_key in {rule.obj for rule in RULES.values() if rule.obj}:
        assert str(world[obj_key].pk) not in body, obj_key
    if route.name not in API_DOCS:
        assert "Acme" not in body and "acme-jira" not in body


@pytest.mark.parametrize("url", LIST_URLS)
def test_support_lists_every_tenants_rows_except_private_tokens(api, world, sam, url):
    body = api(sam).get(url).content.decode()
    if url == "/api/tokens/":
        assert body.count('"id"') == 0
    else:
        assert "Acme" in body or str(world["instance"].pk) in body


def test_support_reads_any_tenants_objects(api, world, sam):
    client = api(sam)
    for route, method in CORE_DETAIL:
        obj_key = RULES[route.name].obj
        if method != "get" or obj_key == "token":
            continue
        assert client.get(route.url(world[obj_key].pk)).status_code == 200, route.template


def test_support_sees_every_tenant_but_not_hosts(api, world, sam, app_host):
    client = api(sam)
    assert client.get("/api/hosts/").status_code == 403
    assert client.get(f"/api/hosts/{app_host.pk}/").status_code in (403, 404)
    instance = client.get(f"/api/instances/{world['instance'].pk}/").json()
    assert "address" not in instance and "127.0.0.11" not in str(instance)
