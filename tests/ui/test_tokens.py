"""API token pages: the secret is shown once, only its hash is kept, tokens are private."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tenants.models import ApiToken

pytestmark = pytest.mark.django_db


def _create(client, **fields):
    data = {"token-name": "CI deploys", "token-scope": "write", **fields}
    return client.post(reverse("tenants:token_list"), data)


def test_the_token_page_shows_the_secret_once_and_the_database_holds_only_its_hash(
    browser, alice, acme
):
    client = browser(alice)
    response = _create(client, **{"token-tenant": str(acme.pk)})
    content = response.content.decode()
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=alice)
    start = content.index('data-testid="token-secret"')
    secret = content[content.index(">", start) + 1 : content.index("</code>", start)]
    assert secret.startswith(f"pnl_{token.prefix}_")
    assert token.key_hash == ApiToken.hash_of(secret)
    assert secret not in {getattr(token, f.attname) for f in ApiToken._meta.concrete_fields}
    assert token.tenant == acme and token.scope == "write"
    listing = client.get(reverse("tenants:token_list")).content.decode()
    assert secret not in listing
    assert f'data-token="{token.prefix}"' in listing and "CI deploys" in listing
    # The token works against the API.
    me = client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert me.status_code == 200


def test_customers_pick_one_of_their_tenants_for_a_token(browser, charlie, acme, globex):
    client = browser(charlie)
    page = client.get(reverse("tenants:token_list")).content.decode()
    assert ">Globex<" in page and "Acme" not in page
    assert "All tenants" not in page
    refused = _create(client, **{"token-tenant": str(acme.pk)})
    assert 'data-testid="error-tenant"' in refused.content.decode()
    missing = _create(client)
    assert 'data-testid="error-tenant"' in missing.content.decode()
    assert not ApiToken.objects.exists()


def test_staff_may_create_a_token_for_all_tenants(browser, sam):
    client = browser(sam)
    assert "All tenants (staff)" in client.get(reverse("tenants:token_list")).content.decode()
    response = _create(client, **{"token-scope": "read"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=sam)
    assert token.tenant is None and token.scope == "read"


def test_a_token_may_expire_at_the_end_of_a_chosen_day(browser, alice, acme):
    day = timezone.now().date() + timedelta(days=10)
    _create(browser(alice), **{"token-tenant": str(acme.pk), "token-expires_on": day.isoformat()})
    token = ApiToken.objects.get()
    assert token.expires_at.date() == day + timedelta(days=1)
    assert token.expires_at.hour == 0


def test_an_expiry_in_the_past_is_refused(browser, alice, acme):
    day = timezone.now().date() - timedelta(days=1)
    response = _create(
        browser(alice), **{"token-tenant": str(acme.pk), "token-expires_on": day.isoformat()}
    )
    assert 'data-testid="error-expires_on"' in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_token_without_a_name_is_refused(browser, alice, acme):
    response = _create(browser(alice), **{"token-name": "", "token-tenant": str(acme.pk)})
    assert 'data-testid="error-name"' in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_user_revokes_their_own_token_with_a_post(browser, alice, acme, make_token):
    make_token(alice, tenant=acme)
    token = ApiToken.objects.get()
    client = browser(alice)
    url = reverse("tenants:token_revoke", args=[token.pk])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response["Location"] == reverse("tenants:token_list")
    token.refresh_from_db()
    assert token.revoked_at is not None
    page = client.get(reverse("tenants:token_list")).content.decode()
    assert "Revoked" in page and f'id="revoke-{token.prefix}"' not in page


def test_nobody_sees_or_revokes_another_users_tokens(browser, alice, bob, acme, make_token):
    make_token(alice, tenant=acme)
    token = ApiToken.objects.get()
    client = browser(bob)
    assert token.prefix not in client.get(reverse("tenants:token_list")).content.decode()
    assert client.post(reverse("tenants:token_revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
