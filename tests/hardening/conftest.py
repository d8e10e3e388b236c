"""Fixtures of the hardening tests. There is no no-broker patch here: the fault-tolerance
tests use the real worker, so operations really go through Redis. The lab fixtures come from
the ``tests.support.lab`` plugin."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from backups.services import backup_start
from panel.access import access_for_user
from panel.registry import registry
from provisioning.models import AtlassianInstance
from tenants.models import Tenant
from tests.support.backup_lab import backup1, create_instance, enrol_and_provision
from tests.support.lab import run_operation, step_text


@pytest.fixture
def backed_up(
    worker: Any,
    pat: User,
    acme: Tenant,
    lab_state: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> Iterator[AtlassianInstance]:
    """A running lab instance with one good backup point, set up inline (not by the worker)."""
    settings.PANEL_OPERATION_HEARTBEAT_TIMEOUT = timedelta(seconds=worker.heartbeat_timeout)
    specs = {h["name"]: h for h in lab_state["hosts"]}
    name = f"k{secrets.token_hex(3)}-jira"
    with monkeypatch.context() as mp:
        mp.setattr("panel.operations.operation_enqueue", lambda op_id: None)
        mp.setitem(registry["instance_hooks"], "publish", [])
        actor = access_for_user(pat)
        backup_host = enrol_and_provision(actor, specs["backup1"])
        app_host = enrol_and_provision(actor, specs["app1"], backup_host=backup_host)
        instance = create_instance(actor, acme, app_host, name)
        first = run_operation(backup_start(actor=actor, instance=instance))
        assert first.status == "succeeded", step_text(first)
    try:
        yield instance
    finally:
        subprocess.run(
            ["docker", "compose", "-p", name, "down", "-v", "-t", "2"],
            capture_output=True,
            timeout=180,
        )
        subprocess.run(["rm", "-rf", f"{app_host.data_root}/instances/{name}"])
        backup1("rm", "-rf", f"{backup_host.data_root}/hosts/{app_host.name}/{name}", check=False)
