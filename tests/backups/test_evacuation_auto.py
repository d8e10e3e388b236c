"""Automatic evacuation (issue #15): off by default; per tier after its delay, with a notice
before it starts and after it ends (staff), and one to each tenant whose instance moved."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from backups.evacuate import _evacuated_notify, evacuations_auto
from backups.models import Backup
from notifications.models import NotificationEvent
from provisioning.models import Host, Operation
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(acme, app_host):
    backup = backup_host()
    down = with_backup_host(app_host, backup)
    Host.objects.filter(pk=down.pk).update(
        status=Host.Status.UNREACHABLE, last_seen_at=timezone.now() - timedelta(minutes=15)
    )
    down.refresh_from_db()
    healthy = Host.objects.create(
        name="app-two",
        role=Host.Role.APP,
        address="127.0.0.12",
        ssh_port=2222,
        data_root="/srv/atlassian",
        status=Host.Status.READY,
        memory_mb=16384,
        cpu_count=4,
        disk_total_bytes=200 * 1024**3,
        disk_free_bytes=150 * 1024**3,
        backup_host=backup,
    )
    urgent = make_instance(acme, "acme-jira", host=down, tier="tier1")
    internal = make_instance(acme, "acme-wiki", host=down, tier="tier3")
    for inst in (urgent, internal):
        make_point(inst)
    return {"down": down, "healthy": healthy, "urgent": urgent, "internal": internal}


def _evacuations(host: Host) -> list[Operation]:
    return list(Operation.objects.filter(kind="host.evacuate", host=host).order_by("created_at"))


def test_it_is_off_by_default_whatever_is_down(world, settings):
    settings.PANEL_EVACUATE_AUTO_MINUTES = {}
    assert evacuations_auto() == []
    assert _evacuations(world["down"]) == []
    assert not NotificationEvent.objects.filter(event="host.evacuation_due").exists()


def test_it_warns_first_and_evacuates_each_tier_once_its_delay_has_passed(world, settings):
    settings.PANEL_EVACUATE_AUTO_MINUTES = {"tier1": 10, "tier3": 60}
    down = world["down"]

    started = evacuations_auto()
    assert len(started) == 1
    (parent,) = _evacuations(down)
    assert parent.params["automatic"] is True and parent.requested_by is None
    children = Operation.objects.filter(parent=parent)
    # only the tier-1 instance: tier 3 waits an hour
    assert [c.instance_id for c in children] == [world["urgent"].pk]
    assert children[0].params["to_host"] == str(world["healthy"].pk)
    warned = NotificationEvent.objects.get(event="host.evacuation_due")
    assert warned.tenant_id is None and "tier1 after 10 min" in warned.body

    # while it runs, and after it ended, the same instance is not tried again
    assert evacuations_auto() == []
    Operation.objects.filter(pk=parent.pk).update(status="succeeded")
    Operation.objects.filter(parent=parent).update(status="failed")
    assert evacuations_auto() == []
    # an hour after the host was last seen, the tier-3 instance goes too
    later = timezone.now() + timedelta(minutes=46)
    assert len(evacuations_auto(now=later)) == 1
    last = _evacuations(down)[-1]
    assert [c.instance_id for c in Operation.objects.filter(parent=last)] == [world["internal"].pk]
    # the warning was told once for this outage
    assert NotificationEvent.objects.filter(event="host.evacuation_due").count() == 1


def test_a_ready_host_is_never_evacuated_automatically(world, settings):
    settings.PANEL_EVACUATE_AUTO_MINUTES = {"tier1": 0, "tier3": 0}
    Host.objects.filter(pk=world["down"].pk).update(status=Host.Status.READY)
    assert evacuations_auto() == []


def test_staff_and_each_tenant_hear_how_it_went(world):
    parent = Operation.objects.create(kind="host.evacuate", host=world["down"], status="running")
    summary = {
        "instances": [
            {
                "instance": "acme-jira",
                "status": "succeeded",
                "to_host": "app-two",
                "rto_seconds": 95.0,
                "data_age_seconds": 1800.0,
                "error": "",
            },
            {"instance": "acme-wiki", "status": "failed", "error": "disk full"},
        ],
        "not_moved": [{"name": "acme-old", "problem": "No restorable backup point."}],
        "succeeded": 1,
    }
    _evacuated_notify(parent, world["down"], summary)
    staff = NotificationEvent.objects.get(event="host.evacuated")
    assert staff.tenant_id is None and "1 of 2" in staff.subject
    assert "acme-wiki: not back (disk full)" in staff.body
    assert "acme-old: not moved" in staff.body
    (tenant,) = NotificationEvent.objects.filter(event="instance.evacuated")
    assert tenant.tenant_id == world["urgent"].tenant_id
    assert "1800 s before the failure" in tenant.body


def test_the_delays_setting_is_read_as_tier_minutes_pairs(monkeypatch):
    from panel import settings as panel_settings

    monkeypatch.setenv("PANEL_EVACUATE_AUTO_MINUTES", "tier1=10, tier2 = 30")
    assert panel_settings._tier_minutes("PANEL_EVACUATE_AUTO_MINUTES") == {
        "tier1": 10,
        "tier2": 30,
    }
    monkeypatch.setenv("PANEL_EVACUATE_AUTO_MINUTES", "tier1=soon")
    with pytest.raises(ImproperlyConfigured, match="tier=minutes pairs"):
        panel_settings._tier_minutes("PANEL_EVACUATE_AUTO_MINUTES")


def test_the_plan_counts_the_disk_it_already_gave_and_skips_an_instance_held_by_an_operation(
    world,
):
    from backups.evacuate import evacuation_plan

    # room for one instance's disk, memory for both
    Host.objects.filter(pk=world["healthy"].pk).update(disk_free_bytes=6 * 1024**3)
    plan = evacuation_plan(world["down"])
    assert [(r.instance.name, bool(r.target)) for r in plan] == [
        ("acme-jira", True),
        ("acme-wiki", False),
    ]
    assert "5 GB of disk" in plan[1].problem
    # a backup hung on the dead host holds the tier-1 instance: it waits, the other one goes
    Host.objects.filter(pk=world["healthy"].pk).update(disk_free_bytes=150 * 1024**3)
    Operation.objects.create(
        kind="backup.create",
        instance=world["urgent"],
        status="running",
        lock_key=f"instance:{world['urgent'].pk}",
    )
    plan = evacuation_plan(world["down"])
    assert plan[0].target is None and "backup.create" in plan[0].problem
    assert plan[1].target == world["healthy"]


def test_a_failed_part_goes_back_to_the_failed_host_and_its_target_deployment_is_fenced(world):
    from backups.evacuate import _moved_back
    from provisioning.models import AtlassianInstance, EvacuatedCopy

    inst, down, healthy = world["urgent"], world["down"], world["healthy"]
    AtlassianInstance.objects.filter(pk=inst.pk).update(
        host=healthy, compose_project="acme-jira_abc123", status="restoring"
    )
    EvacuatedCopy.objects.create(
        host=down, instance=inst, instance_name=inst.name, project=inst.name, directory="/x"
    )
    op = Operation.objects.create(
        kind="backup.evacuate",
        instance=inst,
        status="failed",
        params={
            "from_host": str(down.pk),
            "old": {"compose_project": "", "host_port": None, "wal_archiving": False},
            "new": {"host": str(healthy.pk), "project": "acme-jira_abc123"},
        },
    )
    _moved_back(op, "the worker was killed")
    inst.refresh_from_db()
    assert inst.host_id == down.pk and inst.compose_project == "" and inst.status == "failed"
    assert "the worker was killed" in inst.status_reason
    # the old host's record is gone (nothing moved), the target's half-made one will be fenced
    assert not EvacuatedCopy.objects.filter(host=down).exists()
    fence = EvacuatedCopy.objects.get(host=healthy)
    assert (
        fence.project == "acme-jira_abc123" and fence.directory == "" and fence.status == "pending"
    )


def test_a_part_refused_before_it_moved_anything_changes_nothing(world):
    from backups.evacuate import _moved_back

    inst = world["urgent"]
    op = Operation.objects.create(
        kind="backup.evacuate",
        instance=inst,
        status="failed",
        params={"from_host": str(world["down"].pk)},
    )
    _moved_back(op, "refused")
    inst.refresh_from_db()
    assert inst.host_id == world["down"].pk and inst.status == "running"


def test_a_host_that_answered_since_the_evacuation_was_asked_for_keeps_its_instance(world):
    from backups.evacuate import _move
    from panel.operations import OperationContext, OperationFailed

    parent = Operation.objects.create(kind="host.evacuate", host=world["down"], status="running")
    child = Operation.objects.create(
        kind="backup.evacuate",
        instance=world["urgent"],
        status="running",
        parent=parent,
        params={"from_host": str(world["down"].pk)},
    )
    # its health check reached it after the evacuation started (it is being fenced)
    Host.objects.filter(pk=world["down"].pk).update(
        last_seen_at=parent.created_at + timedelta(seconds=5)
    )
    inst = world["urgent"]
    inst.refresh_from_db()
    with pytest.raises(OperationFailed, match="answers again"):
        _move(OperationContext(child), inst, world["healthy"], Backup.objects.get(instance=inst))
    inst.refresh_from_db()
    assert inst.host_id == world["down"].pk


def _child(world) -> Operation:
    parent = Operation.objects.create(kind="host.evacuate", host=world["down"], status="running")
    return Operation.objects.create(
        kind="backup.evacuate",
        instance=world["urgent"],
        status="running",
        parent=parent,
        params={"from_host": str(world["down"].pk)},
    )


def test_a_move_whose_planned_room_was_taken_since_goes_to_another_host_with_room(world):
    from backups.evacuate import _move
    from panel.operations import OperationContext

    child = _child(world)
    spare = Host.objects.create(
        name="app-three", role=Host.Role.APP, address="127.0.0.13", data_root="/srv/atlassian",
        status=Host.Status.READY, memory_mb=32768, cpu_count=4,
        disk_free_bytes=150 * 1024**3, backup_host=world["healthy"].backup_host,
    )  # fmt: skip
    # another evacuation (or a create) took the planned host's memory after the plan was made
    Host.objects.filter(pk=world["healthy"].pk).update(memory_mb=512)
    inst = world["urgent"]
    ctx = OperationContext(child)
    went = _move(ctx, inst, world["healthy"], Backup.objects.get(instance=inst))
    assert went == spare
    inst.refresh_from_db()
    assert inst.host_id == spare.pk
    child.refresh_from_db()
    assert child.params["new"]["host"] == str(spare.pk)
    assert "goes to app-three instead" in " ".join(s.message for s in child.steps.all())


def test_a_move_with_no_room_left_anywhere_is_refused_and_the_instance_stays(world):
    from backups.evacuate import _move
    from panel.operations import OperationContext, OperationFailed

    child = _child(world)
    Host.objects.filter(pk=world["healthy"].pk).update(memory_mb=512)
    inst = world["urgent"]
    with pytest.raises(OperationFailed, match="No ready app host has room"):
        _move(OperationContext(child), inst, world["healthy"], Backup.objects.get(instance=inst))
    inst.refresh_from_db()
    assert inst.host_id == world["down"].pk
    child.refresh_from_db()
    assert "new" not in child.params


def test_a_tenant_whose_database_came_from_the_archive_hears_which_part_is_from_when(world):
    parent = Operation.objects.create(kind="host.evacuate", host=world["down"], status="running")
    summary = {
        "instances": [
            {
                "instance": "acme-jira",
                "status": "succeeded",
                "to_host": "app-two",
                "rto_seconds": 95.0,
                "data_age_seconds": 4.0,
                "database_from": "wal",
                "home_at": "2026-12-01T01:00:00+00:00",
                "error": "",
            }
        ],
        "not_moved": [],
        "succeeded": 1,
    }
    _evacuated_notify(parent, world["down"], summary)
    (tenant,) = NotificationEvent.objects.filter(event="instance.evacuated")
    assert "database as of 4 s before the failure" in tenant.body
    assert "home from its backup of 2026-12-01T01:00:00+00:00" in tenant.body


def _failing_publish_child(world, monkeypatch, *, dns_fails: bool = False):
    """Run one evacuation part whose restore works and whose publishing on the target fails
    after its DNS record went there (the proxy site could not be deployed), recording where
    the certificates app's "moved_back" hook points the record."""
    import backups.evacuate as evacuate
    import certificates.services.publish as publish
    from panel.operations import OperationContext, OperationFailed

    pointed: list[tuple[str, str]] = []

    def dns_publish(ctx, instance):
        if dns_fails:
            raise OperationFailed("the DNS provider refused the change")
        pointed.append((instance.hostname, instance.host.name))
        return []

    def published(ctx, instance):
        pointed.append((instance.hostname, instance.host.name))  # publish put it on the target
        raise OperationFailed("The proxy site of acme-jira was not deployed: disk full")

    removed: list[str] = []
    monkeypatch.setattr(publish, "dns_publish", dns_publish)
    monkeypatch.setattr(evacuate, "instance_published", published)
    monkeypatch.setattr(evacuate, "_stale_set_aside", lambda ctx, instance: None)
    monkeypatch.setattr(
        evacuate, "restore_new", lambda ctx, instance, point, **kw: type("R", (), {"health": "ok"})
    )
    monkeypatch.setattr(evacuate, "scratch_remove", lambda ctx, inst: removed.append(inst.name))
    inst = world["urgent"]
    child = _child(world)
    child.params = {
        **child.params,
        "point": str(Backup.objects.get(instance=inst).pk),
        "to_host": str(world["healthy"].pk),
    }
    child.save(update_fields=["params"])
    with pytest.raises(OperationFailed, match="proxy site"):
        evacuate.instance_evacuate_run(OperationContext(child))
    return child, pointed, removed


def test_a_part_that_fails_after_publishing_points_dns_back_at_the_old_host(world, monkeypatch):
    child, pointed, removed = _failing_publish_child(world, monkeypatch)
    # published on the target, then pointed back at the failed host, where the instance's
    # record goes back too (the runner's compensation, _moved_back)
    assert pointed == [("acme-jira.example.com", "app-two"), ("acme-jira.example.com", "app-one")]
    assert removed == ["acme-jira"]
    steps = " ".join(s.message for s in child.steps.all())
    assert "Pointing acme-jira.example.com back at app-one" in steps


def test_a_failed_point_back_is_a_warning_and_the_move_keeps_its_own_error(world, monkeypatch):
    child, pointed, removed = _failing_publish_child(world, monkeypatch, dns_fails=True)
    assert pointed == [("acme-jira.example.com", "app-two")]
    warning = child.steps.get(level="warning", message__contains="could not be pointed back")
    assert "the DNS provider refused the change" in warning.message
