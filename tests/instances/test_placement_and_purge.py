"""Placement picks a host that fits; deleted instances are purged only after retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from panel.operations import operation_execute
from provisioning.models import Host, InstanceStatus, Operation
from provisioning.services import host_select_for_instance, instances_purge_due
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def _host(
    name: str,
    memory_mb: int,
    status: str = Host.Status.READY,
    role: str = "app",
    disk_free_gb: int = 100,
) -> Host:
    return Host.objects.create(
        name=name,
        role=role,
        address="127.0.0.50",
        status=status,
        memory_mb=memory_mb,
        disk_total_bytes=200 * 1024**3,
        disk_free_bytes=disk_free_gb * 1024**3,
    )


def test_a_host_without_enough_free_memory_is_not_chosen(acme):
    small = _host("small-host", memory_mb=2048)
    big = _host("big-host", memory_mb=16384)
    inst = make_instance(acme, "acme-big", heap_max_mb=4096, heap_min_mb=1024, status="pending")
    assert host_select_for_instance(inst) == big
    # memory already promised to instances on the big host counts against it
    make_instance(acme, "acme-other", host=big, heap_max_mb=12288, heap_min_mb=1024)
    assert host_select_for_instance(inst) is None
    assert small.memory_mb < 4096


def test_only_ready_app_hosts_with_disk_space_are_candidates(acme):
    _host("not-ready", memory_mb=65536, status=Host.Status.UNREACHABLE)
    _host("backup-only", memory_mb=65536, role="backup")
    _host("disk-full", memory_mb=65536, disk_free_gb=1)
    inst = make_instance(acme, "acme-x", heap_max_mb=2048, heap_min_mb=1024, status="pending")
    assert host_select_for_instance(inst) is None


def test_the_emptiest_fitting_host_wins(acme):
    _host("h-8g", memory_mb=8192)
    roomy = _host("h-32g", memory_mb=32768)
    inst = make_instance(acme, "acme-y", heap_max_mb=2048, heap_min_mb=1024, status="pending")
    assert host_select_for_instance(inst) == roomy


def test_deleted_instances_are_purged_only_after_their_retention(acme, app_host):
    recent = make_instance(
        acme,
        "acme-recent",
        status=InstanceStatus.DELETED,
        purge_after=timezone.now() + timedelta(days=3),
    )
    expired = make_instance(
        acme,
        "acme-expired",
        status=InstanceStatus.DELETED,
        purge_after=timezone.now() - timedelta(hours=1),
    )
    ops = instances_purge_due()
    assert [op.instance_id for op in ops] == [expired.pk]
    assert instances_purge_due() == []  # already being purged: not started twice
    assert not Operation.objects.filter(instance=recent).exists()
    # with no host the purge only clears the schedule
    operation_execute(ops[0].id)
    expired.refresh_from_db()
    assert Operation.objects.get(id=ops[0].id).status == "succeeded"
    assert expired.purge_after is None


def test_a_resize_beyond_what_the_host_has_free_is_refused_with_a_400(api, alice, acme):
    host = _host("h-16g", memory_mb=16384)
    inst = make_instance(acme, "acme-grow", host=host, heap_min_mb=1024, heap_max_mb=2048)
    # another tenant's instance already holds most of the host: 8192 + 2048 + 1024 MB
    make_instance(acme, "acme-neighbour", host=host, heap_min_mb=1024, heap_max_mb=8192)
    response = api(alice).post(
        f"/api/instances/{inst.pk}/resize/",
        {"heap_min_mb": 2048, "heap_max_mb": 8192},
        format="json",
    )
    assert response.status_code == 400, response.content
    message = response.json()["heap_max_mb"][0]
    assert "8192 MB" in message and "11264 MB of memory" in message
    assert "h-16g" not in message and host.address not in message  # no host details to tenants
    assert not Operation.objects.filter(kind="instance.resize").exists()
    inst.refresh_from_db()
    assert inst.heap_max_mb == 2048


def test_a_resize_counts_the_instance_own_memory_as_free(api, alice, acme):
    host = _host("h-8g", memory_mb=8192)
    inst = make_instance(acme, "acme-fits", host=host, heap_min_mb=1024, heap_max_mb=4096)
    # 4096 + 1024 + 1024 of 8192 are its own; growing to 6144 needs 6144 + 1536 + 1024 > 8192
    assert host_select_for_instance(inst) == host
    refused = api(alice).post(
        f"/api/instances/{inst.pk}/resize/",
        {"heap_min_mb": 1024, "heap_max_mb": 6144},
        format="json",
    )
    assert refused.status_code == 400
    accepted = api(alice).post(
        f"/api/instances/{inst.pk}/resize/",
        {"heap_min_mb": 1024, "heap_max_mb": 5376},  # 5376 + 1344 + 1024 = 7744 MB
        format="json",
    )
    assert accepted.status_code == 202, accepted.content
    assert Operation.objects.get(kind="instance.resize").params["heap_max_mb"] == 5376


def test_a_create_with_no_app_host_at_all_says_exactly_that_and_one_without_room_says_so(
    acme, alice
):
    from panel.access import access_for_user
    from panel.operations import operation_execute
    from provisioning.services import instance_create

    def create(name: str):
        op = instance_create(
            actor=access_for_user(alice),
            tenant=acme,
            name=name,
            product="jira-software",
            version="9.12.0",
            hostname=f"{name}.acme.example",
            heap_min_mb=1024,
            heap_max_mb=4096,
        )
        operation_execute(op.id)
        op.refresh_from_db()
        return op

    op = create("acme-first")
    assert op.status == "failed" and "no ready app host at all" in op.error
    _host("small-host", memory_mb=2048)
    op = create("acme-second")
    assert op.status == "failed" and "enough free memory and disk" in op.error
