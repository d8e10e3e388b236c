"""The registry wires the apps together: its stores are fixed, and what each app registers from
its ``ready()`` (operation kinds, instance hooks, periodic jobs, page panels, listeners) is
there once, complete, and really used (by the runner, Celery beat and the pages)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from celery import signals
from celery.beat import Scheduler
from django.apps import apps
from django.urls import reverse

from backups.models import BackupOperationKind
from backups.operations import backup_before_upgrade, restore_after_failed_upgrade
from certificates import services as certificate_services
from certificates.models import CertificateOperationKind
from panel import operations
from panel.access import access_for_user
from panel.celery import app as celery_app
from panel.celery import beat_schedule_apply
from panel.registry import beat_schedule, hook_register, panel_register, registry
from provisioning.models import Operation, OperationKind, OperationStatus, OperationStep

REPO = Path(__file__).resolve().parents[2]

STORES = {
    "operation_kinds",
    "operation_listeners",
    "instance_hooks",
    "host_hooks",
    "periodic_jobs",
    "notification_events",
    "notification_scans",
    "notification_sinks",
    "dashboard_panels",
    "instance_panels",
    "host_panels",
    "summary_counts",
    "operation_runtime",
}


def _ready_again() -> None:
    # As the test runner and autoreload may: every app's ready() a second time.
    for config in apps.get_app_configs():
        config.ready()


def test_the_stores_are_fixed_and_a_typo_fails_loudly():
    assert set(registry) == STORES
    with pytest.raises(KeyError, match="no registry store 'operation_kind'"):
        registry["operation_kind"]
    with pytest.raises(TypeError):
        registry["operation_kinds"] = {}


def test_every_app_kind_is_registered_with_a_handler_and_its_label():
    kinds = registry["operation_kinds"]
    for choices in (OperationKind, BackupOperationKind, CertificateOperationKind):
        for kind in choices:
            assert kind.value in kinds, f"{kind.value} has no handler"
            assert kinds[kind.value].label == kind.label
    for key, spec in kinds.items():
        assert spec.kind == key and callable(spec.handler) and spec.label, key
    # Labels come from the registry, for every app's kinds (the UI filter and the API field).
    assert operations.operation_kind_label("backup.drill") == "Restore drill"
    assert operations.operation_kind_label("proxy.deploy") == "Proxy config deploy"
    assert operations.operation_kind_label("diagnostic") == "Diagnostic"
    # Backups' restores (of a point or to a time), drills and evacuations (a host's and each
    # instance's part) are the kinds only staff cancel.
    staff_only = {key for key, spec in kinds.items() if spec.staff_cancel}
    assert staff_only == {
        BackupOperationKind.BACKUP_RESTORE,
        BackupOperationKind.BACKUP_DRILL,
        BackupOperationKind.RESTORE_TIME,
        BackupOperationKind.HOST_EVACUATE,
        BackupOperationKind.INSTANCE_EVACUATE,
    }


def test_provisioning_binds_the_runner_to_its_models_and_status_constants():
    runtime = registry["operation_runtime"]
    assert operations.operation_model() is Operation is runtime["model"]
    assert runtime["step_model"] is OperationStep
    assert runtime["status"] is OperationStatus is operations.operation_statuses()
    assert set(OperationStatus.ACTIVE) == {"pending", "running"}
    assert callable(runtime["enqueue"])


def test_the_instance_hooks_are_registered_once_each_even_if_ready_runs_again():
    expected = {
        "publish": [certificate_services.instance_publish],
        "unpublish": [certificate_services.instance_unpublish],
        "pre_upgrade": [backup_before_upgrade],
        "upgrade_failed": [restore_after_failed_upgrade],
        "moved_back": [certificate_services.instance_dns_moved_back],
    }
    assert registry["instance_hooks"] == expected
    assert registry["host_hooks"] == {"fence": [certificate_services.proxy_site_fence]}
    _ready_again()
    hook_register("instance_hooks", "publish", certificate_services.instance_publish)
    assert registry["instance_hooks"] == expected
    assert registry["host_hooks"] == {"fence": [certificate_services.proxy_site_fence]}


def test_the_beat_schedule_holds_every_apps_jobs_and_each_task_exists():
    names = set(beat_schedule())
    for app_jobs in (
        {"operations-reap", "operations-requeue-pending", "instances-health", "hosts-health"},
        {"backups-dispatch", "backups-drills", "backups-rpo-check", "backups-purge-deleted"},
        {"certificates-renew-due", "dns-customer-records-check", "endpoints-check"},
        {"notifications-scan", "notifications-retry-due"},
    ):
        assert app_jobs <= names
    celery_app.loader.import_default_modules()  # every app's tasks, as a worker loads them
    for job in registry["periodic_jobs"].values():
        assert job.task in celery_app.tasks, f"{job.name}: no Celery task {job.task!r}"
        assert job.seconds > 0


def test_celery_beat_gets_the_registered_schedule_when_it_starts():
    saved = dict(celery_app.conf.beat_schedule or {})
    celery_app.conf.beat_schedule = {}
    try:
        # What `celery -A panel beat` does before its scheduler reads the configuration.
        signals.beat_init.send(sender=None)
        assert celery_app.conf.beat_schedule == beat_schedule()
        scheduler = Scheduler(app=celery_app, lazy=False)
    finally:
        celery_app.conf.beat_schedule = saved
    for job in registry["periodic_jobs"].values():
        entry = scheduler.schedule[job.name]
        assert entry.task == job.task
        assert entry.schedule.run_every.total_seconds() == job.seconds


def test_beat_schedule_apply_returns_what_it_set():
    assert beat_schedule_apply() == celery_app.conf.beat_schedule == beat_schedule()


def test_page_panels_are_registered_once_in_their_order():
    assert registry["dashboard_panels"] == [
        "certificates/_dashboard_alerts.html",
        "backups/_dashboard_backups.html",
    ]
    assert registry["instance_panels"] == [
        "certificates/_instance_certificates.html",
        "backups/_instance_backups.html",
    ]
    _ready_again()
    panel_register("instance_panels", "backups/_instance_backups.html")
    assert len(registry["instance_panels"]) == 2


@pytest.mark.django_db
def test_the_instance_page_renders_the_registered_panels_and_only_those(browser, alice, acme_jira):
    url = reverse("provisioning:instance_detail", args=[acme_jira.pk])
    html = browser(alice).get(url).content.decode()
    assert 'data-testid="instance-backups"' in html
    assert 'data-testid="instance-endpoint"' in html
    # The page includes what is registered, not a fixed list.
    panels = registry["instance_panels"]
    saved = list(panels)
    panels[:] = ["backups/_instance_backups.html"]
    try:
        html = browser(alice).get(url).content.decode()
    finally:
        panels[:] = saved
    assert 'data-testid="instance-backups"' in html
    assert 'data-testid="instance-endpoint"' not in html


@pytest.mark.django_db
def test_the_dashboard_renders_the_backup_panel_and_the_certificates_count(
    browser, alice, acme_jira
):
    page = browser(alice).get(reverse("dashboard"))
    html = page.content.decode()
    assert 'data-testid="dashboard-backups"' in html
    assert page.context["summary"]["certificates_expiring"] == 0
    assert "certificates_expiring" in registry["summary_counts"]


@pytest.mark.django_db
def test_a_failing_listener_is_logged_and_the_others_still_hear_of_the_failure(
    alice, monkeypatch, caplog
):
    heard: list[Operation] = []

    def broken(operation: Operation) -> None:
        raise RuntimeError("listener bug")

    monkeypatch.setitem(registry["operation_listeners"], "failed", [broken, heard.append])
    op = operations.operation_start(
        kind="diagnostic",
        actor=access_for_user(alice),
        lock_key="t:listeners",
        params={"sleep": 0, "steps": 1, "fail": "it broke"},
    )
    with caplog.at_level(logging.ERROR, logger="panel.operations"):
        assert operations.operation_execute(op.id) == "failed"
    assert [o.id for o in heard] == [op.id] and heard[0].status == "failed"
    assert "listener bug" in caplog.text


_DOMAIN_APPS = {"tenants", "provisioning", "backups", "certificates", "notifications"}


@pytest.mark.parametrize(
    "module",
    [
        "panel/registry.py",
        "panel/operations.py",
        "panel/apps.py",
        "panel/celery.py",
        "panel/templatetags/panel_tags.py",
    ],
)
def test_the_registry_and_the_runner_import_no_domain_app(module):
    tree = ast.parse((REPO / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & _DOMAIN_APPS
