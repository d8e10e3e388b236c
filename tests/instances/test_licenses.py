"""License keys: decoded read-only from Atlassian's format; undecodable keys kept as entered."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from provisioning.licenses import license_decode, license_encode_for_tests
from provisioning.models import License
from provisioning.selectors import licenses_expiring
from provisioning.services import license_add

PROPS = {
    "SEN": "SEN-L1234567",
    "Organisation": "Acme Corp",
    "LicenseTypeName": "COMMERCIAL",
    "jira.NumberOfUsers": "250",
    "LicenseExpiryDate": "2027-03-31",
    "MaintenanceExpiryDate": "2027-01-31",
    "Evaluation": "false",
}


def test_a_key_in_atlassians_structure_decodes_to_its_facts():
    key = license_encode_for_tests(PROPS)
    # keys are pasted with line breaks; whitespace is ignored
    wrapped = "\n".join(key[i : i + 76] for i in range(0, len(key), 76))
    decoded = license_decode(wrapped)
    assert decoded is not None
    assert decoded.sen == "SEN-L1234567" and decoded.organisation == "Acme Corp"
    assert decoded.license_type == "COMMERCIAL" and decoded.user_tier == "250 users"
    assert decoded.expiry_date == date(2027, 3, 31)
    assert decoded.maintenance_expiry_date == date(2027, 1, 31)
    assert decoded.evaluation is False


def test_unlimited_users_and_evaluation_flags_are_read():
    decoded = license_decode(
        license_encode_for_tests({**PROPS, "jira.NumberOfUsers": "-1", "Evaluation": "true"})
    )
    assert decoded.user_tier == "Unlimited" and decoded.evaluation is True


@pytest.mark.parametrize(
    "garbage", ["", "not a license", "AAAAX02zz", "QUJDRA==X02a", "X" * 50, "AAAB" * 40]
)
def test_undecodable_keys_return_none(garbage):
    assert license_decode(garbage) is None


@pytest.mark.django_db
def test_adding_a_decodable_key_stores_the_facts_and_encrypts_the_key(alice, acme_jira, access_of):
    key = license_encode_for_tests(PROPS)
    lic = license_add(actor=access_of(alice), instance=acme_jira, key=key)
    assert lic.decode_status == License.DecodeStatus.DECODED and lic.sen == "SEN-L1234567"
    with connection.cursor() as cur:
        cur.execute("SELECT key FROM provisioning_license WHERE id = %s", [lic.pk])
        raw = cur.fetchone()[0]
    assert key not in raw and raw.startswith("fernet:")


@pytest.mark.django_db
def test_an_undecodable_key_is_kept_with_manual_facts(alice, acme_jira, access_of):
    lic = license_add(
        actor=access_of(alice),
        instance=acme_jira,
        key="AAAB-opaque-key",
        facts={"sen": "SEN-MANUAL", "expiry_date": date(2027, 5, 1)},
    )
    assert lic.decode_status == License.DecodeStatus.NOT_DECODED
    assert lic.sen == "SEN-MANUAL" and lic.key == "AAAB-opaque-key"


@pytest.mark.django_db
def test_an_empty_key_is_refused(alice, acme_jira, access_of):
    with pytest.raises(ValidationError):
        license_add(actor=access_of(alice), instance=acme_jira, key="  \n ")


@pytest.mark.django_db
def test_licenses_expiring_within_60_days_are_listed_for_their_tenant_only(
    alice, charlie, acme_jira, globex_wiki, access_of
):
    today = timezone.now().date()
    soon = license_add(
        actor=access_of(alice),
        instance=acme_jira,
        key=license_encode_for_tests(
            {
                **PROPS,
                "LicenseExpiryDate": (today + timedelta(days=7)).isoformat(),
                "MaintenanceExpiryDate": (today + timedelta(days=7)).isoformat(),
            }
        ),
    )
    license_add(
        actor=access_of(alice),
        instance=acme_jira,
        key=license_encode_for_tests(
            {
                **PROPS,
                "LicenseExpiryDate": (today + timedelta(days=300)).isoformat(),
                "MaintenanceExpiryDate": (today + timedelta(days=300)).isoformat(),
            }
        ),
    )
    license_add(
        actor=access_of(charlie),
        instance=globex_wiki,
        key=license_encode_for_tests(
            {**PROPS, "LicenseExpiryDate": (today + timedelta(days=3)).isoformat()}
        ),
    )
    assert list(licenses_expiring(access_of(alice))) == [soon]
    assert list(licenses_expiring(access_of(alice), within_days=7)) == [soon]
    assert soon not in licenses_expiring(access_of(charlie))
