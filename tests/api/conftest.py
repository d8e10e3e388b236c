"""Helpers for the API tests: stand-in handlers for lifecycle kinds, operations, license keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from panel import operations
from provisioning.licenses import license_encode_for_tests
from provisioning.models import AtlassianInstance, Operation, OperationKind

LIFECYCLE_KINDS = [
    OperationKind.INSTANCE_START, OperationKind.INSTANCE_STOP, OperationKind.INSTANCE_RESTART,
    OperationKind.INSTANCE_UPGRADE, OperationKind.INSTANCE_RESIZE, OperationKind.INSTANCE_DELETE,
]


@pytest.fixture(autouse=True)
def lifecycle_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API only *starts* operations (no worker runs here), but the runner refuses kinds
    without a handler; register no-op ones for lifecycle kinds the instances work has not
    registered yet."""
    for kind in LIFECYCLE_KINDS:
        if kind not in operations.registered_kinds():
            monkeypatch.setitem(
                operations._REGISTRY, kind,
                operations.OperationKindSpec(kind=kind, handler=lambda ctx: {}),
            )


@pytest.fixture
def active_operation() -> Callable[..., Operation]:
    """``active_operation(instance)``: a running operation holding the instance's lock."""

    def make(instance: AtlassianInstance, kind: str = "instance.upgrade",
             status: str = "running") -> Operation:
        return Operation.objects.create(
            kind=kind, tenant=instance.tenant, instance=instance, status=status,
            lock_key=f"instance:{instance.pk}",
        )

    return make


@pytest.fixture
def license_key() -> Callable[..., str]:
    """``license_key(**properties)``: a key in Atlassian's structure (test data only)."""

    def make(**properties: Any) -> str:
        props = {"SEN": "SEN-L9876543", "Organisation": "Acme Corp",
                 "LicenseExpiryDate": "2031-01-31", "jira.NumberOfUsers": "250",
                 "LicenseTypeName": "COMMERCIAL"}
        props.update(properties)
        return license_encode_for_tests(props)

    return make
