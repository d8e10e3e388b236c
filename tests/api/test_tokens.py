"""API tokens: shown once, stored hashed, scoped, expiring, revocable, private to their owner."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from provisioning.models import Operation
from tenants.models import ApiToken, Membership
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post("/api/tokens/", {"name": "ci", "scope": "write", **body}, format="json")


def test_creating_a_token_shows_its_secret_once(api, alice, acme):
    client = api(alice)
    response = create(client, tenant=str(acme.pk))
    assert response.status_code == 201
    secret = response.json()["token"]
    assert secret.startswith("pnl_")
    listed = client.get("/api/tokens/")
    assert secret not in listed.content.decode() and "token" not in listed.json()["results"][0]
    detail = client.get(f"/api/tokens/{response.json()['id']}/")
    assert secret not in detail.content.decode()


def test_the_database_never_holds_the_clear_secret(api, alice, acme):
    secret = create(api(alice), tenant=str(acme.pk)).json()["token"]
    token = ApiToken.objects.get()
    assert token.key_hash == ApiToken.hash_of(secret) and secret not in token.key_hash
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenants_apitoken")
        row = " ".join(str(v) for v in cursor.fetchone())
    assert secret not in row and secret.split("_", 2)[2] not in row


def test_a_new_token_works_for_its_tenant(api, alice, acme, acme_jira):
    secret = create(api(alice), tenant=str(acme.pk)).json()["token"]
    response = api(token=secret).get("/api/instances/")
    assert [i["name"] for i in response.json()["results"]] == ["acme-jira"]


def test_a_customer_token_must_name_one_of_their_tenants(api, alice, globex):
    client = api(alice)
    response = create(client)
    assert response.status_code == 400 and "tenant" in response.json()
    response = create(client, tenant=str(globex.pk))
    assert response.status_code == 400 and "tenant" in response.json()
    assert not ApiToken.objects.exists()


def test_staff_may_create_a_cross_tenant_token(api, sam, acme_jira, globex_wiki):
    response = create(api(sam))
    assert response.status_code == 201 and response.json()["tenant"] is None
    listed = api(token=response.json()["token"]).get("/api/instances/").json()["results"]
    assert sorted(i["name"] for i in listed) == ["acme-jira", "globex-wiki"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 500},
        {"scope": "admin"},
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"expires_at": "tomorrow"},
    ],
)
def test_bad_token_requests_are_field_errors(api, alice, acme, body):
    response = create(api(alice), tenant=str(acme.pk), **body)
    assert response.status_code == 400 and set(body) & set(response.json())
    assert not ApiToken.objects.exists()


def test_a_read_token_can_read_but_not_write(api, make_token, alice, acme_jira):
    client = api(token=make_token(alice, acme_jira.tenant, scope="read"))
    assert client.get("/api/instances/").status_code == 200
    assert client.post(f"/api/instances/{acme_jira.pk}/restart/").status_code == 403
    assert create(client, tenant=str(acme_jira.tenant_id)).status_code == 403
    assert not Operation.objects.exists()


def test_an_expired_token_is_refused_with_401(api, make_token, alice, acme):
    secret = make_token(alice, acme, expires_at=timezone.now() - timedelta(seconds=1))
    response = api(token=secret).get("/api/instances/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]


@pytest.mark.parametrize("how", ["post", "delete"])
def test_a_revoked_token_is_refused_with_401(api, alice, acme, how):
    client = api(alice)
    created = create(client, tenant=str(acme.pk)).json()
    assert api(token=created["token"]).get("/api/me/").status_code == 200
    if how == "post":
        response = client.post(f"/api/tokens/{created['id']}/revoke/")
        assert response.status_code == 200 and response.json()["revoked_at"]
    else:
        assert client.delete(f"/api/tokens/{created['id']}/").status_code == 204
    response = api(token=created["token"]).get("/api/me/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    assert client.get("/api/tokens/").json()["results"][0]["is_active"] is False


@pytest.mark.parametrize("header", ["Bearer pnl_nope", "Bearer garbage", "Token", "Bearer a b"])
def test_unknown_or_malformed_tokens_are_refused_with_401(api, header, db):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/instances/").status_code == 401


def test_anonymous_callers_are_refused_with_401(api, db):
    for url in ("/api/me/", "/api/instances/", "/api/tokens/", "/api/operations/"):
        assert api().get(url).status_code == 401


def test_using_a_token_records_when_it_was_last_used(api, make_token, alice, acme):
    secret = make_token(alice, acme)
    assert ApiToken.objects.get().last_used_at is None
    api(token=secret).get("/api/me/")
    assert timezone.now() - ApiToken.objects.get().last_used_at < timedelta(seconds=30)


def test_a_tenant_bound_token_sees_only_its_tenant(api, make_token, alice, acme, globex):
    Membership.objects.create(user=alice, tenant=globex, role="admin")
    make_instance(acme, "acme-jira")
    wiki = make_instance(globex, "globex-wiki")
    client = api(token=make_token(alice, acme))
    assert [i["name"] for i in client.get("/api/instances/").json()["results"]] == ["acme-jira"]
    assert client.get(f"/api/instances/{wiki.pk}/").status_code == 404
    assert client.post(f"/api/instances/{wiki.pk}/stop/").status_code == 404
    assert [t["name"] for t in client.get("/api/tenants/").json()["results"]] == ["Acme"]
    # ...and cannot mint a token for the other tenant either
    assert create(client, tenant=str(globex.pk)).status_code == 400


def test_a_token_loses_its_tenant_with_the_membership(api, make_token, alice, acme, acme_jira):
    client = api(token=make_token(alice, acme))
    Membership.objects.filter(user=alice).delete()
    assert client.get("/api/instances/").json()["results"] == []
    assert client.get(f"/api/instances/{acme_jira.pk}/").status_code == 404


def test_a_tenant_bound_staff_token_is_limited_to_that_tenant(
    api, make_token, sam, acme_jira, globex_wiki
):
    client = api(token=make_token(sam, acme_jira.tenant))
    assert [i["name"] for i in client.get("/api/instances/").json()["results"]] == ["acme-jira"]
    assert client.get(f"/api/instances/{globex_wiki.pk}/").status_code == 404


def test_tokens_are_private_to_their_owner(api, make_token, alice, bob, acme):
    make_token(bob, acme)
    bobs = ApiToken.objects.get()
    client = api(alice)
    assert client.get("/api/tokens/").json()["results"] == []
    assert client.get(f"/api/tokens/{bobs.pk}/").status_code == 404
    assert client.post(f"/api/tokens/{bobs.pk}/revoke/").status_code == 404
    assert client.delete(f"/api/tokens/{bobs.pk}/").status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_through_a_tenant_bound_token_only_that_tenants_tokens_are_listed(
    api, make_token, alice, acme, globex
):
    Membership.objects.create(user=alice, tenant=globex, role="admin")
    make_token(alice, globex)
    client = api(token=make_token(alice, acme))
    assert [t["tenant_name"] for t in client.get("/api/tokens/").json()["results"]] == ["Acme"]
