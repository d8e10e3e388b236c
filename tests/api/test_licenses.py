"""Licenses through the API: facts and expiry, never the key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from provisioning.models import License
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def test_it_lists_licenses_with_their_facts_but_never_the_key(api, bob, acme_license):
    client = api(bob)
    listed = client.get("/api/licenses/")
    detail = client.get(f"/api/licenses/{acme_license.pk}/")
    for response in (listed, detail):
        assert response.status_code == 200
        assert "AAAB-secret-license-key" not in response.content.decode()
    data = detail.json()
    assert data["sen"] == "SEN-123" and data["days_left"] == 20
    assert data["instance_name"] == "acme-jira" and data["tenant_name"] == "Acme"
    assert data["key_hint"] == "…-key" and "key" not in data


def test_the_key_appears_in_no_response_of_any_endpoint(api, alice, acme_license, acme_jira):
    client = api(alice)
    for url in (
        "/api/licenses/",
        f"/api/licenses/{acme_license.pk}/",
        "/api/instances/",
        f"/api/instances/{acme_jira.pk}/",
        "/api/operations/",
        "/api/me/",
    ):
        assert "secret-license" not in client.get(url).content.decode()


def test_adding_a_decodable_key_stores_its_facts_and_returns_201(
    api, alice, acme_jira, license_key
):
    key = license_key()
    response = api(alice).post(
        "/api/licenses/", {"instance": str(acme_jira.pk), "key": key}, format="json"
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["decode_status"] == "decoded" and data["sen"] == "SEN-L9876543"
    assert data["organisation"] == "Acme Corp" and data["user_tier"] == "250 users"
    assert data["expiry_date"] == "2031-01-31"
    assert key not in response.content.decode()
    assert License.objects.get().key == key


def test_a_key_that_does_not_decode_keeps_the_facts_entered_by_hand(api, alice, acme_jira):
    response = api(alice).post(
        "/api/licenses/",
        {
            "instance": str(acme_jira.pk),
            "key": "not-a-real-license",
            "sen": "SEN-9",
            "expiry_date": "2030-05-01",
            "evaluation": True,
        },
        format="json",
    )
    assert response.status_code == 201
    data = response.json()
    assert data["decode_status"] == "not_decoded" and data["sen"] == "SEN-9"
    assert data["expiry_date"] == "2030-05-01" and data["evaluation"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": ""}, "key"),
        ({"key": "   "}, "key"),
        ({"key": "k" * 50_000}, "key"),
        ({"expiry_date": "soon"}, "expiry_date"),
        ({"sen": "s" * 500}, "sen"),
        ({"instance": "not-a-uuid"}, "instance"),
    ],
)
def test_bad_license_input_is_a_field_error(api, alice, acme_jira, body, field):
    response = api(alice).post(
        "/api/licenses/", {"instance": str(acme_jira.pk), "key": "k", **body}, format="json"
    )
    assert response.status_code == 400 and field in response.json()
    assert not License.objects.exists()


def test_a_license_cannot_point_at_another_tenants_instance(api, alice, globex_wiki):
    response = api(alice).post(
        "/api/licenses/", {"instance": str(globex_wiki.pk), "key": "k"}, format="json"
    )
    assert response.status_code == 400
    assert "not an admin" in response.json()["instance"][0]
    assert not License.objects.exists()


def test_a_viewer_cannot_add_a_license(api, bob, acme_jira):
    response = api(bob).post(
        "/api/licenses/", {"instance": str(acme_jira.pk), "key": "k"}, format="json"
    )
    assert response.status_code == 400 and "instance" in response.json()
    assert not License.objects.exists()


def test_a_read_only_token_cannot_add_a_license(api, make_token, alice, acme_jira):
    client = api(token=make_token(alice, acme_jira.tenant, scope="read"))
    response = client.post(
        "/api/licenses/", {"instance": str(acme_jira.pk), "key": "k"}, format="json"
    )
    assert response.status_code == 403


def test_it_filters_licenses_expiring_within_some_days(api, alice, acme, acme_license):
    far = make_instance(acme, "acme-far")
    License.objects.create(
        instance=far,
        product="jira-software",
        key="k2",
        sen="SEN-FAR",
        expiry_date=timezone.now().date() + timedelta(days=300),
    )
    client = api(alice)
    sens = lambda r: sorted(x["sen"] for x in r.json()["results"])  # noqa: E731
    assert sens(client.get("/api/licenses/")) == ["SEN-123", "SEN-FAR"]
    assert sens(client.get("/api/licenses/?expiring_within_days=30")) == ["SEN-123"]
    assert sens(client.get("/api/licenses/?expiring_within_days=7")) == []
    assert sens(client.get(f"/api/licenses/?instance={far.pk}")) == ["SEN-FAR"]


@pytest.mark.parametrize("value", ["-1", "soon", "99999999999999", "1.5"])
def test_a_bad_expiry_filter_is_a_400(api, alice, acme_license, value):
    assert api(alice).get(f"/api/licenses/?expiring_within_days={value}").status_code == 400


def test_foreign_licenses_are_not_found(api, charlie, acme_license):
    client = api(charlie)
    assert client.get("/api/licenses/").json()["results"] == []
    assert client.get(f"/api/licenses/{acme_license.pk}/").status_code == 404
