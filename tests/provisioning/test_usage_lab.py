"""Resource use against the lab: the real health check, over its real SSH connection to app1,
samples a running instance's containers (``docker stats``) and directories (``du``) with
plausible numbers, measures disk again only when due, and the page and the API show it.

Written for the lead to run (a lab test); it uses the cheapest shared fixture that gives a
provisioned app host, ``ready_app_host`` (tests.support.lab), and one Jira stand-in."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from panel.access import access_for_user
from panel.registry import registry
from provisioning.compose import instance_limits
from provisioning.models import AtlassianInstance, InstanceHealthCheck, InstanceUsage
from provisioning.monitoring import instances_health_check
from provisioning.services import instance_create
from tests.support.lab import run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]

MIB = 1024**2


def _close(measured: int | None, expected: int) -> bool:
    """docker stats prints limits with four significant digits ("1.297GiB")."""
    return measured is not None and abs(measured - expected) <= expected * 0.01


def test_the_health_check_samples_a_running_instance_with_plausible_numbers(
    alice, acme, ready_app_host, unique_name, cleanup_projects, monkeypatch
):
    # DNS, certificates and the proxy have their own lab tests; here they would only add time.
    monkeypatch.setitem(registry["instance_hooks"], "publish", [])
    monkeypatch.setitem(registry["instance_hooks"], "unpublish", [])
    name = unique_name("jira")
    op = instance_create(
        actor=access_for_user(alice),
        tenant=acme,
        name=name,
        product="jira-software",
        version="9.12.0",
        hostname=f"{name}.acme.example",
        host=ready_app_host,
        heap_min_mb=512,
        heap_max_mb=1024,
        extra_env={"STANDIN_STARTUP_SECONDS": "2"},
    )
    inst = AtlassianInstance.objects.get(pk=op.instance_id)
    cleanup_projects.append(inst)
    op = run_operation(op)
    assert op.status == "succeeded", step_text(op)

    assert instances_health_check([ready_app_host.pk]) == 1
    assert InstanceHealthCheck.objects.get(instance=inst).ok
    sample = InstanceUsage.objects.get(instance=inst)
    limits = instance_limits(inst)
    # CPU: a percentage of one CPU, within what the containers may use
    assert sample.app_cpu_percent is not None and sample.db_cpu_percent is not None
    assert 0 <= sample.app_cpu_percent <= 100 * limits.app_cpus + 5
    assert 0 <= sample.db_cpu_percent <= 100 * limits.db_cpus + 5
    # memory: something in use, under the limits the compose file set
    assert _close(sample.app_memory_limit_bytes, limits.app_memory_mb * MIB)
    assert _close(sample.db_memory_limit_bytes, limits.db_memory_mb * MIB)
    assert MIB < sample.app_memory_bytes < sample.app_memory_limit_bytes
    assert MIB < sample.db_memory_bytes < sample.db_memory_limit_bytes
    # disk: a fresh PostgreSQL cluster takes tens of megabytes; the home has the stand-in's files
    assert sample.disk_error == "", sample.disk_error
    assert sample.home_bytes is not None and sample.home_bytes > 0
    assert sample.db_disk_bytes is not None and 10 * MIB < sample.db_disk_bytes < 2048 * MIB
    assert sample.disk_sampled_at == sample.sampled_at

    # a minute later CPU and memory are sampled again; disk is not due yet and carried forward
    assert instances_health_check([ready_app_host.pk]) == 1
    first, second = InstanceUsage.objects.filter(instance=inst).order_by("sampled_at")
    assert first.pk == sample.pk and second.sampled_at > first.sampled_at
    assert second.app_memory_bytes is not None
    assert (second.home_bytes, second.disk_sampled_at) == (first.home_bytes, first.disk_sampled_at)

    # the customer sees both samples on the instance page and through the API
    client = Client()
    client.force_login(alice)
    page = client.get(reverse("provisioning:instance_detail", args=[inst.pk])).content.decode()
    assert 'data-testid="usage-chart" data-samples="2"' in page
    answer = client.get(f"/api/instances/{inst.pk}/usage/")
    assert answer.status_code == 200 and len(answer.json()["samples"]) == 2
