"""A backup that would fill the backup host's disk past PANEL_BACKUP_DISK_MAX_PERCENT is
refused before anything is written, with the reason; retained points are untouched."""

from __future__ import annotations

import pytest

from backups.models import Backup, BackupStatus
from backups.services import backup_start
from panel.access import access_for_user
from tests.support.backup_lab import wait_ok
from tests.support.lab import run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


def test_a_backup_is_refused_when_the_backup_disk_would_pass_the_threshold(lab, settings):
    lab.fresh_area()
    actor = access_for_user(lab.admin)
    good = wait_ok(backup_start(actor=actor, instance=lab.instance))
    settings.PANEL_BACKUP_DISK_MAX_PERCENT = 0.5  # the lab's disk is fuller than that already
    op = run_operation(backup_start(actor=actor, instance=lab.instance))
    assert op.status == "failed", step_text(op)
    assert "Not enough space for a new point" in op.error
    assert "limit 0.5 %" in op.error
    assert lab.points_on_disk() == [Backup.objects.get(pk=good.result["backup"]).point_name]
    failed = Backup.objects.filter(instance=lab.instance, status=BackupStatus.FAILED).get()
    assert "Not enough space" in failed.error
