"""Instances on real lab hosts: rollout, environment, private database, lifecycle, rollback."""

from __future__ import annotations

import json
import subprocess

import pytest
from django.test import Client

from panel.access import access_for_user
from provisioning.models import AtlassianInstance, InstanceStatus
from provisioning.services import (
    instance_create,
    instance_delete,
    instance_restart,
    instance_start,
    instance_stop,
)
from tests.support.lab import run_operation as run
from tests.support.lab import standin_info as _info
from tests.support.lab import step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]

FAST = {"STANDIN_STARTUP_SECONDS": "2"}


def _create(alice, acme, host, name, product, version, cleanup, **fields):
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
        extra_env=FAST,
        **fields,
    )
    inst = AtlassianInstance.objects.get(pk=op.instance_id)
    cleanup.append(inst)
    op = run(op)
    inst.refresh_from_db()
    return op, inst


@pytest.mark.parametrize(
    ("product", "version", "port", "context"),
    [
        ("jira-software", "9.12.0", 8080, "/jira"),
        ("confluence", "8.5.0", 8090, ""),
        ("bitbucket", "8.19.0", 7990, ""),
    ],
)
def test_a_new_instance_runs_with_exactly_the_environment_the_panel_meant(
    alice, acme, ready_app_host, unique_name, cleanup_projects, product, version, port, context
):
    name = unique_name(product.split("-")[0])
    op, inst = _create(
        alice, acme, ready_app_host, name, product, version, cleanup_projects, context_path=context
    )
    assert op.status == "succeeded", step_text(op)
    inst.refresh_from_db()
    assert inst.status == InstanceStatus.RUNNING and inst.health == "healthy"
    assert len(inst.deployed_compose_hash) == 64
    info = _info(inst, port)
    assert info["state"] == "RUNNING" and info["version"] == version
    env = info["env"]
    assert env["JVM_MAXIMUM_MEMORY"] == "1024m" and env["JVM_MINIMUM_MEMORY"] == "512m"
    if product == "bitbucket":
        assert env["SERVER_PROXY_NAME"] == f"{name}.acme.example"
        assert env["SERVER_SCHEME"] == "https" and env["SERVER_PROXY_PORT"] == "443"
        assert env["JDBC_URL"] == f"jdbc:postgresql://db:5432/{inst.db_name}"
        assert env["JDBC_PASSWORD"] == inst.db_password
    else:
        assert env["ATL_PROXY_NAME"] == f"{name}.acme.example"
        assert env["ATL_TOMCAT_SCHEME"] == "https" and env["ATL_TOMCAT_SECURE"] == "true"
        assert env["ATL_TOMCAT_CONTEXTPATH"] == context
        assert env["ATL_JDBC_URL"] == f"jdbc:postgresql://db:5432/{inst.db_name}"
        assert env["ATL_JDBC_PASSWORD"] == inst.db_password
    # the product stored its base URL in its own database, from the proxy settings
    assert info["base_url"] == f"https://{name}.acme.example{context}"
    assert info["database"]["reachable"] is True
    # home is on the host's data root, owned by the product's uid
    assert info["uid"] == {"jira-software": 2001, "confluence": 2002, "bitbucket": 2003}[product]
    # the password never reached the operation log
    assert inst.db_password not in step_text(op)


def test_the_database_is_reachable_only_on_the_instances_private_network(
    alice, acme, ready_app_host, unique_name, cleanup_projects
):
    op, inst = _create(
        alice,
        acme,
        ready_app_host,
        unique_name("jira"),
        "jira-software",
        "9.12.0",
        cleanup_projects,
    )
    assert op.status == "succeeded", step_text(op)
    db_networks = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={inst.name}",
            "--filter",
            "label=com.docker.compose.service=db",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    nets = json.loads(
        subprocess.run(
            ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", db_networks[0]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert list(nets) == [f"{inst.name}_private"]
    ports = subprocess.run(["docker", "port", db_networks[0]], capture_output=True, text=True)
    assert ports.stdout.strip() == ""  # nothing published
    # a container on the shared proxy network cannot resolve or reach the database
    probe = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "panel-proxy",
            "panel-lab/postgres:15",
            "pg_isready",
            "-h",
            "db",
            "-t",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0


def test_stop_start_and_restart_move_the_instance_through_its_states(
    alice, acme, ready_app_host, unique_name, cleanup_projects
):
    op, inst = _create(
        alice,
        acme,
        ready_app_host,
        unique_name("jira"),
        "jira-software",
        "9.12.0",
        cleanup_projects,
    )
    assert op.status == "succeeded", step_text(op)
    actor = access_for_user(alice)
    stop = run(instance_stop(actor=actor, instance=inst))
    assert stop.status == "succeeded", step_text(stop)
    inst.refresh_from_db()
    assert inst.status == InstanceStatus.STOPPED
    running = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={inst.name}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert running == []
    start = run(instance_start(actor=actor, instance=inst))
    assert start.status == "succeeded", step_text(start)
    inst.refresh_from_db()
    assert inst.status == InstanceStatus.RUNNING
    assert _info(inst, 8080)["state"] == "RUNNING"
    restart = run(instance_restart(actor=actor, instance=inst))
    assert restart.status == "succeeded", step_text(restart)
    assert _info(inst, 8080)["starts_logged"] >= 3
    # its logs, read over the pinned connection: the app's three starts, the database's
    # readiness; the database password never shows
    client = Client()
    client.force_login(alice)
    url = f"/instances/{inst.pk}/logs/"
    page = client.get(url, {"service": "app", "lines": "500"}).content.decode()
    assert page.count("standin: database ready") >= 3, page
    assert inst.db_password not in page
    db = client.get(url, {"service": "db", "follow": "1"}).content.decode()
    assert "database system is ready to accept connections" in db and 'hx-trigger="every 3s"' in db


# Upgrades need a backup host (their point), which this world's host has not: the broken and
# the good upgrade are tests/backups/lab/test_upgrade.py, the refusal tests/api/test_instances.py.


def test_deleting_removes_containers_but_keeps_the_data_for_the_retention_period(
    alice, acme, ready_app_host, unique_name, cleanup_projects
):
    op, inst = _create(
        alice, acme, ready_app_host, unique_name("wiki"), "confluence", "8.5.0", cleanup_projects
    )
    assert op.status == "succeeded", step_text(op)
    delete = run(instance_delete(actor=access_for_user(alice), instance=inst, confirm=inst.name))
    assert delete.status == "succeeded", step_text(delete)
    inst.refresh_from_db()
    assert inst.status == InstanceStatus.DELETED and inst.purge_after is not None
    assert (inst.purge_after - inst.deleted_at).days == 30
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={inst.name}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert left == []
    home = f"{ready_app_host.data_root}/instances/{inst.name}/home"
    assert subprocess.run(["test", "-d", home]).returncode == 0
    with pytest.raises(Exception, match="Cannot start"):
        instance_start(actor=access_for_user(alice), instance=inst)
    # once the retention period is over, the scheduled purge removes the data
    from datetime import timedelta

    from django.utils import timezone

    from provisioning.services import instances_purge_due

    AtlassianInstance.objects.filter(pk=inst.pk).update(
        purge_after=timezone.now() - timedelta(minutes=1)
    )
    (purge,) = instances_purge_due()
    assert run(purge).status == "succeeded", step_text(purge)
    assert (
        subprocess.run(
            ["test", "-e", f"{ready_app_host.data_root}/instances/{inst.name}"]
        ).returncode
        != 0
    )


def test_health_history_turns_degraded_and_drift_is_detected_when_changed_behind_our_back(
    alice, acme, ready_app_host, unique_name, cleanup_projects
):
    from provisioning.monitoring import instances_drift_check, instances_health_check

    op, inst = _create(
        alice,
        acme,
        ready_app_host,
        unique_name("jira"),
        "jira-software",
        "9.12.0",
        cleanup_projects,
    )
    assert op.status == "succeeded", step_text(op)
    assert instances_health_check([ready_app_host.pk]) == 1
    inst.refresh_from_db()
    assert inst.health == "healthy" and inst.health_checks.first().state == "RUNNING"
    assert instances_drift_check() == 0
    # someone stops the app container and edits the compose file on the host
    subprocess.run(
        ["docker", "compose", "-p", inst.name, "stop", "-t", "2", "app"],
        check=True,
        capture_output=True,
    )
    compose = f"{ready_app_host.data_root}/instances/{inst.name}/compose.yml"
    with open(compose, "a") as fh:
        fh.write("# edited by hand\n")
    instances_health_check([ready_app_host.pk])
    inst.refresh_from_db()
    assert inst.health == "healthy"  # one failed check is not yet degraded
    instances_health_check([ready_app_host.pk])
    inst.refresh_from_db()
    assert inst.health == "degraded" and inst.display_status == "degraded"
    assert inst.health_changed_at is not None
    assert [c.ok for c in inst.health_checks.order_by("checked_at")] == [True, False, False]
    assert instances_drift_check() == 1
    inst.refresh_from_db()
    assert "changed outside the panel" in inst.drift
    assert "app container is exited" in inst.drift


def test_a_confluence_licence_change_lands_in_its_cfg_and_is_reported(
    alice, acme, ready_app_host, unique_name, cleanup_projects
):
    # Confluence copies ATL_LICENSE_KEY into confluence.cfg.xml on its first start only and
    # then reads the file (the strict stand-in does the same): only an edited file counts.
    import hashlib

    from provisioning.homefiles import confluence_license_get
    from provisioning.licenses import license_encode_for_tests
    from provisioning.models import Operation
    from provisioning.services import license_add

    op, inst = _create(
        alice, acme, ready_app_host, unique_name("wiki"), "confluence", "8.5.0", cleanup_projects
    )
    assert op.status == "succeeded", step_text(op)
    assert _info(inst, 8090)["license"]["key_sha256"] is None
    cfg = f"{ready_app_host.data_root}/instances/{inst.name}/home/confluence.cfg.xml"
    for sen in ("SEN-CONF1", "SEN-CONF2"):  # the first key, then a renewal
        key = license_encode_for_tests({"SEN": sen, "LicenseExpiryDate": "2027-01-01"})
        license_add(actor=access_for_user(alice), instance=inst, key=key)
        apply = run(
            Operation.objects.filter(instance=inst, kind="license.apply").latest("created_at")
        )
        assert apply.status == "succeeded", step_text(apply)
        digest = hashlib.sha256(key.encode()).hexdigest()
        license = _info(inst, 8090)["license"]
        assert license == {"source": "cfg", "key_sha256": digest}
        assert apply.result["license_sha256"] == digest
        with open(cfg, "rb") as fh:
            assert confluence_license_get(fh.read()) == key
        assert "holds the new licence after the restart" in step_text(apply)
        assert key not in step_text(apply)
    inst.refresh_from_db()
    assert inst.status == InstanceStatus.RUNNING
