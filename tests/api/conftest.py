"""Helpers for the API tests: operations holding a lock, license keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from provisioning.licenses import license_encode_for_tests
from provisioning.models import AtlassianInstance, Operation


@pytest.fixture
def active_operation() -> Callable[..., Operation]:
    """``active_operation(instance)``: a running operation holding the instance's lock."""

    def make(
        instance: AtlassianInstance, kind: str = "instance.upgrade", status: str = "running"
    ) -> Operation:
        return Operation.objects.create(
            kind=kind,
            tenant=instance.tenant,
            instance=instance,
            status=status,
            lock_key=f"instance:{instance.pk}",
        )

    return make


@pytest.fixture
def license_key() -> Callable[..., str]:
    """``license_key(**properties)``: a key in Atlassian's structure (test data only)."""

    def make(**properties: Any) -> str:
        props = {
            "SEN": "SEN-L9876543",
            "Organisation": "Acme Corp",
            "LicenseExpiryDate": "2031-01-31",
            "jira.NumberOfUsers": "250",
            "LicenseTypeName": "COMMERCIAL",
        }
        props.update(properties)
        return license_encode_for_tests(props)

    return make
