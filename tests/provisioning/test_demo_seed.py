"""The demo tells the truth (issue #17): what ``manage.py demo_seed`` makes reads, on the pages
its people see, like a panel that really ran: instances on a host with health history, backup
points and a drill, operations asked for by the tenant's own people after their instance was
made, a failed create that says what a failed create leaves, and stand-in hosts in the state
the demo's periodic checks keep finding them in.

The seed runs once for the module (it asks the stand-ins as the periodic checks do, which takes
a few seconds); every test reads it inside the module's transaction, rolled back at the end.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backups.models import Backup, BackupStatus, RestoreDrill
from certificates.models import Certificate, ProxySite
from provisioning.hosts import host_health_probe_by_id
from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceHealth,
    InstanceHealthCheck,
    InstanceStatus,
    Operation,
)
from provisioning.monitoring import instances_health_check
from provisioning.rollout import NEW_INSTANCE_LEFT
from provisioning.services import host_select_for_instance
from tenants.models import AuditEvent, Membership

SEEDED = ["acme-jira", "acme-wiki", "acme-code", "globex-jira", "globex-wiki", "globex-docs"]


@pytest.fixture(scope="module")
def seeded(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("demo_seed", stdout=io.StringIO())
        yield
        transaction.set_rollback(True)


@pytest.fixture
def world(seeded: None, db: None) -> None:
    """The seeded panel, for one test (its changes roll back to the seeded state)."""


def page(username: str, url: str) -> str:
    client = Client()
    client.force_login(User.objects.get(username=username))
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def instance(name: str) -> AtlassianInstance:
    return AtlassianInstance.objects.select_related("host__backup_host", "tenant").get(name=name)


def test_every_instance_is_on_the_demo_app_host_which_has_a_backup_host(world):
    assert sorted(AtlassianInstance.objects.values_list("name", flat=True)) == sorted(SEEDED)
    for name in SEEDED:
        inst = instance(name)
        assert inst.host is not None and inst.host.role == Host.Role.APP, name
        assert inst.host.backup_host is not None, name
        assert inst.host.backup_host.role == Host.Role.BACKUP
        member = "alice" if inst.tenant.slug == "acme" else "charlie"
        shown = text(page(member, reverse("provisioning:instance_detail", args=[inst.pk])))
        assert f"Host {inst.host.name}" in shown
        assert "Not placed on a host yet" not in shown


def test_running_instances_have_a_day_of_health_checks_on_their_chart(world):
    running = AtlassianInstance.objects.filter(status=InstanceStatus.RUNNING)
    assert running.count() == 4
    since = timezone.now() - timezone.timedelta(hours=24)
    for inst in running:
        checks = InstanceHealthCheck.objects.filter(instance=inst, checked_at__gt=since)
        up_for = timezone.now() - max(inst.status_changed_at, since)
        # one a minute while it ran (the chart reads the same rows)
        assert checks.count() >= int(up_for.total_seconds() // 60) - 1, inst.name
        member = "alice" if inst.tenant.slug == "acme" else "charlie"
        html = page(member, reverse("provisioning:instance_detail", args=[inst.pk]))
        charted = re.search(r'data-testid="health-chart" data-checks="(\d+)"', html)
        assert charted and int(charted.group(1)) == checks.count()
    # A stopped instance is not checked: its chart says so rather than inventing checks.
    stopped = instance("acme-code")
    assert stopped.status == InstanceStatus.STOPPED
    html = page("alice", reverse("provisioning:instance_detail", args=[stopped.pk]))
    assert 'data-testid="no-health-history"' in html


def test_the_stand_in_hosts_are_what_the_periodic_checks_find_and_stay_so(world):
    app, backup = Host.objects.get(name="demo-app1"), Host.objects.get(name="demo-backup1")
    for host in (app, backup):
        assert host.status == Host.Status.UNREACHABLE
        assert host.address.endswith(".invalid")  # RFC 6761: never resolves, reaches no one
        assert "the name does not resolve" in host.status_reason
    running = AtlassianInstance.objects.filter(status=InstanceStatus.RUNNING)
    for inst in running:
        assert inst.health == InstanceHealth.DEGRADED
        newest = InstanceHealthCheck.objects.filter(instance=inst).order_by("-checked_at")[:2]
        assert [c.ok for c in newest] == [False, False]
        assert all(c.detail.startswith("host unreachable: Cannot reach demo-app1") for c in newest)
    # What the demo's workers do next changes nothing: the seeded state is their state.
    before = {h.pk: (h.status, h.status_reason) for h in Host.objects.all()}
    host_health_probe_by_id(app.pk)
    host_health_probe_by_id(backup.pk)
    instances_health_check()
    after = {h.pk: (h.status, h.status_reason) for h in Host.objects.all()}
    assert after == before
    assert set(running.values_list("health", flat=True)) == {InstanceHealth.DEGRADED}
    # ... and a new instance is never placed on a stand-in (scripts/demo --lab adds real ones).
    new = AtlassianInstance(tenant=instance("acme-jira").tenant, name="acme-new", tier="tier1")
    assert host_select_for_instance(new) is None


def test_operations_come_after_their_instance_and_are_asked_for_by_its_own_people(world):
    staff = set(User.objects.filter(is_staff=True).values_list("pk", flat=True))
    ops = Operation.objects.select_related("instance", "requested_by").exclude(instance=None)
    assert ops.count() > len(SEEDED)
    for op in ops:
        assert op.created_at >= op.instance.created_at, (op.kind, op.instance.name)
        assert op.started_at and op.finished_at and op.created_at < op.started_at < op.finished_at
        if op.requested_by_id is None:
            assert op.kind.startswith("backup."), op.kind  # the scheduler's backups and drill
            continue
        members = Membership.objects.filter(tenant=op.tenant, user=op.requested_by_id)
        assert op.requested_by_id in staff or members.filter(role="admin").exists(), op.kind
    for op in Operation.objects.filter(instance=None):
        assert op.requested_by is not None and op.requested_by.username == "pat"  # host work
    creates = Operation.objects.filter(kind="instance.create")
    assert {(o.instance.tenant.slug, o.requested_by.username) for o in creates} == {
        ("acme", "alice"),
        ("globex", "charlie"),
    }


def test_charlie_sees_no_acme_user_on_his_operation_and_audit_pages(world):
    listed = page("charlie", reverse("provisioning:operation_list"))
    assert "charlie" in listed  # the requester column is there, with his own name
    pages = [listed, page("charlie", reverse("audit:list"))]
    for op in Operation.objects.filter(tenant__slug="globex"):
        pages.append(page("charlie", reverse("provisioning:operation_detail", args=[op.pk])))
    for html in pages:
        shown = text(html)
        for name in ("alice", "bob", "Acme"):
            assert not re.search(rf"\b{name}\b", shown), name
    assert AuditEvent.objects.filter(tenant__slug="globex", actor__username="charlie").exists()


def test_the_dashboard_tells_a_new_instance_without_a_point_apart(world):
    charlie = text(page("charlie", reverse("dashboard")))
    assert "1 of 2 instances within their recovery point objective" in charlie
    assert "1 new instance with no backup yet" in charlie
    assert not Backup.objects.filter(instance__name="globex-docs").exists()
    alice = text(page("alice", reverse("dashboard")))
    assert "3 of 3 instances within their recovery point objective" in alice
    assert "no backup yet" not in alice


def test_backups_are_retained_points_on_the_backup_host_and_a_drill_passed(world):
    jira = instance("acme-jira")
    points = Backup.objects.filter(instance=jira, status=BackupStatus.SUCCEEDED)
    assert points.count() > 24  # hourly for a day, then daily and weekly
    assert set(points.values_list("backup_host__name", flat=True)) == {"demo-backup1"}
    labels = set(points.values_list("label", flat=True))
    assert {"hourly.0", "daily.0", "weekly.0"} <= labels
    assert all(p.taken_at >= jira.created_at and p.operation_id for p in points)
    drill = RestoreDrill.objects.get(instance=jira)
    assert drill.status == RestoreDrill.Status.PASSED and drill.within_rto
    assert drill.backup is not None and drill.backup.taken_at <= drill.started_at
    html = page("alice", reverse("backups:instance_backups", args=[jira.pk]))
    newest = points.latest("taken_at")
    assert f'data-point="{newest.point_name}" data-status="succeeded"' in html
    assert "Passed" in text(html)  # the drill's row


def test_published_instances_have_their_placeholder_certificate_and_proxy_site(world):
    for name in ["acme-jira", "acme-wiki", "acme-code", "globex-jira", "globex-docs"]:
        inst = instance(name)
        site = ProxySite.objects.get(instance=inst)
        assert site.status == ProxySite.Status.DEPLOYED and site.host_id == inst.host_id
        assert site.certificate.status == Certificate.Status.PLACEHOLDER
    assert not ProxySite.objects.filter(instance__name="globex-wiki").exists()  # never came up


def test_the_failed_create_says_what_a_failed_create_leaves(world):
    wiki = instance("globex-wiki")
    assert wiki.status == InstanceStatus.FAILED
    op = Operation.objects.get(instance=wiki, kind="instance.create")
    assert op.status == "failed" and op.error.endswith(NEW_INSTANCE_LEFT)
    assert op.requested_by.username == "charlie"
    shown = text(page("charlie", reverse("provisioning:instance_detail", args=[wiki.pk])))
    assert NEW_INSTANCE_LEFT in shown
    assert "previous version." not in shown and "rolled back to the previous" not in shown.lower()
