"""Evacuating a failed app host without a lab: the plan (tier order, capacity, the backup host's
own app hosts only, instances without a point), who may start it and on which hosts, and what
starting it creates (one parent, one child per placed instance, only the parent enqueued).
The end-to-end run is ``tests/backups/test_evacuation_lab.py``."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from backups import selectors
from backups.evacuate import evacuation_plan, host_evacuate_start
from backups.models import BackupOperationKind
from panel.access import access_for_user
from provisioning.models import EvacuatedCopy, Host, Operation
from tenants.models import AuditEvent
from tests.backups.evacuation_world import app_host_make, evacuation_world, instance_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(app_host):
    return evacuation_world(app_host)


def _targets(plan) -> dict[str, str]:
    return {row.instance.name: row.target.name if row.target else "" for row in plan}


def test_the_plan_puts_tier_1_before_tier_3_whatever_the_names(acme, world):
    instance_on(acme, "aa-wiki", world.down, tier="tier3")
    instance_on(acme, "zz-jira", world.down, tier="tier1")
    instance_on(acme, "mm-desk", world.down, tier="tier2")
    plan = evacuation_plan(world.down)
    assert [row.instance.name for row in plan] == ["zz-jira", "mm-desk", "aa-wiki"]
    assert all(row.target == world.target and not row.problem for row in plan)


def test_two_instances_that_do_not_both_fit_on_one_host_go_to_different_hosts(acme, world):
    # app-one takes the tier-1 Jira (4864 MB) but then has no room for the tier-3 one (3328).
    Host.objects.filter(pk=world.target.pk).update(memory_mb=6000)
    app_host_make("app-three", world.backup, memory_mb=5000)
    instance_on(acme, "acme-jira", world.down, tier="tier1")
    instance_on(acme, "acme-wiki", world.down, tier="tier3")
    assert _targets(evacuation_plan(world.down)) == {
        "acme-jira": "app-one",  # the most free memory first
        "acme-wiki": "app-three",  # what the plan already put on app-one counts
    }


def test_the_second_instance_gets_a_problem_when_no_host_has_room_left(acme, world):
    Host.objects.filter(pk=world.target.pk).update(memory_mb=6000)
    instance_on(acme, "acme-jira", world.down, tier="tier1")
    instance_on(acme, "acme-wiki", world.down, tier="tier3")
    jira, wiki = evacuation_plan(world.down)
    assert jira.target == world.target
    assert wiki.target is None and "has room" in wiki.problem and "3328 MB" in wiki.problem


def test_app_hosts_of_another_backup_host_are_never_targets(acme, world):
    # app-other has by far the most room, but cannot read backup-one's points.
    instance_on(acme, "acme-jira", world.down)
    assert _targets(evacuation_plan(world.down)) == {"acme-jira": "app-one"}
    Host.objects.filter(pk=world.target.pk).update(memory_mb=1000)
    (row,) = evacuation_plan(world.down)
    assert row.target is None and "backup-one" in row.problem


def test_down_hosts_and_the_failed_host_itself_are_not_targets(acme, world):
    app_host_make("app-gone", world.backup, status=Host.Status.UNREACHABLE, memory_mb=262144)
    instance_on(acme, "acme-jira", world.down)
    assert _targets(evacuation_plan(world.down)) == {"acme-jira": "app-one"}


def test_an_instance_without_a_restorable_point_is_listed_with_the_reason(acme, world):
    instance_on(acme, "acme-jira", world.down)
    instance_on(acme, "acme-new", world.down, point=False)
    plan = {row.instance.name: row for row in evacuation_plan(world.down)}
    assert plan["acme-jira"].target == world.target
    assert plan["acme-new"].target is None and plan["acme-new"].point is None
    assert plan["acme-new"].problem == "No restorable backup point."


# --- starting it ----------------------------------------------------------------------------


def test_only_a_host_that_is_down_is_evacuated(acme, sam, world):
    instance_on(acme, "acme-jira", world.target)
    with pytest.raises(ValidationError) as refused:
        host_evacuate_start(actor=access_for_user(sam), host=world.target)
    assert "ready" in refused.value.message_dict["host"][0]
    assert not Operation.objects.exists()


def test_a_backup_host_is_not_evacuated(sam, world):
    Host.objects.filter(pk=world.backup.pk).update(status=Host.Status.UNREACHABLE)
    world.backup.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        host_evacuate_start(actor=access_for_user(sam), host=world.backup)
    assert "not an app host" in refused.value.message_dict["host"][0]


def test_customers_cannot_evacuate_even_a_host_of_their_instances(acme, alice, world):
    instance_on(acme, "acme-jira", world.down)
    with pytest.raises(PermissionDenied):
        host_evacuate_start(actor=access_for_user(alice), host=world.down)
    assert not Operation.objects.exists()


def test_a_host_with_nothing_placeable_is_refused_naming_why(acme, sam, world):
    instance_on(acme, "acme-new", world.down, point=False)
    with pytest.raises(ValidationError) as refused:
        host_evacuate_start(actor=access_for_user(sam), host=world.down)
    message = refused.value.message_dict["host"][0]
    assert "No instance of app-down can be placed" in message
    assert "acme-new: No restorable backup point." in message
    assert not Operation.objects.exists()


def test_it_creates_one_parent_and_a_child_per_placed_instance_and_enqueues_only_the_parent(
    acme, sam, world, no_broker, django_capture_on_commit_callbacks
):
    jira = instance_on(acme, "acme-jira", world.down, tier="tier1")
    wiki = instance_on(acme, "acme-wiki", world.down, tier="tier3")
    instance_on(acme, "acme-new", world.down, point=False)
    with django_capture_on_commit_callbacks(execute=True):
        parent = host_evacuate_start(
            actor=access_for_user(sam), host=world.down, idempotency_key="evac-1"
        )
    assert parent.kind == BackupOperationKind.HOST_EVACUATE and parent.host == world.down
    assert [row["name"] for row in parent.params["plan"]] == ["acme-jira", "acme-new", "acme-wiki"]
    children = list(Operation.objects.filter(parent=parent).order_by("created_at"))
    assert [c.instance for c in children] == [jira, wiki]  # tier order; acme-new is not moved
    for child in children:
        assert child.kind == BackupOperationKind.INSTANCE_EVACUATE and child.status == "pending"
        assert child.params["to_host"] == str(world.target.pk)
        assert child.params["from_host"] == str(world.down.pk)
        assert child.enqueued_at is None
    # The parent runs its children; only the parent goes to the broker.
    assert [str(op_id) for op_id in no_broker] == [str(parent.pk)]
    assert AuditEvent.objects.filter(action="host.evacuate").count() == 1
    # The same key again is the same evacuation.
    again = host_evacuate_start(
        actor=access_for_user(sam), host=world.down, idempotency_key="evac-1"
    )
    assert again == parent and Operation.objects.count() == 3


def test_a_second_evacuation_while_one_holds_the_host_is_a_conflict(acme, sam, world):
    from panel.operations import OperationConflict

    instance_on(acme, "acme-jira", world.down)
    host_evacuate_start(actor=access_for_user(sam), host=world.down)
    with pytest.raises(OperationConflict):
        host_evacuate_start(actor=access_for_user(sam), host=world.down)


# --- what the pages and the API read ----------------------------------------------------------


def test_the_state_lists_the_plan_the_last_evacuation_with_its_figures_and_the_copies(
    acme, sam, world
):
    jira = instance_on(acme, "acme-jira", world.down, tier="tier1")
    instance_on(acme, "acme-new", world.down, point=False)
    assert selectors.evacuation_state(world.down)["last_evacuation"] is None
    parent = host_evacuate_start(actor=access_for_user(sam), host=world.down)
    child = Operation.objects.get(parent=parent)
    Operation.objects.filter(pk=child.pk).update(
        status="succeeded",
        result={
            "to_host": "app-one",
            "rto_seconds": 612.4,
            "rto_objective_seconds": 21600.0,
            "data_age_seconds": 3000.0,
            "restore_seconds": 41.5,
        },
    )
    Operation.objects.filter(pk=parent.pk).update(
        status="succeeded", result={"seconds": 44.0, "host": "app-down"}
    )
    EvacuatedCopy.objects.create(
        host=world.down, instance=jira, instance_name=jira.name, project="acme-jira", directory="/x"
    )
    state = selectors.evacuation_state(world.down)
    assert (state["name"], state["status"], state["down"]) == ("app-down", "unreachable", True)
    assert state["status_reason"].startswith("No answer")
    assert [(r["name"], r["target"], bool(r["problem"])) for r in state["plan"]] == [
        ("acme-jira", "app-one", False),
        ("acme-new", "", True),
    ]
    last = state["last_evacuation"]
    assert last["operation"] == parent.pk and last["status"] == "succeeded"
    assert last["instances"] == [
        {
            "instance": "acme-jira",
            "instance_id": jira.pk,
            "status": "succeeded",
            "operation": child.pk,
            "to_host": "app-one",
            "rto_seconds": 612.4,
            "rto_objective_seconds": 21600.0,
            "data_age_seconds": 3000.0,
            "restore_seconds": 41.5,
            "error": "",
        }
    ]
    assert [row["name"] for row in last["not_moved"]] == ["acme-new"]
    assert (last["succeeded"], last["failed"], last["seconds"]) == (1, 0, 44.0)
    assert last["sum_of_restores_seconds"] == 41.5
    assert [c.instance_name for c in state["copies"]] == ["acme-jira"]
    assert state["copies_pending"] == 1 and state["copies_fenced"] == 0
    assert selectors.last_evacuation()["operation"] == parent.pk


def test_a_running_evacuation_shows_each_part_with_its_planned_target(acme, sam, world):
    instance_on(acme, "acme-jira", world.down)
    host_evacuate_start(actor=access_for_user(sam), host=world.down)
    last = selectors.last_evacuation()
    assert last["status"] == "pending" and last["seconds"] is None
    assert [(i["instance"], i["to_host"], i["status"]) for i in last["instances"]] == [
        ("acme-jira", "app-one", "pending")
    ]


def test_the_state_and_the_last_evacuation_take_a_fixed_number_of_queries(
    acme, sam, world, django_assert_num_queries
):
    for i in range(3):
        instance_on(acme, f"acme-app{i}", world.down)
    host_evacuate_start(actor=access_for_user(sam), host=world.down)
    for i in range(3):
        EvacuatedCopy.objects.create(
            host=world.down, instance_name=f"old{i}", project=f"old{i}", directory="/x"
        )
    # the last evacuation and its parts, the copies; the plan left out (the host page's panel)
    with django_assert_num_queries(3):
        selectors.evacuation_state(world.down, plan=False)
    with django_assert_num_queries(2):
        selectors.last_evacuation()


def test_customers_see_no_host_to_evacuate(alice, sam, pat, world):
    assert not selectors.evacuation_hosts(access_for_user(alice)).exists()
    for staff in (sam, pat):
        names = set(
            selectors.evacuation_hosts(access_for_user(staff)).values_list("name", flat=True)
        )
        assert names == {"app-one", "app-down", "app-other"}  # app hosts only
    assert [h.name for h in selectors.hosts_down(access_for_user(sam))] == ["app-down"]
