"""Upgrades on the lab: every upgrade takes a cold point first (the app stays stopped until
the new version starts), and a new version that fails after it upgraded the database is
undone by restoring that point with the previous image, never by starting the previous
image on the upgraded database (the products refuse it; Atlassian's roll-back restores
database and home: http://confluence.atlassian.com/display/JIRA/Rolling+Back+a+JIRA+Upgrade).

The stand-in's ``X-failing`` tags mark its schema table (``standin_schema``) with X and then
answer 500 ERROR; an older stand-in on a database marked newer logs "database was upgraded
by a newer version" and answers ERROR as well.
"""

from __future__ import annotations

import secrets
import time

import pytest

from backups.models import Backup, BackupKind, BackupMode, BackupStatus, Restore
from backups.store import DUMP_FILE, store_of
from panel.access import access_for_user
from panel.registry import registry
from provisioning.models import AtlassianInstance, InstanceStatus
from provisioning.products import spec_for
from provisioning.services import instance_upgrade
from tests.support.backup_lab import LabWorld, backup1, create_instance, sh
from tests.support.lab import run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


def _instance(lab: LabWorld, product: str, version: str) -> AtlassianInstance:
    spec = spec_for(product)
    name = f"u{lab.suffix}-{secrets.token_hex(2)}"
    lab.extra_projects.append(name)
    return create_instance(
        access_for_user(lab.platform),
        lab.tenant,
        lab.app_host,
        name,
        product=product,
        version=version,
        heap_min_mb=min(512, spec.min_heap_mb),
        heap_max_mb=spec.min_heap_mb,
    )


def _running(lab: LabWorld, inst: AtlassianInstance, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            info = lab.api("info", instance=inst)
            if info["state"] == "RUNNING":
                return info
            seen = info["state"]
        except OSError as exc:
            seen = exc
        time.sleep(1)
    raise AssertionError(f"{inst.name} is {seen!r}, not RUNNING, after {timeout:.0f} s")


def _markers(lab: LabWorld, inst: AtlassianInstance) -> list[str]:
    _running(lab, inst)
    titles = [f"before the upgrade {i} {secrets.token_hex(2)}" for i in range(3)]
    for title in titles:
        lab.api("items", {"title": title}, instance=inst)
    return titles


def _schema(lab: LabWorld, inst: AtlassianInstance) -> str:
    return lab.psql("SELECT version FROM standin_schema", instance=inst).strip()


def _app_log(inst: AtlassianInstance) -> str:
    return sh("docker", "compose", "-p", inst.name, "logs", "--no-color", "app")


def _point(op) -> Backup:
    point = Backup.objects.get(pk=op.params["pre_upgrade_point"])
    assert point.kind == BackupKind.PRE_UPGRADE and point.status == BackupStatus.SUCCEEDED
    assert point.operation_id == op.pk
    return point


def test_a_failing_upgrade_is_undone_by_restoring_its_point(lab, settings):
    # The failing tag answers ERROR at once; the timeout only bounds a stand-in that hangs.
    settings.PANEL_ROLLOUT_TIMEOUT = 60
    inst = _instance(lab, "jira-software", "9.12.0")
    titles = _markers(lab, inst)
    assert _schema(lab, inst) == "9.12.0"

    op = run_operation(
        instance_upgrade(actor=access_for_user(lab.admin), instance=inst, version="9.18.0-failing")
    )
    text = step_text(op)
    assert op.status == "failed", text
    point = _point(op)
    assert point.mode == BackupMode.COLD and point.version == "9.12.0"
    # The error says what failed, which point came back and when it was taken.
    named = point.point_name + (f" ({point.label})" if point.label else "")
    words = f"point {named} ({point.taken_at:%Y-%m-%d %H:%M:%S} UTC)"
    assert f"Rolled back by restoring {words} with jira-software 9.12.0" in op.error, op.error
    assert "Stopped the new version" in text and "Rolling back to the previous" not in text
    restore = Restore.objects.get(operation=op)
    assert restore.status == Restore.Status.SUCCEEDED and restore.backup == point

    inst.refresh_from_db()
    assert inst.status == InstanceStatus.RUNNING and inst.version == "9.12.0"
    info = _running(lab, inst)
    assert info["version"] == "9.12.0" and not info["refused"]
    assert [t for t in lab.titles(instance=inst) if t in titles] == titles
    # The database is the point's: the failing version's mark is gone, nothing is left over.
    assert _schema(lab, inst) == "9.12.0"
    assert (
        lab.psql(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '%restore%'", instance=inst
        ).strip()
        == "0"
    )
    # The previous image never ran on the upgraded database.
    assert "upgraded by a newer version" not in _app_log(inst)
    compose = open(f"{lab.instance_dir(inst)}/compose.yml").read()
    assert "9.12.0" in compose and "9.18.0-failing" not in compose


GOOD_UPGRADES = [
    ("jira-software", "9.12.0", "9.17.0"),
    ("jira-servicemanagement", "5.12.0", "5.17.0"),
    ("confluence", "8.5.0", "8.9.0"),
    ("bitbucket", "8.19.0", "9.4.0"),
]


@pytest.mark.parametrize(("product", "old", "new"), GOOD_UPGRADES)
def test_a_good_upgrade_sticks_after_a_cold_point(lab, product, old, new):
    inst = _instance(lab, product, old)
    titles = _markers(lab, inst)

    op = run_operation(
        instance_upgrade(actor=access_for_user(lab.admin), instance=inst, version=new)
    )
    text = step_text(op)
    assert op.status == "succeeded", f"{op.error}\n{text}"
    point = _point(op)
    assert op.result["pre_upgrade_point"] == str(point.pk)
    assert point.mode == BackupMode.COLD and point.version == old and point.downtime_seconds
    # Cold and left stopped: the backup never started the old version again before `up`.
    assert f"{inst.name} left stopped after the point" in text
    assert f"Started {inst.name} again" not in text

    inst.refresh_from_db()
    assert inst.status == InstanceStatus.RUNNING and inst.version == new
    info = _running(lab, inst)
    assert info["version"] == new
    assert [t for t in lab.titles(instance=inst) if t in titles] == titles
    assert _schema(lab, inst) == new
    assert not Restore.objects.filter(operation=op).exists()


def test_a_failing_upgrade_whose_point_cannot_be_restored_leaves_the_instance_stopped(
    lab, settings, monkeypatch
):
    settings.PANEL_ROLLOUT_TIMEOUT = 60
    inst = _instance(lab, "jira-software", "9.12.0")
    _markers(lab, inst)

    def damage(ctx, instance) -> None:
        # What a failing disk on the backup host does: the point's dump no longer matches
        # its manifest, so restoring it is refused.
        point = Backup.objects.get(pk=ctx.operation.params["pre_upgrade_point"])
        dump = f"{store_of(point).point(point.point_name)}/{DUMP_FILE}"
        backup1("sh", "-c", f"echo damaged >> {dump}")

    monkeypatch.setitem(
        registry["instance_hooks"],
        "pre_upgrade",
        [*registry["instance_hooks"]["pre_upgrade"], damage],
    )
    op = run_operation(
        instance_upgrade(actor=access_for_user(lab.admin), instance=inst, version="9.18.0-failing")
    )
    text = step_text(op)
    assert op.status == "failed", text
    point = _point(op)
    assert "after the failed upgrade failed too" in op.error and "damaged" in op.error, op.error
    assert "Rolled back" not in op.error
    assert f"left stopped: its database {inst.db_name} holds the state" in op.error
    inst.refresh_from_db()
    assert inst.status == InstanceStatus.FAILED and inst.version == "9.12.0"
    assert point.point_name in inst.status_reason
    assert Restore.objects.get(operation=op).status == Restore.Status.FAILED
    # Left stopped: the previous image was not started on the database 9.18.0 upgraded.
    running = sh("docker", "compose", "-p", inst.name, "ps", "--status", "running", "-q", "app")
    assert running.strip() == ""
    assert "upgraded by a newer version" not in _app_log(inst)
    compose = open(f"{lab.instance_dir(inst)}/compose.yml").read()
    assert "9.12.0" in compose and "9.18.0-failing" not in compose
