"""Rows the tests build again and again: people with groups, instances and operations.

Plain functions (no fixtures), importable from any test module; the fixtures that use them
(Alice, Acme, ``acme_jira`` …) live in ``tests/conftest.py``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User

from provisioning.models import AtlassianInstance, Operation, OperationStep
from tenants.models import Tenant

PASSWORD = "correct-horse-battery-staple"


def make_user(username: str, *groups: str) -> User:
    """A user with ``PASSWORD`` and the named groups (created if missing)."""
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def make_instance(tenant: Tenant, name: str, **fields: Any) -> AtlassianInstance:
    """A running Jira row of ``tenant`` (no host, nothing on disk); ``fields`` override."""
    defaults: dict[str, Any] = {
        "product": "jira-software",
        "version": "9.12.0",
        "hostname": f"{name}.example.com",
        "status": "running",
        "db_name": name.replace("-", "_"),
        "db_user": name.replace("-", "_"),
        "db_password": f"pw-{name}-secret",
    }
    defaults.update(fields)
    return AtlassianInstance.objects.create(tenant=tenant, name=name, **defaults)


def make_operation(
    instance: AtlassianInstance,
    *,
    kind: str = "instance.restart",
    status: str = "running",
    **fields: Any,
) -> Operation:
    """An operation on ``instance``; active ones hold the instance's lock like real ones."""
    active = status in ("pending", "running")
    return Operation.objects.create(
        kind=kind,
        tenant=instance.tenant,
        instance=instance,
        status=status,
        lock_key=f"instance:{instance.pk}" if active else None,
        **fields,
    )


def make_step(operation: Operation, message: str, **fields: Any) -> OperationStep:
    """One logged step of ``operation``."""
    return OperationStep.objects.create(operation=operation, message=message, **fields)
