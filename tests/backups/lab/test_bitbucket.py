"""Bitbucket backups on the lab (plan #13 P6): its home and database must come from the same
moment ("consistent snapshots",
https://confluence.atlassian.com/display/BITBUCKETSERVER091/Data+recovery+and+backups), so its
policy defaults to a cold backup.

The stand-in Bitbucket here pushes every 0.2 s on its own (``STANDIN_PUSH_INTERVAL``): each push
counts in its database, then in its home (``lab/standin/consistency.py``), and
``info.consistency`` says whether a restored copy's two halves agree. A hot backup (dump first,
home copied after) taken under those pushes restores torn: the negative control that shows the
check can fail. The default, cold, restores whole onto app2.
"""

from __future__ import annotations

from typing import Any

import pytest

from backups.models import Backup
from backups.services import backup_start, policy_for, restore_start
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Host
from provisioning.products import spec_for
from provisioning.services import instance_create
from tests.lab.labkit import wait_for
from tests.support.backup_lab import FAST, LabWorld, wait_ok
from tests.support.lab import run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]

PUSHING = {**FAST, "STANDIN_PUSH_INTERVAL": "0.2"}


def _consistency(lab: LabWorld, instance: AtlassianInstance) -> dict[str, Any]:
    return lab.api("info", instance=instance)["consistency"]


@pytest.fixture(scope="module")
def git(lab: LabWorld, django_db_blocker: Any) -> AtlassianInstance:
    """A Bitbucket on app1 that pushes on its own, committed like the world's rows."""
    spec = spec_for("bitbucket")
    name = f"b{lab.suffix}-git"
    lab.extra_projects.append(name)
    with django_db_blocker.unblock():
        op = instance_create(
            actor=access_for_user(lab.platform),
            tenant=lab.tenant,
            name=name,
            product="bitbucket",
            version="9.4.0",
            hostname=f"{name}.lab.example",
            host=lab.app_host,
            heap_min_mb=min(512, spec.min_heap_mb),
            heap_max_mb=spec.min_heap_mb,
            extra_env=PUSHING,
            tier="tier3",
        )
        op = run_operation(op)
        assert op.status == "succeeded" and op.instance_id, step_text(op)
        instance = AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(
            pk=op.instance_id
        )
    wait_for(
        lambda: (c := _consistency(lab, instance))["db"] >= 5 and c["ok"],
        timeout=60,
        what="the Bitbucket's own pushes",
    )
    return instance


@pytest.fixture(scope="module")
def app2(lab: LabWorld, django_db_blocker: Any) -> Host:
    with django_db_blocker.unblock():
        return lab.app2_host()


def _copy(lab: LabWorld, staff: Any, point: Backup, part: str, host: Host) -> AtlassianInstance:
    name = f"b{lab.suffix}-git-{part}"
    lab.extra_projects.append(name)
    wait_ok(
        restore_start(
            actor=staff,
            backup=point,
            mode="new_instance",
            name=name,
            hostname=f"{name}.staging.example",
            host=host,
        )
    )
    return AtlassianInstance.objects.select_related("host").get(name=name)


def test_a_hot_backup_under_pushes_restores_inconsistently(lab, staff, git):
    """The negative control: forced hot, the point's database is older than its home."""
    op = wait_ok(backup_start(actor=access_for_user(lab.admin), instance=git, mode="hot"))
    point = Backup.objects.get(pk=op.result["backup"])
    assert point.mode == "hot" and point.downtime_seconds == 0
    copy = _copy(lab, staff, point, "hot", lab.app_host)
    torn = _consistency(lab, copy)
    assert not torn["ok"] and torn["home"] > torn["db"], torn
    # production itself is whole: only the copy's two halves come from different moments
    assert _consistency(lab, git)["ok"]


def test_the_default_cold_backup_restores_consistently_onto_app2(lab, staff, git, app2):
    assert policy_for(git).mode == "cold"
    op = wait_ok(backup_start(actor=access_for_user(lab.admin), instance=git))
    point = Backup.objects.get(pk=op.result["backup"])
    assert point.mode == "cold" and point.downtime_seconds > 0
    assert "Cold backup: stopped the app" in step_text(op)
    copy = _copy(lab, staff, point, "cold", app2)
    assert copy.host_id == app2.pk
    whole = _consistency(lab, copy)
    assert whole["ok"] and whole["db"] >= 5, whole
    # the copy keeps pushing (its environment came along) and stays whole
    wait_for(
        lambda: (c := _consistency(lab, copy))["db"] > whole["db"] and c["ok"],
        timeout=30,
        what="pushes on the restored copy",
    )
    assert _consistency(lab, git)["ok"]  # production came back whole after its downtime
