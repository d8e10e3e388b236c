"""Turning a copy's mail back on (issue #13 P4): the operation rolls the copy out from a
project without the mail-off flags, and clears ``outbound_disabled`` only once that worked.
The rollout itself is replaced here (its own lab tests prove it); what is checked is what it
is asked to deploy and what the operation records."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from panel.operations import OperationFailed
from provisioning import rollout
from provisioning.compose import compose_render
from provisioning.models import AtlassianInstance, Host
from provisioning.services import instance_outbound_enable
from tenants.models import Tenant
from tests.support.factories import make_instance
from tests.support.lab import run_operation

pytestmark = pytest.mark.django_db


def _copy(tenant: Tenant, source: AtlassianInstance, host: Host) -> AtlassianInstance:
    return make_instance(
        tenant,
        "acme-jira-copy",
        host=host,
        outbound_disabled=True,
        copy_of=source,
        copy_of_name=source.name,
    )


def test_the_copy_is_rolled_out_without_the_flags_and_then_marked_live(
    monkeypatch: pytest.MonkeyPatch,
    access_of: Any,
    sam: User,
    acme: Tenant,
    acme_jira: AtlassianInstance,
    app_host: Host,
) -> None:
    copy = _copy(acme, acme_jira, app_host)
    assert "senddisabled" in compose_render(copy).compose_yaml
    deployed: list[str] = []

    def fake_rollout(ctx: Any, instance: AtlassianInstance, **kwargs: Any) -> dict:
        deployed.append(compose_render(instance).compose_yaml)
        # still mute in the database while the rollout runs
        assert AtlassianInstance.objects.get(pk=instance.pk).outbound_disabled is True
        return {"seconds_to_running": 1.0}

    monkeypatch.setattr(rollout, "instance_rollout", fake_rollout)
    op = run_operation(instance_outbound_enable(actor=access_of(sam), instance=copy))
    assert op.status == "succeeded", op.error
    assert len(deployed) == 1 and "senddisabled" not in deployed[0]
    copy.refresh_from_db()
    assert copy.outbound_disabled is False and copy.status == "running"
    assert op.result["outbound_disabled"] is False


def test_a_failed_rollout_leaves_the_copy_marked_mute(
    monkeypatch: pytest.MonkeyPatch,
    access_of: Any,
    sam: User,
    acme: Tenant,
    acme_jira: AtlassianInstance,
    app_host: Host,
) -> None:
    copy = _copy(acme, acme_jira, app_host)

    def failing_rollout(ctx: Any, instance: AtlassianInstance, **kwargs: Any) -> dict:
        raise OperationFailed("The new project did not reach RUNNING; the previous one runs.")

    monkeypatch.setattr(rollout, "instance_rollout", failing_rollout)
    op = run_operation(instance_outbound_enable(actor=access_of(sam), instance=copy))
    assert op.status == "failed" and "did not reach RUNNING" in op.error
    copy.refresh_from_db()
    assert copy.outbound_disabled is True
