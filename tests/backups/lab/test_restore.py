"""Restores on the lab: an earlier point in place (exact files, owners, modes and rows come
back), a point into a new instance (its own database named in its copied home, its own base
URL; a point without a base URL is refused), and a scheduled-style drill."""

from __future__ import annotations

import os

import pytest

from backups.models import Backup, BackupKind, BackupStatus, Restore, RestoreDrill
from backups.selectors import dr_dashboard
from backups.services import backup_start, drill_start, restore_start
from panel.access import access_for_user
from provisioning.homefiles import db_config_read
from provisioning.models import AtlassianInstance
from tests.support.backup_lab import home_listing, sh, wait_ok
from tests.support.lab import run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]

HOME = "/var/atlassian/application-data/jira"
# The stand-in, like Jira, appends to its log on every start (its dbconfig.xml is written on
# the first start only, so an in-place restore must bring it back exactly).
START_TOUCHED = ("log",)


def _backup(lab) -> Backup:
    op = wait_ok(backup_start(actor=access_for_user(lab.admin), instance=lab.instance))
    return Backup.objects.get(pk=op.result["backup"])


def test_an_earlier_point_restored_in_place_brings_back_its_exact_files_owners_modes_and_rows(
    lab, staff
):
    for title in ("alpha", "beta"):
        lab.api("items", {"title": title})
    for name in ("a", "b", "c", "d"):
        lab.api("files", {"path": f"data/{name}.txt", "content": f"{name} first\n"})
    lab.as_app("chmod", "0640", f"{HOME}/data/b.txt")
    lab.as_app("chown", "0:2001", f"{HOME}/data/c.txt")
    lab.as_app("ln", "-sfn", "a.txt", f"{HOME}/data/link")
    lab.as_app("ln", "-f", f"{HOME}/data/a.txt", f"{HOME}/data/a-again")
    home = f"{lab.idir}/home"
    titles = lab.titles()
    listing = home_listing(home, skip=START_TOUCHED)
    earlier = _backup(lab)

    lab.api("items", {"title": "gamma"})
    lab.psql("DELETE FROM standin_item WHERE title = 'alpha'")
    lab.as_app("sh", "-c", f"echo 'a second' > {HOME}/data/a.txt")
    lab.as_app("chmod", "0600", f"{HOME}/data/b.txt")
    lab.as_app("chown", "2001:2001", f"{HOME}/data/c.txt")
    lab.as_app("rm", f"{HOME}/data/d.txt")
    lab.api("files", {"path": "data/e.txt", "content": "new\n"})
    later = _backup(lab)
    assert later.label == "extra" and home_listing(home, skip=START_TOUCHED) != listing

    op = wait_ok(
        restore_start(actor=staff, backup=earlier, mode="in_place", confirm_name=lab.instance.name)
    )
    assert op.result["point"] == earlier.point_name
    assert op.result["health"] == "RUNNING" and op.result["rto_seconds"] > 0
    assert "health: RUNNING" in op.steps.order_by("-id").first().message
    assert lab.titles() == titles
    assert home_listing(home, skip=START_TOUCHED) == listing
    assert os.stat(f"{home}/data/a.txt").st_ino == os.stat(f"{home}/data/a-again").st_ino
    restore = Restore.objects.get(operation=op)
    assert restore.status == Restore.Status.SUCCEEDED and restore.rto_seconds > 0
    assert restore.safety_backup.kind == BackupKind.SAFETY
    assert restore.safety_backup.status == BackupStatus.SUCCEEDED
    lab.refresh()
    assert lab.instance.status == "running" and lab.instance.health == "healthy"
    # the database the restore replaced is gone; nothing is left behind on the app host
    assert (
        lab.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%_pre_restore'").strip()
        == "0"
    )
    assert not os.path.exists(f"{lab.idir}/restore.dump")


def test_a_point_restored_into_a_new_instance_is_a_copy_with_its_own_base_url(lab, staff):
    lab.api("items", {"title": "copied row"})
    lab.api("files", {"path": "data/copied.txt", "content": "copied file\n"})
    point = _backup(lab)
    name = f"b{lab.suffix}-copy"
    lab.extra_projects.append(name)
    op = wait_ok(
        restore_start(
            actor=staff,
            backup=point,
            mode="new_instance",
            name=name,
            hostname=f"{name}.staging.example",
        )
    )
    copy = AtlassianInstance.objects.get(name=name)
    assert copy.status == "running" and copy.tenant_id == lab.instance.tenant_id
    assert copy.db_password != lab.instance.db_password
    assert op.result["base_url"] == f"https://{name}.staging.example"
    info = lab.api("info", instance=copy)
    assert info["state"] == "RUNNING"
    assert info["base_url"] == f"https://{name}.staging.example"
    stored = lab.psql(
        "SELECT s.propertyvalue FROM propertyentry e JOIN propertystring s "
        "ON s.id = e.id WHERE e.property_key = 'jira.baseurl'",
        instance=copy,
    )
    assert stored.strip() == f"https://{name}.staging.example"
    assert "copied row" in lab.titles(instance=copy)
    assert sh("cat", f"{lab.app_host.data_root}/instances/{name}/home/data/copied.txt") == (
        "copied file\n"
    )
    # the copied dbconfig.xml names the copy's database (the stand-in reads only the file)
    with open(f"{lab.app_host.data_root}/instances/{name}/home/dbconfig.xml", "rb") as fh:
        named = db_config_read("jira-software", fh.read())
    assert (named.database, named.user, named.password) == (
        copy.db_name,
        copy.db_user,
        copy.db_password,
    )
    assert f"now names {copy.db_name} as user {copy.db_user}" in step_text(op)
    # production still points at itself
    assert lab.api("info")["base_url"] == f"https://{lab.instance.hostname}"


def test_a_drill_restores_the_latest_point_into_a_scratch_instance_and_removes_it(
    lab, staff, settings
):
    settings.PANEL_BACKUP_DRILL_EXTRA_ENV = {"STANDIN_STARTUP_SECONDS": "2"}
    point = _backup(lab)
    op = wait_ok(drill_start(actor=staff, instance=lab.instance))
    drill = RestoreDrill.objects.get(operation=op)
    assert drill.point_name == point.point_name
    assert drill.status == RestoreDrill.Status.PASSED and drill.cleaned_up
    assert drill.rto_seconds > 0 and drill.within_rto
    left = sh(
        "docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={drill.scratch_name}"
    )
    assert left.strip() == ""
    assert not os.path.exists(f"{lab.app_host.data_root}/instances/{drill.scratch_name}")
    assert not AtlassianInstance.objects.filter(name=drill.scratch_name).exists()
    tier = next(row for row in dr_dashboard(staff) if row["tier"] == lab.instance.tier)
    assert tier["drills_run"] >= 1 and tier["worst_rto_seconds"] >= drill.rto_seconds
    assert tier["worst_rto_ok"]


def test_a_restore_that_fails_half_way_brings_the_instance_back_to_its_state_before(
    lab, staff, monkeypatch
):
    earlier = _backup(lab)
    lab.api("items", {"title": "written after the point"})
    lab.api("files", {"path": "data/after.txt", "content": "after\n"})
    home = f"{lab.idir}/home"
    titles = lab.titles()
    listing = home_listing(home, skip=START_TOUCHED)
    # The database swap fails after home was already replaced by the point's.
    monkeypatch.setattr(
        "backups.restore._swap_sql", lambda *names: "SELECT 1/0; -- the swap breaks\n"
    )
    op = run_operation(
        restore_start(actor=staff, backup=earlier, mode="in_place", confirm_name=lab.instance.name)
    )
    assert op.status == "failed"
    assert "brought back to its state before the restore" in op.error
    assert "division by zero" in op.error
    restore = Restore.objects.get(operation=op)
    assert restore.status == Restore.Status.ROLLED_BACK and restore.safety_backup
    assert lab.titles() == titles
    assert home_listing(home, skip=START_TOUCHED) == listing
    lab.refresh()
    assert lab.instance.status == "running" and lab.api("info")["state"] == "RUNNING"
    assert (
        lab.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%restore%'").strip() == "0"
    )


def test_a_restore_whose_point_has_no_base_url_fails_with_the_reason(lab, staff):
    # A point whose database holds an empty base URL (as if it was never set): a copy of it
    # would take whatever URL it is first reached by, so the restore refuses to call it done.
    update = (
        "UPDATE propertystring SET propertyvalue = '{}' WHERE id IN "
        "(SELECT id FROM propertyentry WHERE property_key = 'jira.baseurl')"
    )
    try:
        lab.psql(update.format(""))
        point = _backup(lab)
    finally:
        lab.psql(update.format(lab.instance.base_url))  # a lab hostname: no quotes in it
    name = f"b{lab.suffix}-nourl"
    lab.extra_projects.append(name)
    op = run_operation(
        restore_start(
            actor=staff,
            backup=point,
            mode="new_instance",
            name=name,
            hostname=f"{name}.staging.example",
        )
    )
    assert op.status == "failed", step_text(op)
    assert "property jira.baseurl" in op.error and "held no base URL" in op.error
    assert f"would not link to https://{name}.staging.example" in op.error
    copy = AtlassianInstance.objects.get(name=name)
    assert copy.status == "failed"
    # it never started its app
    running = sh(
        "docker",
        "ps",
        "-q",
        "--filter",
        f"label=com.docker.compose.project={name}",
        "--filter",
        "label=com.docker.compose.service=app",
    )
    assert running.strip() == ""
    assert lab.api("info")["base_url"] == lab.instance.base_url
