"""GET /api/me/: who the caller is, where they belong, and the token in use."""

from __future__ import annotations

import pytest

from tenants.models import Membership

pytestmark = pytest.mark.django_db


def test_it_shows_a_customer_their_memberships(api, alice, acme):
    data = api(alice).get("/api/me/").json()
    assert data["username"] == "alice" and data["staff_roles"] == [] and data["can_write"]
    assert [(m["tenant"], m["tenant_name"], m["role"]) for m in data["memberships"]] == [
        (str(acme.pk), "Acme", "admin")
    ]
    assert data["token"] is None


def test_it_shows_staff_roles(api, sam, pat):
    assert api(sam).get("/api/me/").json()["staff_roles"] == ["support"]
    assert "platform-admin" in api(pat).get("/api/me/").json()["staff_roles"]


def test_it_shows_the_token_in_use_and_only_its_tenant(api, make_token, alice, acme, globex):
    Membership.objects.create(user=alice, tenant=globex, role="viewer")
    data = api(token=make_token(alice, acme, scope="read")).get("/api/me/").json()
    assert data["token"]["scope"] == "read" and data["token"]["tenant"] == str(acme.pk)
    assert data["can_write"] is False
    assert [m["tenant_name"] for m in data["memberships"]] == ["Acme"]
    assert "key_hash" not in data["token"] and "token" not in data["token"]


def test_a_tenant_bound_staff_token_carries_no_staff_role(api, make_token, sam, acme):
    assert api(token=make_token(sam, acme)).get("/api/me/").json()["staff_roles"] == []


def test_a_viewer_is_told_they_cannot_write(api, bob):
    data = api(bob).get("/api/me/").json()
    assert data["can_write"] is False
    assert [m["role"] for m in data["memberships"]] == ["viewer"]


def test_a_viewer_who_administers_another_tenant_can_write(api, bob, globex):
    Membership.objects.create(user=bob, tenant=globex, role="admin")
    assert api(bob).get("/api/me/").json()["can_write"] is True


def test_support_staff_and_write_tokens_of_tenant_admins_can_write(api, make_token, sam, alice):
    assert api(sam).get("/api/me/").json()["can_write"] is True
    assert api(token=make_token(alice, scope="write")).get("/api/me/").json()["can_write"]
    assert api(token=make_token(sam, scope="read")).get("/api/me/").json()["can_write"] is False
