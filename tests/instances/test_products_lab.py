"""Each product's health through the panel on real lab hosts: Bamboo on its own REST path,
Crowd at /crowd through its setup wizard (it takes no database variable), and a long reindex
after an upgrade (503 MAINTENANCE) waited for instead of rolled back."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from panel.access import access_for_user
from provisioning.hosts import host_provision
from provisioning.models import AtlassianInstance, Host, InstanceStatus
from provisioning.monitoring import instances_health_check
from provisioning.services import instance_create, instance_upgrade
from tests.support.backup_lab import backup1
from tests.support.lab import container_ip, step_text
from tests.support.lab import run_operation as run
from tests.support.lab import standin_info as _info

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]

FAST = {"STANDIN_STARTUP_SECONDS": "2"}


def _create(
    alice: Any,
    acme: Any,
    host: Host,
    name: str,
    product: str,
    version: str,
    cleanup: list,
    **f: Any,
) -> tuple[Any, AtlassianInstance]:
    op = instance_create(
        actor=access_for_user(alice),
        tenant=acme,
        name=name,
        product=product,
        version=version,
        hostname=f"{name}.acme.example",
        host=host,
        heap_min_mb=512,
        heap_max_mb=1024,
        extra_env=f.pop("extra_env", FAST),
        **f,
    )
    assert op.instance_id is not None
    inst = AtlassianInstance.objects.get(pk=op.instance_id)
    cleanup.append(inst)
    op = run(op)
    inst.refresh_from_db()
    return op, inst


def test_a_bamboo_instance_reaches_running_on_its_own_health_path(
    alice, acme, ready_app_host, unique_name, cleanup_projects
):
    op, inst = _create(
        alice, acme, ready_app_host, unique_name("bamboo"), "bamboo", "9.6.0", cleanup_projects
    )
    assert op.status == "succeeded", step_text(op)
    assert "localhost:8085/rest/api/latest/status to answer RUNNING" in step_text(op)
    assert inst.status == InstanceStatus.RUNNING and inst.health == "healthy"
    info = _info(inst, 8085)
    assert info["state"] == "RUNNING" and info["database"]["reachable"] is True
    # the periodic check asks the same path and reads Bamboo's "status" key
    assert instances_health_check([ready_app_host.pk]) == 1
    check = inst.health_checks.get()
    assert (check.ok, check.state) == (True, "RUNNING")


def _crowd_status(inst: AtlassianInstance) -> tuple[int, dict]:
    ip = container_ip(inst.name, "app", "panel-proxy")
    try:
        with urllib.request.urlopen(f"http://{ip}:8095/crowd/status", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_crowd_instance_is_set_up_with_what_its_page_shows_then_runs(
    alice, acme, ready_app_host, unique_name, cleanup_projects, browser
):
    name = unique_name("crowd")
    op, inst = _create(alice, acme, ready_app_host, name, "crowd", "5.3.0", cleanup_projects)
    assert op.status == "succeeded", step_text(op)
    # no context asked for: the panel records Crowd's own, where the image answers
    assert inst.context_path == "/crowd" and inst.base_url.endswith(".acme.example/crowd")
    assert "localhost:8095/crowd/status" in step_text(op)
    assert "answers FIRST_RUN" in step_text(op)
    info = _info(inst, 8095)
    assert info["state"] == "FIRST_RUN"
    env = info["env"]
    assert env["ATL_TOMCAT_CONTEXTPATH"] == "/crowd"
    assert not [k for k in env if k.startswith(("ATL_JDBC_", "ATL_DB_", "JDBC_"))]
    assert inst.db_password not in step_text(op)
    # waiting for its wizard is not a fault
    instances_health_check([ready_app_host.pk])
    instances_health_check([ready_app_host.pk])
    inst.refresh_from_db()
    assert inst.health == "healthy"
    assert [c.state for c in inst.health_checks.all()] == ["FIRST_RUN", "FIRST_RUN"]

    # the customer reads the database from the instance page and reveals the password
    client = browser(alice)
    page = client.get(reverse("provisioning:instance_detail", args=[inst.pk])).content.decode()
    assert "Finish Crowd's setup" in page
    jdbc_url = re.search(r'id="db-setup-jdbc-url">([^<]+)<', page).group(1)
    user = re.search(r'id="db-setup-user">([^<]+)<', page).group(1)
    revealed = client.post(
        reverse("provisioning:instance_db_password", args=[inst.pk]),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="crowd-db-password",
    ).content.decode()
    password = re.search(r'id="db-setup-password">([^<]+)<', revealed).group(1)

    # ... and types them into Crowd's setup wizard (the stand-in's setup call)
    ip = container_ip(inst.name, "app", "panel-proxy")
    request = urllib.request.Request(
        f"http://{ip}:8095/crowd/rest/standin/1.0/setup",
        data=json.dumps({"jdbc_url": jdbc_url, "user": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - a lab container
        assert resp.status == 201
    deadline = time.monotonic() + 60
    while _crowd_status(inst)[1].get("state") != "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    instances_health_check([ready_app_host.pk])
    inst.refresh_from_db()
    check = inst.health_checks.order_by("-checked_at").first()
    assert (check.ok, check.state) == (True, "RUNNING"), check.detail
    assert inst.health == "healthy"
    info = _info(inst, 8095)
    assert info["database"]["reachable"] is True
    assert info["base_url"] == f"https://{name}.acme.example/crowd"
    # set up: the page no longer asks for the wizard
    page = client.get(reverse("provisioning:instance_detail", args=[inst.pk])).content.decode()
    assert "Finish Crowd's setup" not in page and "Crowd's database" in page


@pytest.fixture
def app_host_with_backups(enrol_lab_host: Callable[..., Host], pat: Any) -> tuple[Host, Host]:
    """app1 with backup1 as its backup host (an upgrade first takes a point)."""
    actor = access_for_user(pat)
    backup = enrol_lab_host("backup1")
    op = run(host_provision(actor=actor, host=backup))
    assert op.status == "succeeded", step_text(op)
    app = enrol_lab_host("app1", backup_host=backup)
    op = run(host_provision(actor=actor, host=app))
    assert op.status == "succeeded", step_text(op)
    app.refresh_from_db()
    backup.refresh_from_db()
    return app, backup


def test_a_long_reindex_after_an_upgrade_is_waited_for(
    alice, acme, app_host_with_backups, unique_name, cleanup_projects, settings
):
    app, backup = app_host_with_backups
    # the reindex (20 s) is longer than the ordinary timeout, which counts only other time
    settings.PANEL_ROLLOUT_TIMEOUT = 10
    name = unique_name("jira")
    try:
        op, inst = _create(
            alice,
            acme,
            app,
            name,
            "jira-software",
            "9.12.0",
            cleanup_projects,
            extra_env={**FAST, "STANDIN_REINDEX_SECONDS": "20"},
        )
        assert op.status == "succeeded", step_text(op)
        up = run(instance_upgrade(actor=access_for_user(alice), instance=inst, version="9.17.0"))
        text = step_text(up)
        assert up.status == "succeeded", text
        assert f"{name} is in MAINTENANCE (a reindex holds its start-up)" in text
        seconds = re.search(
            r"answers RUNNING after (\d+) s \((\d+) s of them in MAINTENANCE\)", text
        )
        assert seconds is not None, text
        assert int(seconds.group(2)) >= 15 and int(seconds.group(1)) > 10
        inst.refresh_from_db()
        assert inst.version == "9.17.0" and inst.status == InstanceStatus.RUNNING
        info = _info(inst, 8080)
        assert info["state"] == "RUNNING" and info["version"] == "9.17.0"
    finally:
        backup1("rm", "-rf", f"{backup.data_root}/hosts/{app.name}/{name}", check=False)
