"""Bad input anywhere in the API is a 4xx with a reason, never a 500."""

from __future__ import annotations

import pytest

from provisioning.models import AtlassianInstance

pytestmark = pytest.mark.django_db

LIST_URLS = [
    "/api/instances/",
    "/api/licenses/",
    "/api/operations/",
    "/api/memberships/",
    "/api/tenants/",
    "/api/tokens/",
]
QUERIES = [
    "search=%00",
    "ordering=%00",
    "page=%00",
    "tenant=%00",
    "status=%00",
    "kind=%00",
    "role=%00",
    "instance=%00",
    "expiring_within_days=%00",
    "search=%ED%A0%80",
    "search=" + "a" * 5000,
    "ordering=-db_password",
    "ordering=key",
    "ordering=key_hash",
    "page=99999999999999999999",
    "page=-1",
]


@pytest.mark.parametrize("url", LIST_URLS)
@pytest.mark.parametrize("query", QUERIES)
def test_odd_query_parameters_never_cause_a_server_error(api, sam, acme_license, url, query):
    response = api(sam).get(f"{url}?{query}")
    assert response.status_code in (200, 400, 404), response.content[:300]


def test_ordering_by_a_secret_field_is_ignored(api, sam, acme, make_token, alice):
    make_token(alice, acme)
    make_token(alice, acme)
    for url in (
        "/api/tokens/?ordering=key_hash",
        "/api/licenses/?ordering=key",
        "/api/instances/?ordering=db_password",
    ):
        assert api(sam).get(url).status_code == 200


def test_an_oversized_body_is_a_413(api, alice, acme):
    body = '{"name": "' + "a" * 3_000_000 + '"}'
    response = api(alice).post("/api/instances/", body, content_type="application/json")
    assert response.status_code == 413 and "larger than" in response.json()["detail"]


def test_a_deeply_nested_body_is_a_400(api, alice, acme):
    body = "[" * 100_000 + "]" * 100_000
    response = api(alice).post("/api/instances/", body, content_type="application/json")
    assert response.status_code == 400 and "nested" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml"])
def test_an_unsupported_media_type_is_a_415(api, alice, acme, content_type):
    response = api(alice).post("/api/instances/", "name=x", content_type=content_type)
    assert response.status_code == 415


def test_values_of_the_wrong_type_are_field_errors(api, alice, acme):
    response = api(alice).post(
        "/api/instances/",
        {
            "name": {"a": 1},
            "tenant": [1],
            "product": ["x"],
            "version": {"x": 1},
            "context_path": 5,
            "hostname": None,
            "heap_min_mb": "many",
        },
        format="json",
    )
    assert response.status_code == 400
    assert {"name", "tenant", "product", "version", "hostname", "heap_min_mb"} <= set(
        response.json()
    )
    assert not AtlassianInstance.objects.exists()


def test_form_encoded_bodies_are_validated_the_same_way(api, alice, acme):
    response = api(alice).post(
        "/api/instances/",
        {"name": "x\x00", "tenant": "\x00", "hostname": "a\x00.com"},
        format="multipart",
    )
    assert response.status_code == 400 and {"name", "tenant", "hostname"} <= set(response.json())
