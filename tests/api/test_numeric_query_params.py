"""Every numeric query parameter of the API is validated: a huge, negative or non-numeric value
is a 400 that names the parameter (``?expiring=99999999999999`` on certificates was a 500)."""

from __future__ import annotations

import pytest

from provisioning.models import Operation, OperationStep

pytestmark = pytest.mark.django_db

BAD = ["99999999999999", "9" * 40, "9" * 5000, "-1", "abc", "1e3", "1.5", "0x10", "%00"]


@pytest.fixture
def op(acme_jira) -> Operation:
    op = Operation.objects.create(
        kind="instance.restart", tenant=acme_jira.tenant, instance=acme_jira, status="succeeded"
    )
    OperationStep.objects.create(operation=op, message="Restarted acme-jira")
    return op


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("who", ["alice", "sam"])
def test_a_bad_expiring_filter_on_certificates_is_a_400(request, api, who, value):
    response = api(request.getfixturevalue(who)).get(f"/api/certificates/?expiring={value}")
    assert response.status_code == 400, response.content[:200]
    assert "expiring" in response.json()


@pytest.mark.parametrize("value", ["0", "14", "3650"])
def test_a_good_expiring_filter_on_certificates_is_a_200(api, alice, value):
    assert api(alice).get(f"/api/certificates/?expiring={value}").status_code == 200


def test_an_empty_expiring_filter_means_no_filter(api, alice):
    assert api(alice).get("/api/certificates/?expiring=").status_code == 200


@pytest.mark.parametrize("value", BAD)
def test_a_bad_expiry_window_on_licenses_is_a_400(api, alice, acme_license, value):
    response = api(alice).get(f"/api/licenses/?expiring_within_days={value}")
    assert response.status_code == 400, response.content[:200]
    assert "expiring_within_days" in response.json()


@pytest.mark.parametrize("value", [v for v in BAD if v != "99999999999999"] + [str(2**63)])
def test_a_bad_after_on_operation_steps_is_a_400(api, alice, op, value):
    response = api(alice).get(f"/api/operations/{op.pk}/steps/?after={value}")
    assert response.status_code == 400, response.content[:200]
    assert "after" in response.json()


@pytest.mark.parametrize("value", ["99999999999999", str(2**63 - 1)])
def test_a_large_but_valid_after_just_finds_no_steps(api, alice, op, value):
    response = api(alice).get(f"/api/operations/{op.pk}/steps/?after={value}")
    assert response.status_code == 200 and response.json()["steps"] == []


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize(
    "url", ["/api/instances/", "/api/operations/", "/api/licenses/", "/api/certificates/"]
)
def test_a_bad_page_number_is_a_clear_client_error(api, alice, acme_license, url, value):
    response = api(alice).get(f"{url}?page={value}")
    assert response.status_code == 400, response.content[:200]
    assert "page number" in response.json()["page"][0]


@pytest.mark.parametrize("url", ["/api/instances/", "/api/operations/"])
def test_a_well_formed_page_past_the_end_is_not_found_and_last_works(api, alice, acme_license, url):
    assert api(alice).get(f"{url}?page=99").status_code == 404
    assert api(alice).get(f"{url}?page=1").status_code == 200
    assert api(alice).get(f"{url}?page=last").status_code == 200


@pytest.mark.parametrize("value", ["99999999999999", "9" * 40, "9" * 5000, "-1", "abc"])
def test_the_operation_log_poll_of_the_page_never_fails_on_a_bad_after(alice, op, value):
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(alice)
    response = client.get(reverse("provisioning:operation_log", args=[op.pk]) + f"?after={value}")
    assert response.status_code in (200, 286)
