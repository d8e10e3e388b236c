"""Support restores an instance to a second in the browser: the backups page shows the
recoverable window, a time outside it comes back as an error on the time picker with what was
typed still there, and a time inside it starts the restore and lands on its operation page.

Needs no lab host: the instance, its base backup, home point and WAL archive are rows, and the
operation is only started (kept off the broker, so the session's worker never runs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from backups.models import BaseBackup, WalArchive
from provisioning.models import AtlassianInstance, Host, Operation
from tenants.models import Tenant
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance


@pytest.fixture
def archived(acme: Tenant, app_host: Host) -> AtlassianInstance:
    """Acme's Jira with WAL archiving on and a window from 2 hours ago to 10 seconds ago."""
    now = timezone.now().replace(microsecond=0)
    backup = backup_host()
    host = with_backup_host(app_host, backup)
    instance = make_instance(acme, "acme-jira", host=host, wal_archiving=True)
    make_point(instance, taken_at=now - timedelta(hours=3), label="daily.0")
    BaseBackup.objects.create(
        instance=instance,
        backup_host=backup,
        app_host=host,
        label="base-1",
        status=BaseBackup.Status.SUCCEEDED,
        started_at=now - timedelta(hours=2, minutes=1),
        finished_at=now - timedelta(hours=2),
        size_bytes=48 * 1024**2,
        duration_seconds=41,
    )
    WalArchive.objects.create(
        instance=instance,
        enabled_at=now - timedelta(hours=2, minutes=5),
        shipped_at=now - timedelta(seconds=10),
        checked_at=now - timedelta(seconds=10),
        receiver_running=True,
    )
    return instance


def _picker(moment: datetime) -> str:
    # Non-zero seconds: Chromium's datetime-local drops ":00" from the value it reports.
    return moment.astimezone(UTC).replace(second=17).strftime("%Y-%m-%dT%H:%M:%S")


def test_support_restores_to_a_second_inside_the_window_after_a_time_outside_it_is_refused(
    page: Page,
    login: Callable[..., None],
    screenshot: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    sam: User,
    archived: AtlassianInstance,
) -> None:
    enqueued: list = []
    # The live server runs in this process: the operation is created but never sent.
    monkeypatch.setattr("panel.operations.operation_enqueue", enqueued.append)
    window = archived.base_backups.get().finished_at  # the window's start
    assert window is not None

    login(sam)
    page.goto(f"/instances/{archived.pk}/backups/")
    panel = page.get_by_test_id("point-in-time")
    expect(panel.get_by_test_id("pitr-state")).to_contain_text("On")
    expect(panel.get_by_test_id("pitr-window-start")).to_have_text(f"{window:%Y-%m-%d %H:%M:%S}")
    expect(panel.get_by_test_id("pitr-window")).to_contain_text("UTC")
    expect(panel.get_by_test_id("pitr-receiver")).to_have_text("Running")
    expect(panel.get_by_test_id("base-backup-row")).to_contain_text("base-1")
    expect(panel.get_by_test_id("restore-time-explained")).to_contain_text(
        "newest backup point taken before that second"
    )
    screenshot("window")

    when = page.get_by_label("Restore to (UTC)")
    confirm = page.get_by_label("Type the instance's name to confirm")
    outside = _picker(window - timedelta(hours=1))
    when.fill(outside)
    confirm.fill(archived.name)
    page.locator("#restore-time-submit").click()
    expect(page.get_by_test_id("error-target_time")).to_contain_text(
        "Choose a time inside the recoverable window"
    )
    expect(when).to_have_value(outside)
    expect(confirm).to_have_value(archived.name)
    assert not Operation.objects.filter(instance=archived).exists()
    screenshot("outside-the-window")

    inside = _picker(window + timedelta(minutes=30))
    when.fill(inside)
    page.locator("#restore-time-submit").click()
    expect(page.locator("#operation-title")).to_contain_text("Restore to a point in time")
    expect(page.get_by_test_id("message")).to_contain_text(
        f"to {inside.replace('T', ' ')} UTC started"
    )
    op = Operation.objects.get(instance=archived, kind="backup.restore_time")
    expect(page).to_have_url(re.compile(rf"/operations/{op.pk}/"))
    assert op.params["target_time"] == f"{inside}+00:00"
    assert enqueued == [op.pk]
    screenshot("operation")

    # The DR dashboard lists the instance among those whose WAL is archived.
    page.locator("#nav-dr").click()
    row = page.get_by_test_id("dr-archive")
    expect(row).to_contain_text(archived.name)
    expect(row).to_contain_text(f"{window:%Y-%m-%d %H:%M:%S} UTC")
    expect(row).to_contain_text("Running")
    screenshot("dr-dashboard")
