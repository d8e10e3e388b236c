"""Tenants and memberships through the API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tenants.models import AuditEvent, Membership, Tenant

pytestmark = pytest.mark.django_db

NEW_TENANT = {"name": "Initech", "slug": "initech", "contact_email": "it@initech.example"}


def test_customers_see_only_their_tenants(api, alice, acme, globex):
    client = api(alice)
    assert [t["name"] for t in client.get("/api/tenants/").json()["results"]] == ["Acme"]
    assert client.get(f"/api/tenants/{acme.pk}/").status_code == 200
    assert client.get(f"/api/tenants/{globex.pk}/").status_code == 404


def test_support_sees_every_tenant_but_cannot_create_or_change_one(api, sam, acme, globex):
    client = api(sam)
    assert len(client.get("/api/tenants/").json()["results"]) == 2
    assert client.post("/api/tenants/", NEW_TENANT, format="json").status_code == 403
    assert client.patch(f"/api/tenants/{acme.pk}/", {"name": "X"}, format="json").status_code == 403
    assert Tenant.objects.count() == 2 and Tenant.objects.get(pk=acme.pk).name == "Acme"


def test_a_platform_admin_creates_and_changes_tenants(api, pat, db):
    client = api(pat)
    response = client.post("/api/tenants/", {**NEW_TENANT, "default_tier": "tier1"}, format="json")
    assert response.status_code == 201
    tenant = Tenant.objects.get(slug="initech")
    assert response.json()["id"] == str(tenant.pk) and tenant.default_tier == "tier1"
    # The slug is read-only: sending it is refused with its name, and nothing changes.
    response = client.patch(
        f"/api/tenants/{tenant.pk}/", {"name": "Initech Ltd", "slug": "x"}, format="json"
    )
    assert response.status_code == 400 and "slug" in response.json()
    tenant.refresh_from_db()
    assert tenant.name == "Initech" and tenant.slug == "initech"
    response = client.patch(f"/api/tenants/{tenant.pk}/", {"name": "Initech Ltd"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Initech Ltd"
    tenant.refresh_from_db()
    assert tenant.name == "Initech Ltd" and tenant.slug == "initech"
    assert AuditEvent.objects.filter(action__in=["tenant.create", "tenant.update"]).count() == 2


def test_a_tenant_admin_cannot_change_their_tenant_and_gets_404_for_others(
    api, alice, acme, globex
):
    client = api(alice)
    assert client.patch(f"/api/tenants/{acme.pk}/", {"name": "A"}, format="json").status_code == 403
    assert client.put(f"/api/tenants/{globex.pk}/", NEW_TENANT, format="json").status_code == 404
    assert client.post("/api/tenants/", NEW_TENANT, format="json").status_code == 403
    assert not Tenant.objects.filter(slug="initech").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "acme"}, "slug"),
        ({"slug": "Bad Slug!"}, "slug"),
        ({"slug": "../x"}, "slug"),
        ({"contact_email": "not-an-email"}, "contact_email"),
        ({"default_tier": "gold"}, "default_tier"),
        ({"name": "n" * 1000}, "name"),
    ],
)
def test_bad_tenant_input_is_a_field_error(api, pat, acme, body, field):
    response = api(pat).post("/api/tenants/", {**NEW_TENANT, **body}, format="json")
    assert response.status_code == 400 and field in response.json()


# --- memberships ------------------------------------------------------------------------------


@pytest.fixture
def dave(db) -> User:
    return User.objects.create_user("dave", "dave@example.com", "pw-dave-123456")


def test_members_see_the_memberships_of_their_tenants_only(api, bob, alice, charlie):
    listed = api(bob).get("/api/memberships/").json()["results"]
    assert sorted(m["user"] for m in listed) == ["alice", "bob"]


def test_a_platform_admin_adds_and_a_tenant_admin_removes_members(api, pat, alice, acme, dave):
    """Tenant admins invite by email (tests/tenants/test_invitations.py); adding an account
    by username is for platform admins only."""
    response = api(pat).post(
        "/api/memberships/",
        {"tenant": str(acme.pk), "user": "dave", "role": "viewer"},
        format="json",
    )
    assert response.status_code == 201 and response.json()["tenant_name"] == "Acme"
    membership = Membership.objects.get(user=dave)
    assert api(alice).delete(f"/api/memberships/{membership.pk}/").status_code == 204
    assert not Membership.objects.filter(user=dave).exists()
    assert AuditEvent.objects.filter(action="membership.delete").exists()


def test_support_cannot_add_members_but_a_platform_admin_can(api, sam, pat, globex, dave):
    """Support acts on instances, not on who belongs to a tenant (security review L10)."""
    response = api(sam).post(
        "/api/memberships/", {"tenant": str(globex.pk), "user": "dave"}, format="json"
    )
    assert response.status_code == 400 and "tenant" in response.json()
    assert not Membership.objects.filter(user=dave).exists()
    response = api(pat).post(
        "/api/memberships/", {"tenant": str(globex.pk), "user": "dave"}, format="json"
    )
    assert response.status_code == 201


def test_a_viewer_cannot_add_or_remove_members(api, bob, alice, acme, dave):
    client = api(bob)
    response = client.post(
        "/api/memberships/", {"tenant": str(acme.pk), "user": "dave"}, format="json"
    )
    assert response.status_code == 400 and "tenant" in response.json()
    alices = Membership.objects.get(user=alice)
    assert client.delete(f"/api/memberships/{alices.pk}/").status_code == 403
    assert Membership.objects.filter(user=alice).exists()
    assert not Membership.objects.filter(user=dave).exists()


def test_a_foreign_tenant_admin_gets_not_found(api, charlie, alice, acme, dave):
    client = api(charlie)
    response = client.post(
        "/api/memberships/", {"tenant": str(acme.pk), "user": "dave"}, format="json"
    )
    assert response.status_code == 400 and "tenant" in response.json()
    alices = Membership.objects.get(user=alice)
    assert client.get(f"/api/memberships/{alices.pk}/").status_code == 404
    assert client.delete(f"/api/memberships/{alices.pk}/").status_code == 404
    assert Membership.objects.filter(user=alice).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "alice"}, "user"),  # already a member
        ({"user": "nobody"}, "user"),
        ({"user": "dave", "role": "owner"}, "role"),
        ({"user": "dave", "tenant": "not-a-uuid"}, "tenant"),
    ],
)
def test_bad_membership_input_is_a_field_error(api, alice, pat, acme, dave, body, field):
    response = api(pat).post("/api/memberships/", {"tenant": str(acme.pk), **body}, format="json")
    assert response.status_code == 400 and field in response.json()
