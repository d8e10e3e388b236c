"""Input bounds (review L3, L7 and the free-text item of issue 11): bad input is a 400 or a form
error at the moment it is typed, never a 500 and never a surprise at deploy time.

- a license key whose licence text is a zip bomb, or carries unreadable dates or control
  characters, is refused; decoding is bounded and never raises;
- license facts (SEN, organisation, type, user tier) are one line of text;
- customers choose only service tiers their tenant has (staff any).
"""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse

from provisioning.licenses import (
    MAX_LICENSE_TEXT_BYTES,
    license_decode,
    license_encode_for_tests,
)
from provisioning.models import AtlassianInstance, License

pytestmark = pytest.mark.django_db

GOOD_FACTS = {
    "SEN": "SEN-L1",
    "Organisation": "Acme Corp",
    "LicenseExpiryDate": "2031-01-31",
    "jira.NumberOfUsers": "250",
    "LicenseTypeName": "COMMERCIAL",
}
NEW = {
    "name": "acme-wiki",
    "product": "confluence",
    "version": "8.5.0",
    "hostname": "wiki.acme.example",
    "heap_min_mb": 1024,
    "heap_max_mb": 2048,
}


def _key(**props: str) -> str:
    return license_encode_for_tests({**GOOD_FACTS, **props})


def _bomb() -> str:
    # 12 MiB of one letter deflates to ~12 KiB: a key under the 20,000-character limit.
    return _key(Padding="A" * (12 * 1024 * 1024))


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post_license(api, user, instance, **body):
    return api(user).post("/api/licenses/", {"instance": str(instance.pk), **body}, format="json")


# --- license keys ---------------------------------------------------------------------------


def test_the_zip_bomb_fits_in_an_accepted_key_length():
    assert len(_bomb()) < 20_000


def test_decoding_a_zip_bomb_stops_at_the_bound_and_returns_none():
    started = time.monotonic()
    assert license_decode(_bomb()) is None
    assert time.monotonic() - started < 2
    # A licence text just under the bound still decodes.
    assert license_decode(_key(Padding="A" * (MAX_LICENSE_TEXT_BYTES - 1000))) is not None


def test_a_zip_bomb_key_is_a_400_through_the_api(api, alice, acme_jira):
    response = _post_license(api, alice, acme_jira, key=_bomb())
    assert response.status_code == 400
    assert "not a license key" in response.json()["key"][0]
    assert not License.objects.exists()


def test_a_zip_bomb_key_is_a_form_error_on_the_page(alice, acme_jira):
    response = _client(alice).post(
        reverse("provisioning:license_add", args=[acme_jira.pk]), {"license-key": _bomb()}
    )
    assert response.status_code == 200
    assert 'data-testid="error-key"' in response.content.decode()
    assert not License.objects.exists()


def test_the_page_refuses_a_key_longer_than_the_api_does(alice, acme_jira):
    response = _client(alice).post(
        reverse("provisioning:license_add", args=[acme_jira.pk]), {"license-key": "A" * 30_000}
    )
    assert 'data-testid="error-key"' in response.content.decode()
    assert not License.objects.exists()


@pytest.mark.parametrize(
    "date",
    ["99999999999999999999", "9" * 5000, "253402300800000", "31-31-2031", "soon"],
)
def test_a_key_with_an_unreadable_date_is_a_400_and_decoding_never_raises(
    api, alice, acme_jira, date
):
    key = _key(LicenseExpiryDate=date)
    assert license_decode(key).expiry_date is None  # lenient, never a 500 in the service
    response = _post_license(api, alice, acme_jira, key=key)
    assert response.status_code == 400
    assert "LicenseExpiryDate" in response.json()["key"][0]
    page = _client(alice).post(
        reverse("provisioning:license_add", args=[acme_jira.pk]), {"license-key": key}
    )
    assert page.status_code == 200 and 'data-testid="error-key"' in page.content.decode()
    assert not License.objects.exists()


@pytest.mark.parametrize("date", ["99999-01-01", "2031-02-30", "-1"])
def test_an_unreadable_date_typed_by_hand_is_a_field_error(api, alice, acme_jira, date):
    response = _post_license(api, alice, acme_jira, key="not-decodable", expiry_date=date)
    assert response.status_code == 400 and "expiry_date" in response.json()


def test_a_line_wrapped_key_still_decodes(api, alice, acme_jira):
    key = _key()
    wrapped = "\n".join(key[i : i + 60] for i in range(0, len(key), 60))
    response = _post_license(api, alice, acme_jira, key=wrapped)
    assert response.status_code == 201, response.json()
    assert response.json()["decode_status"] == "decoded"
    assert License.objects.get().key == key


@pytest.mark.parametrize(
    "key", ["AAAB\x1b[2JCDEF", "AAAB$HOMECDEF", "AAAB'CDEF", "AAAB\\nCDEF", "AAABé0123"]
)
def test_a_key_with_characters_an_env_file_cannot_carry_is_refused(api, alice, acme_jira, key):
    response = _post_license(api, alice, acme_jira, key=key)
    assert response.status_code == 400 and "key" in response.json()
    assert not License.objects.exists()


@pytest.mark.parametrize("prop", ["SEN", "Organisation", "LicenseTypeName", "jira.NumberOfUsers"])
def test_a_key_whose_decoded_facts_hold_control_characters_is_refused(api, alice, acme_jira, prop):
    response = _post_license(api, alice, acme_jira, key=_key(**{prop: "x\x1b[31mred\x07"}))
    assert response.status_code == 400
    assert "control characters" in response.json()["key"][0]
    assert not License.objects.exists()


@pytest.mark.parametrize("field", ["sen", "organisation", "license_type", "user_tier"])
@pytest.mark.parametrize("value", ["SEN-1\nPANEL_X=1", "25\rusers", "a\tb", "x\x1bz", "a\u2028b"])
def test_license_facts_typed_by_hand_are_one_line(api, alice, acme_jira, field, value):
    response = _post_license(api, alice, acme_jira, key="not-decodable", **{field: value})
    assert response.status_code == 400, response.json()
    assert "line breaks" in response.json()[field][0]
    page = _client(alice).post(
        reverse("provisioning:license_add", args=[acme_jira.pk]),
        {"license-key": "not-decodable", f"license-{field}": value},
    )
    assert f'data-testid="error-{field}"' in page.content.decode()
    assert not License.objects.exists()


# --- service tiers --------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["tier0", "tier1"])
def test_a_tenant_admin_cannot_choose_a_tier_above_the_tenants(api, alice, acme, tier):
    assert acme.default_tier == "tier2"
    response = api(alice).post("/api/instances/", {**NEW, "tier": tier}, format="json")
    assert response.status_code == 400
    message = response.json()["tier"][0]
    assert "above the tenant's service tier" in message and "Tier 3" in message
    assert not AtlassianInstance.objects.exists()


@pytest.mark.parametrize(
    ("tier", "expected"), [("tier2", "tier2"), ("tier3", "tier3"), (None, "tier2")]
)
def test_a_tenant_admin_chooses_the_tenants_tier_or_a_lower_one(api, alice, acme, tier, expected):
    body = {**NEW, **({"tier": tier} if tier else {})}
    response = api(alice).post("/api/instances/", body, format="json")
    assert response.status_code == 202, response.json()
    assert AtlassianInstance.objects.get().tier == expected


def test_support_staff_choose_any_tier(api, sam, acme):
    response = api(sam).post(
        "/api/instances/", {**NEW, "tenant": str(acme.pk), "tier": "tier0"}, format="json"
    )
    assert response.status_code == 202, response.json()
    assert AtlassianInstance.objects.get().tier == "tier0"


def test_the_create_page_refuses_a_tier_above_the_tenants(alice, acme):
    form = {**NEW, "tenant": str(acme.pk), "context_path": "", "tier": "tier0"}
    response = _client(alice).post(reverse("provisioning:instance_create"), form)
    assert response.status_code == 200
    assert 'data-testid="error-tier"' in response.content.decode()
    assert not AtlassianInstance.objects.exists()
    url = reverse("provisioning:instance_create")
    response = _client(alice).post(url, {**form, "tier": "tier3"})
    assert response.status_code == 302
    assert AtlassianInstance.objects.get().tier == "tier3"


def test_support_staff_choose_any_tier_on_the_create_page(sam, acme):
    form = {**NEW, "tenant": str(acme.pk), "context_path": "", "tier": "tier0"}
    response = _client(sam).post(reverse("provisioning:instance_create"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AtlassianInstance.objects.get().tier == "tier0"
