"""Each instance's materialised catalogue summary (``InstanceBackupState``: newest retained
point, number of rows) stays right after every kind of change the panel makes to its points,
and what reads it (the dashboard's RPO counts, the API list's count) says what the points say.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db.models import Count, Max, Q
from django.urls import reverse
from django.utils import timezone

from backups.catalogue import catalogue_sync, instances_backup_state_refresh
from backups.models import Backup, BackupStatus, InstanceBackupState
from backups.point import Verified, point_commit
from backups.selectors import rpo_overview
from backups.services import backups_purge_deleted
from backups.store import PointStore
from backups.take import backup_record_start
from provisioning.models import AtlassianInstance, InstanceStatus
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


class FakeBackupHost:
    """What the catalogue and a point's commit ask of a backup host, answered from memory."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = files or {}
        self.commands: list[list[str]] = []

    def read(self, path: str, missing_ok: bool = False) -> bytes | None:
        return self.files.get(path)

    def upload(self, path: str, data: Any, **_: Any) -> None:
        self.files[path] = data.encode() if isinstance(data, str) else data

    def run(self, argv: list[str], **_: Any) -> SimpleNamespace:
        self.commands.append(argv)
        return SimpleNamespace(stdout="4096 total\n", exit_code=0)


@pytest.fixture
def jira(acme_jira, app_host) -> AtlassianInstance:
    with_backup_host(app_host, backup_host())
    AtlassianInstance.objects.filter(pk=acme_jira.pk).update(host=app_host)
    acme_jira.refresh_from_db()
    return acme_jira


def _store(instance: AtlassianInstance) -> PointStore:
    host = instance.host
    assert host is not None and host.backup_host is not None
    return PointStore(host.backup_host, host.name, instance.name)


def _truth(instance: AtlassianInstance) -> tuple[int, Any]:
    """What the points themselves say: (rows, newest retained point's time)."""
    agg = Backup.objects.filter(instance=instance).aggregate(
        n=Count("pk"), last=Max("taken_at", filter=Q(status=BackupStatus.SUCCEEDED))
    )
    return agg["n"], agg["last"]


def _state(instance: AtlassianInstance) -> tuple[int, Any]:
    state = InstanceBackupState.objects.filter(instance=instance).first()
    return (0, None) if state is None else (state.rows, state.last_good_at)


def _sync(instance: AtlassianInstance, *, present: list[str], pruned: tuple[str, ...] = ()) -> None:
    catalogue_sync(
        FakeBackupHost(),  # type: ignore[arg-type]
        instance=instance,
        store=_store(instance),
        present=present,
        labels={},
        pruned=list(pruned),
        listed_at=timezone.now() + timedelta(seconds=5),
    )


def test_a_run_recorded_counts_a_row_but_no_good_point(jira):
    running = backup_record_start(jira, kind="scheduled", mode="hot")
    assert running.status == BackupStatus.RUNNING
    assert _state(jira) == (1, None) == _truth(jira)


def test_a_committed_point_becomes_the_newest_good_one(jira):
    earlier = make_point(jira, taken_at=timezone.now() - timedelta(days=1))
    backup = backup_record_start(jira, kind="scheduled", mode="hot")
    assert _state(jira) == (2, earlier.taken_at)
    point_commit(
        None,
        FakeBackupHost(),
        instance=jira,
        backup=backup,
        store=_store(jira),
        commit=f"{_store(jira).area}/commit",
        verified=Verified(sha="abc", copy_stat="", entries={}, changed=[]),
        dump_sha256="d" * 64,
        dump_bytes=10,
        previous=earlier,
    )
    assert _state(jira) == (2, backup.taken_at) == _truth(jira)


def test_an_aged_out_point_leaves_the_one_before_it_as_the_newest(jira):
    old = make_point(jira, taken_at=timezone.now() - timedelta(days=2))
    new = make_point(jira, taken_at=timezone.now() - timedelta(days=1))
    assert _state(jira) == (2, new.taken_at)
    _sync(jira, present=[old.point_name], pruned=[new.point_name])
    assert Backup.objects.get(pk=new.pk).status == BackupStatus.EXPIRED
    assert _state(jira) == (2, old.taken_at) == _truth(jira)


def test_a_missing_point_stops_counting_and_counts_again_when_it_is_back(jira):
    point = make_point(jira, verified_at=timezone.now() - timedelta(hours=1))
    _sync(jira, present=[])
    assert Backup.objects.get(pk=point.pk).status == BackupStatus.MISSING
    assert _state(jira) == (1, None) == _truth(jira)
    _sync(jira, present=[point.point_name])
    assert Backup.objects.get(pk=point.pk).status == BackupStatus.SUCCEEDED
    assert _state(jira) == (1, point.taken_at) == _truth(jira)


def test_a_point_found_on_the_backup_host_is_counted_when_imported(jira):
    store = _store(jira)
    name = "20250101T000000Z"
    files = {
        f"{store.point(name)}/point.json": json.dumps(
            {"instance_id": str(jira.pk), "point": name}
        ).encode()
    }
    catalogue_sync(
        FakeBackupHost(files), instance=jira, store=store, present=[name], labels={}, pruned=[]
    )
    rows, last = _state(jira)
    assert rows == 1 and last is not None and last.strftime("%Y%m%dT%H%M%SZ") == name
    assert (rows, last) == _truth(jira)


def test_purging_a_deleted_instances_points_clears_its_newest_point(jira, monkeypatch, settings):
    settings.PANEL_DELETED_RETENTION_DAYS = 1
    make_point(jira)
    AtlassianInstance.objects.filter(pk=jira.pk).update(
        status=InstanceStatus.DELETED, deleted_at=timezone.now() - timedelta(days=3)
    )
    fake = FakeBackupHost()
    monkeypatch.setattr(
        "provisioning.hosts.host_connection", lambda host: contextlib.nullcontext(fake)
    )
    backups_purge_deleted()
    assert fake.commands and fake.commands[0][:2] == ["rm", "-rf"]
    assert _state(jira) == (1, None) == _truth(jira)


def test_a_deleted_instance_row_takes_its_summary_with_it(jira):
    make_point(jira)
    jira.delete()
    assert not InstanceBackupState.objects.exists()


def test_the_refresh_recounts_rather_than_adds(jira):
    make_point(jira)
    InstanceBackupState.objects.filter(instance=jira).update(rows=99, last_good_at=None)
    instances_backup_state_refresh(instance_ids=[jira.pk])
    assert _state(jira) == _truth(jira)


def test_the_dashboard_counts_follow_each_change(browser, alice, jira):
    url = reverse("dashboard")
    client = browser(alice)
    AtlassianInstance.objects.filter(pk=jira.pk).update(
        created_at=timezone.now() - timedelta(days=9)
    )
    point = make_point(jira, taken_at=timezone.now() - timedelta(minutes=20))
    assert "<strong>1</strong> of 1 instance within" in client.get(url).content.decode()
    _sync(jira, present=[], pruned=[point.point_name])  # retention ages it out
    html = client.get(url).content.decode()
    assert "<strong>0</strong> of 1 instance within" in html
    assert 'data-testid="rpo-breaches"' in html and "no good backup yet" in html


def test_the_rpo_overview_lists_the_longest_overdue_first(acme, alice, access_of, app_host):
    now = timezone.now()
    for name, hours in (("acme-a", 30), ("acme-b", 90), ("acme-c", 1)):
        make_point(make_instance(acme, name, host=app_host), taken_at=now - timedelta(hours=hours))
    make_instance(acme, "acme-new", host=app_host)
    overview = rpo_overview(access_of(alice))
    assert [row["name"] for row in overview["breaches"]] == ["acme-b", "acme-a"]
    assert (overview["total"], overview["within"], overview["no_backup_yet"]) == (4, 1, 1)
    assert overview["breach_count"] == 2
    assert overview["breaches"][0]["age"] >= timedelta(hours=90)


@pytest.mark.parametrize("who", ["alice", "sam"])
def test_the_api_list_count_is_the_number_of_points(api, request, acme, globex, app_host, who):
    with_backup_host(app_host, backup_host())
    for tenant, n in ((acme, 3), (globex, 2)):
        for i in range(n):
            inst = make_instance(tenant, f"{tenant.slug}-{i}", host=app_host)
            make_point(inst)
            backup_record_start(inst, kind="manual", mode="hot")
    client = api(request.getfixturevalue(who))
    expected = Backup.objects.filter(instance__tenant=acme).count() if who == "alice" else 10
    answer = client.get("/api/backups/").json()
    assert answer["count"] == expected == len(client.get("/api/backups/").json()["results"])
    succeeded = client.get("/api/backups/?status=succeeded").json()["count"]
    assert succeeded == expected // 2
    gone = AtlassianInstance.objects.filter(tenant=acme).first()
    gone.delete()
    assert client.get("/api/backups/").json()["count"] == expected - 2
