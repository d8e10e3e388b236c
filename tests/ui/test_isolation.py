"""Every web UI route checked against each role, generated from the URL configuration.

Anonymous visitors go to the login page; Charlie (Globex) gets 404 for each of Acme's objects
and changes nothing; Bob (viewer in Acme) reads but every change is 403; Alice (Acme admin)
and Sam (support) reach everything of Acme; staff pages are 404 for customers; the hosts and
DNS pages are 403 for everyone but platform admins (support included). The routes come from
the one walker in ``tests/support/isolation.py``; a new page without a rule in ``RULES``
fails ``test_every_ui_route_has_a_rule``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from certificates.models import DnsProviderAccount, DnsZone
from provisioning.models import AtlassianInstance, Host, License, Operation
from tenants.models import ApiToken, AuditEvent, Invitation
from tests.support.factories import make_operation, make_step
from tests.support.isolation import ui_route_names

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Rule:
    """How one route behaves: which object it is about and who may do what."""

    method: str = "get"
    obj: str = ""  # "instance", "operation", "token" (Alice's own) or "host", or none
    extra: tuple = ()  # further reverse() arguments after the object's id
    mutates: bool = False  # bob (viewer) gets 403
    staff_only: bool = False  # customers get 404
    admins_only: bool = False  # a GET page only tenant admins and staff may open (403)
    platform_only: bool = False  # everyone but platform admins gets 403 (support too)


RULES: dict[str, Rule] = {
    "dashboard": Rule(),
    "provisioning:instance_list": Rule(),
    "provisioning:instance_create": Rule(admins_only=True),
    "provisioning:instance_detail": Rule(obj="instance"),
    "provisioning:instance_logs": Rule(obj="instance"),
    "provisioning:instance_action": Rule("post", "instance", ("stop",), mutates=True),
    "provisioning:license_add": Rule("post", "instance", mutates=True),
    "provisioning:instance_db_password": Rule("post", "instance", mutates=True),
    "provisioning:instance_outbound_enable": Rule("post", "instance", staff_only=True),
    "provisioning:operation_list": Rule(),
    "provisioning:operation_detail": Rule(obj="operation"),
    "provisioning:operation_log": Rule(obj="operation"),
    "provisioning:operation_cancel": Rule("post", "operation", mutates=True),
    "provisioning:staff_instances": Rule(staff_only=True),
    "tenants:token_list": Rule(),
    "tenants:token_revoke": Rule("post", "token", mutates=True),
    "tenants:staff_tenants": Rule(staff_only=True),
    # The header's switcher exists only for members of several tenants (Bob, of one, is not
    # found; tests/ui/test_tenant_switch.py has the rest).
    "tenants:tenant_switch": Rule("post", staff_only=True),
    "search:staff_search": Rule(staff_only=True),
}
# Public pages, and namespaces whose own tests hold their rules.
PUBLIC = {"login", "logout"}
# Every signed-in user's own two-factor pages (tests/hardening/test_two_factor.py).
# (otp-verify only makes sense with a device and is covered there; otp-setup for everyone.)
PUBLIC.add("otp-verify")
RULES["otp-setup"] = Rule()
RULES["notifications:notification_settings"] = Rule(admins_only=True)
RULES["notifications:notification_test"] = Rule("post", mutates=True)
RULES["notifications:notification_deliveries"] = Rule(admins_only=True)
RULES["backups:instance_backups"] = Rule(obj="instance")
RULES["backups:backup_start"] = Rule("post", "instance", mutates=True)
RULES["backups:restore_request"] = Rule("post", "instance", mutates=True)
RULES["backups:restore"] = Rule(obj="instance", staff_only=True)
RULES["backups:policy"] = Rule(obj="instance")
# Point-in-time recovery: staff only (customers read the window on the backups page).
RULES["backups:wal_enable"] = Rule("post", "instance", staff_only=True)
RULES["backups:wal_base"] = Rule("post", "instance", staff_only=True)
RULES["backups:restore_time"] = Rule("post", "instance", staff_only=True)
RULES["backups:dr_dashboard"] = Rule(staff_only=True)
RULES["backups:drill_start"] = Rule("post", staff_only=True)
RULES["backups:restore_requests"] = Rule(staff_only=True)
RULES["backups:restore_request_handle"] = Rule(
    "post", extra=("00000000-0000-4000-8000-000000000000",), staff_only=True
)
# Evacuating a failed app host: staff (support too; customers see no host, 404), the purge of
# its fenced copies platform admins only (403 for support: tests/ui/test_evacuation_ui.py).
RULES["backups:host_evacuate"] = Rule(obj="host", staff_only=True)
RULES["backups:host_purge_fenced"] = Rule("post", "host", staff_only=True)
# Hosts: platform admins only (their own behaviour: tests/provisioning/test_host_ui.py).
RULES["hosts:list"] = Rule(platform_only=True)
RULES["hosts:enrol"] = Rule(platform_only=True)
RULES["hosts:detail"] = Rule(obj="host", platform_only=True)
RULES["hosts:trust"] = Rule("post", "host", mutates=True, platform_only=True)
RULES["hosts:provision"] = Rule("post", "host", mutates=True, platform_only=True)
RULES["hosts:health"] = Rule("post", "host", mutates=True, platform_only=True)
# Certificates, DNS and the proxy of an instance (roles: tests/certificates/test_ui_api.py).
RULES["certificates:proxy_config"] = Rule(obj="instance")
RULES["certificates:apache_export"] = Rule(obj="instance")
RULES["certificates:certificate_renew"] = Rule("post", "instance", mutates=True)
RULES["certificates:proxy_deploy"] = Rule("post", "instance", mutates=True)
RULES["certificates:dns_update"] = Rule("post", "instance", mutates=True)
RULES["certificates:endpoint_check"] = Rule("post", "instance", mutates=True)
# DNS provider accounts and zones: platform admins only (tests/ui/test_dns_pages.py).
RULES["certificates:dns_overview"] = Rule(platform_only=True)
RULES["certificates:dns_account_create"] = Rule(platform_only=True)
RULES["certificates:dns_account_detail"] = Rule(obj="dns_account", platform_only=True)
RULES["certificates:dns_account_check"] = Rule(
    "post", "dns_account", mutates=True, platform_only=True
)
RULES["certificates:dns_account_delete"] = Rule(obj="dns_account", platform_only=True)
RULES["certificates:dns_zone_create"] = Rule(platform_only=True)
RULES["certificates:dns_zone_delete"] = Rule(obj="dns_zone", platform_only=True)
# Members and invitations by email (tests/tenants/test_invitations.py): viewers get 403, a
# foreign tenant's invitation is not found; the accept page and the password reset are public.
RULES["tenants:member_list"] = Rule(admins_only=True)
RULES["tenants:invitation_revoke"] = Rule("post", "invitation", mutates=True)
PUBLIC |= {
    "tenants:invitation_accept",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
}
COVERED_ELSEWHERE = {
    "audit": "tests/hardening/test_audit.py",
    # The user's own second-factor actions (POST only, verified session + password).
    "otp-recovery-codes": "tests/hardening/test_two_factor_bypass.py",
    "otp-disable": "tests/hardening/test_two_factor_bypass.py",
    "otp-reset": "tests/hardening/test_two_factor_bypass.py",
}
BODY = {
    "confirm_name": "acme-jira",
    "confirm": "acme-jira",
    "target_time": "2025-03-01T10:00:00",
    "license-key": "AAAB-isolation-key",
    "token-name": "x",
}


def test_every_ui_route_has_a_rule():
    names = ui_route_names()
    assert "dashboard" in names
    missing = [
        name
        for name in names
        if name not in RULES and name not in PUBLIC and name.split(":")[0] not in COVERED_ELSEWHERE
    ]
    assert missing == [], f"add a rule to tests/ui/test_isolation.py for {missing}"


@pytest.fixture
def world(
    alice, bob, charlie, sam, acme, acme_jira, acme_license, globex_wiki, make_token, app_host
):
    make_token(alice, acme)
    op = make_operation(acme_jira, status="running")
    make_step(op, "acme step")
    account = DnsProviderAccount.objects.create(
        name="app-one-dns", kind=DnsProviderAccount.Kind.RFC2136, config={"server": "127.0.0.1"}
    )
    invitation = Invitation.objects.create(
        tenant=acme,
        email="new@acme.example",
        key_hash=Invitation.generate()[1],
        invited_by=alice,
        expires_at=timezone.now() + timedelta(days=7),
    )
    return {
        "invitation": invitation,
        "instance": acme_jira,
        "operation": op,
        "token": ApiToken.objects.get(user=alice),
        "host": app_host,
        "dns_account": account,
        "dns_zone": DnsZone.objects.create(name="zone.example", account=account),
    }


def _url(world: dict, name: str) -> str:
    rule = RULES[name]
    args = [world[rule.obj].pk, *rule.extra] if rule.obj else list(rule.extra)
    return reverse(name, args=args)


def _snapshot() -> tuple:
    return (
        list(AtlassianInstance.objects.values_list("name", "status").order_by("name")),
        License.objects.count(),
        list(Operation.objects.values_list("status", "cancel_requested").order_by("created_at")),
        list(ApiToken.objects.values_list("revoked_at", flat=True)),
        AuditEvent.objects.count(),
        list(Host.objects.values_list("name", "status", "host_key_fingerprint").order_by("name")),
        list(DnsProviderAccount.objects.values_list("name", "config").order_by("name")),
        list(DnsZone.objects.values_list("name", flat=True).order_by("name")),
        list(Invitation.objects.values_list("email", "revoked_at").order_by("email")),
    )


ROUTES = sorted(RULES)


@pytest.mark.parametrize("name", ROUTES)
def test_anonymous_visitors_are_sent_to_login(browser, world, name):
    before = _snapshot()
    response = getattr(browser(None), RULES[name].method)(_url(world, name), BODY)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")
    assert _snapshot() == before


@pytest.mark.parametrize("name", [n for n in ROUTES if RULES[n].obj and not RULES[n].platform_only])
def test_charlie_gets_404_for_acme_objects_and_changes_nothing(browser, world, charlie, name):
    before = _snapshot()
    response = getattr(browser(charlie), RULES[name].method)(_url(world, name), BODY)
    assert response.status_code == 404
    assert b"acme" not in response.content.lower()
    assert _snapshot() == before


@pytest.mark.parametrize("name", ROUTES)
def test_bob_reads_but_every_change_is_refused(browser, world, bob, name):
    rule = RULES[name]
    before = _snapshot()
    response = getattr(browser(bob), rule.method)(_url(world, name), BODY)
    if rule.platform_only:
        assert response.status_code == 403
    elif rule.staff_only:
        assert response.status_code == 404
    elif rule.obj == "token":
        assert response.status_code == 404  # tokens are private to their owner
    elif rule.mutates or rule.admins_only:
        assert response.status_code == 403
    else:
        assert response.status_code in (200, 286)
    if name != "tenants:token_list":  # Bob may create his own tokens
        assert _snapshot() == before


@pytest.mark.parametrize("name", [n for n in ROUTES if RULES[n].method == "get"])
def test_alice_opens_every_page_but_the_staff_ones(browser, world, alice, name):
    rule = RULES[name]
    response = browser(alice).get(_url(world, name))
    assert response.status_code == (403 if rule.platform_only else 404 if rule.staff_only else 200)


@pytest.mark.parametrize(
    "name", [n for n in ROUTES if RULES[n].method == "get" and not RULES[n].platform_only]
)
def test_sam_from_support_opens_every_page(browser, world, sam, name):
    assert browser(sam).get(_url(world, name)).status_code == 200


@pytest.mark.parametrize("name", [n for n in ROUTES if RULES[n].platform_only])
def test_host_pages_are_403_for_everyone_but_platform_admins(
    browser, world, alice, bob, charlie, sam, pat, name
):
    rule = RULES[name]
    before = _snapshot()
    for user in (alice, bob, charlie, sam):
        response = getattr(browser(user), rule.method)(_url(world, name), BODY)
        assert response.status_code == 403, user.username
        assert b"app-one" not in response.content
    assert _snapshot() == before
    if rule.method == "get":
        assert browser(pat).get(_url(world, name)).status_code == 200
