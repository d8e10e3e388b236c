"""Backups of a real instance on the lab: hot and cold, verified points, hard links."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from backups.models import Backup, BackupStatus
from backups.services import backup_start
from panel.access import access_for_user
from tests.support.backup_lab import backup1, wait_ok
from tests.support.lab import container_ip, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


def test_a_hot_backup_stores_a_verified_point_and_no_status_poll_fails(lab):
    lab.fresh_area()
    lab.api("items", {"title": "hot-1"})
    lab.api("files", {"path": "data/hot.txt", "content": "hot backup\n"})
    ip = container_ip(lab.instance.name, "app", "panel-proxy")
    failures, polls = [], []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://{ip}:8080/status", timeout=2) as r:
                    body = r.read().decode()
                    polls.append(body)
                    if '"RUNNING"' not in body:
                        failures.append(body)
            except Exception as exc:  # noqa: BLE001
                failures.append(repr(exc))
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        op = wait_ok(backup_start(actor=access_for_user(lab.admin), instance=lab.instance))
    finally:
        stop.set()
        poller.join(5)
    assert failures == [] and len(polls) > 5
    backup = Backup.objects.get(pk=op.result["backup"])
    assert backup.status == BackupStatus.SUCCEEDED and backup.mode == "hot"
    assert backup.downtime_seconds == 0
    assert backup.label == "extra"  # an extra backup, kept outside the schedule's slots
    assert backup.file_count >= 2 and backup.dump_bytes > 0 and backup.verified_at
    assert backup.bytes_transferred > 0 and backup.logical_bytes > backup.dump_bytes
    assert lab.points_on_disk() == [backup.point_name]
    point = f"{lab.area()}/points/{backup.point_name}"
    # the manifest verifies on the backup host, and the dump is a real pg_dump archive
    backup1("sh", "-c", f"cd {point} && sha256sum --check --quiet manifest.sha256")
    assert backup1("sh", "-c", f"head -c 5 {point}/db.dump") == "PGDMP"
    assert backup1("cat", f"{point}/home/data/hot.txt") == "hot backup\n"


def test_a_cold_backup_stops_the_instance_records_its_downtime_and_starts_it_again(lab):
    op = wait_ok(backup_start(actor=access_for_user(lab.admin), instance=lab.instance, mode="cold"))
    backup = Backup.objects.get(pk=op.result["backup"])
    assert backup.mode == "cold" and backup.status == BackupStatus.SUCCEEDED
    assert backup.downtime_seconds > 1
    assert op.result["downtime_seconds"] == backup.downtime_seconds
    assert "stopped the app" in step_text(op).lower()
    assert lab.api("info")["state"] == "RUNNING"
    lab.refresh()
    assert lab.instance.status == "running"


def test_the_catalogue_follows_what_is_really_on_the_backup_host(lab):
    from backups.catalogue import catalogue_refresh

    lab.fresh_area()
    admin = access_for_user(lab.admin)
    first = Backup.objects.get(
        pk=wait_ok(backup_start(actor=admin, instance=lab.instance)).result["backup"]
    )
    second = Backup.objects.get(
        pk=wait_ok(backup_start(actor=admin, instance=lab.instance)).result["backup"]
    )
    points = f"{lab.area()}/points"
    backup1("rm", "-rf", f"{points}/{first.point_name}")  # lost behind the panel's back
    # A copy under another name: its point.json names the point it was, so it is no point of
    # the panel's and is never imported (retention must not count names it did not write).
    backup1("cp", "-al", f"{points}/{second.point_name}", f"{points}/20250101T000000Z")
    # A point the panel wrote whose catalogue row was lost: imported again from its point.json.
    second_sha = second.dump_sha256
    Backup.objects.filter(pk=second.pk).delete()
    catalogue_refresh(lab.instance)
    first.refresh_from_db()
    assert first.status == BackupStatus.MISSING
    assert not Backup.objects.filter(point_name="20250101T000000Z").exists()
    found = Backup.objects.get(instance=lab.instance, point_name=second.point_name)
    assert found.status == BackupStatus.SUCCEEDED and "imported" in found.error
    assert found.dump_sha256 == second_sha
