"""Evacuating a dead app host (issue #15), end to end on the lab.

Two instances of two products (a tier-1 Jira and a tier-3 Confluence) run on app2 with their
DNS records in the lab's BIND, certificates from pebble and proxy sites; each has a backup
point and marker data before it and after it; the Jira also archives its WAL. app2 dies
abruptly (its containers killed, not stopped). Staff evacuate it: both come back on app1,
lowest RTO first, the Confluence with the data of its point, the Jira with its database as of
seconds before the failure (its archive replayed to the end); DNS points at app1 and app1's
proxy serves them over HTTPS with their certificates; each records its RTO and data age. Then
app2 comes back, its old containers started again as a reboot would: the health check fences
them (stopped, never restarting, their directories kept aside, their proxy sites and
certificate files gone from app2's proxy) before app2 is ready; the new copies are untouched.

Not in ``tests/backups/lab``: that package's world turns DNS, certificates and the proxy off.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from typing import Any

import pytest
from django.utils import timezone

from backups.evacuate import evacuation_plan, host_evacuate_start
from backups.models import Backup
from backups.services import backup_start, wal_enable_start
from certificates.models import Certificate, DnsRecord
from panel.access import access_for_user
from provisioning.compose import edge_network, project_name
from provisioning.hosts import host_health_probe
from provisioning.models import AtlassianInstance, EvacuatedCopy, Host, InstanceStatus, Operation
from provisioning.products import spec_for
from provisioning.services import instance_create
from tests.support.backup_lab import FAST, enrol_and_provision, sh, wal_shipped_after
from tests.support.lab import (
    container_ip,
    containers_under,
    lab_key_remove,
    network_remove,
    run_operation,
    step_text,
    wait_ssh,
)
from tests.support.lab_edge import https_get, lab_lookup, standin_json

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def _api(inst: AtlassianInstance, path: str, body: dict | None = None) -> Any:
    """The stand-in's own API of ``inst``, through its container's address on its edge network."""
    ip = container_ip(project_name(inst), "app", "panel-proxy")
    url = (
        f"http://{ip}:{spec_for(inst.product).http_port}{inst.context_path}/rest/standin/1.0/{path}"
    )
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - lab container
        return json.loads(response.read() or b"null")


def _titles(inst: AtlassianInstance) -> list[str]:
    return [row["title"] for row in _api(inst, "items")["items"]]


def _inspect(cid: str) -> dict[str, Any]:
    return json.loads(sh("docker", "inspect", cid))[0]


def _create(actor: Any, tenant: Any, host: Host, name: str, hostname: str, **fields: Any):
    op = instance_create(
        actor=actor,
        tenant=tenant,
        name=name,
        hostname=hostname,
        host=host,
        heap_min_mb=512,
        heap_max_mb=1024,
        extra_env=FAST,
        **fields,
    )
    op = run_operation(op)
    assert op.status == "succeeded" and op.instance_id is not None, step_text(op)
    return AtlassianInstance.objects.select_related("host", "tenant").get(pk=op.instance_id)


def test_a_dead_app_host_is_evacuated_onto_a_healthy_one_and_fenced_when_it_returns(
    lab_settings,
    lab_zone,
    lab_dns,
    lab_state,
    lab_hosts,
    pebble_root,
    pat,
    sam,
    alice,
    acme,
    unique_name,
):
    platform = access_for_user(pat)
    backup = enrol_and_provision(platform, lab_hosts["backup1"])
    app1 = enrol_and_provision(platform, lab_hosts["app1"], backup_host=backup)
    app2 = enrol_and_provision(platform, lab_hosts["app2"], backup_host=backup)
    zone = lab_zone()
    customer = access_for_user(alice)
    made = []  # the instances this test made (for the clean-up)
    app2_container = lab_hosts["app2"]["container"]
    doomed = []  # the containers killed with app2
    try:
        jira = _create(
            customer, acme, app2, unique_name("jira"), f"{unique_name('jira')}.{zone.name}",
            product="jira-software", version="9.12.0", tier="tier1",
        )  # fmt: skip
        made.append(jira)
        wiki = _create(
            customer, acme, app2, unique_name("wiki"), f"{unique_name('wiki')}.{zone.name}",
            product="confluence", version="8.5.0", tier="tier3",
        )  # fmt: skip
        made.append(wiki)
        # the tier-1 Jira archives its WAL continuously; the Confluence has points only
        op = run_operation(wal_enable_start(actor=access_for_user(sam), instance=jira))
        assert op.status == "succeeded", step_text(op)
        jira.refresh_from_db()
        for inst in (jira, wiki):
            assert lab_lookup(lab_dns, inst.hostname) == [app2.address]
            _api(inst, "items", {"title": f"{inst.name} before the point"})
            op = run_operation(backup_start(actor=customer, instance=inst))
            assert op.status == "succeeded", step_text(op)
            _api(inst, "items", {"title": f"{inst.name} after the point"})
        wal_shipped_after(jira, timezone.now(), timeout=120)
        old = {inst.pk: project_name(inst) for inst in (jira, wiki)}
        for inst in (jira, wiki):
            assert os.path.exists(f"{app2.data_root}/proxy/conf.d/{old[inst.pk]}.conf")

        # app2 dies abruptly: its sshd and every container of its projects are killed
        doomed = containers_under(app2.data_root)
        assert len(doomed) >= 5, doomed  # two apps, two databases, its proxy
        sh("docker", "kill", app2_container)
        sh("docker", "kill", *doomed, check=False)
        host_health_probe(app2)
        app2.refresh_from_db()
        assert app2.status == Host.Status.UNREACHABLE

        # the plan: both onto app1, the tier-1 Jira first
        plan = evacuation_plan(app2)
        assert [(r.instance.name, r.target) for r in plan] == [(jira.name, app1), (wiki.name, app1)]
        # a ready host is refused
        with pytest.raises(Exception, match="evacuate only a host that is down"):
            host_evacuate_start(actor=access_for_user(sam), host=app1)

        parent = host_evacuate_start(actor=access_for_user(sam), host=app2)
        parent = run_operation(parent)
        assert parent.status == "succeeded", f"{parent.error}\n{step_text(parent)}"
        children = list(Operation.objects.filter(parent=parent).order_by("started_at"))
        assert [c.instance_id for c in children][0] == jira.pk
        for child in children:
            assert child.status == "succeeded", f"{child.error}\n{step_text(child)}"
            assert child.result["to_host"] == app1.name
            assert 0 < child.result["rto_seconds"]
            assert child.result["data_age_seconds"] >= 0
        assert {o["instance"] for o in parent.result["instances"]} == {jira.name, wiki.name}

        by_instance = {c.instance_id: c for c in children}
        # Jira's database is its archive replayed to the last WAL shipped before app2 died:
        # the row written after the point is back; the home is the point's
        assert by_instance[jira.pk].result["database_from"] == "wal"
        assert by_instance[jira.pk].result["database_at"] > by_instance[jira.pk].result["home_at"]
        assert by_instance[wiki.pk].result["database_from"] == "dump"
        for inst in (jira, wiki):
            inst.refresh_from_db()
            assert inst.host_id == app1.pk and inst.status == InstanceStatus.RUNNING
            assert project_name(inst) != old[inst.pk]
            titles = _titles(inst)
            assert f"{inst.name} before the point" in titles
            if inst.pk == jira.pk:
                assert f"{inst.name} after the point" in titles
            else:
                # the point's data, not what was written after it (lost with the host)
                assert f"{inst.name} after the point" not in titles
            # DNS in BIND points at app1 now; app1's proxy serves it with its certificate
            assert lab_lookup(lab_dns, inst.hostname) == [app1.address]
            assert DnsRecord.objects.get(instance=inst).value == app1.address
            cert = Certificate.objects.get(instance=inst)
            answer = https_get(
                app1.address, inst.hostname, f"{inst.context_path}/status", cafile=pebble_root
            )
            assert answer.status == 200 and standin_json(answer)["state"] == "RUNNING"
            assert answer.serial == cert.serial
        pending = EvacuatedCopy.objects.filter(host=app2, status=EvacuatedCopy.Status.PENDING)
        assert sorted(c.project for c in pending) == sorted(old.values())

        # app2 comes back, and (as after a reboot) its old containers start again
        sh("docker", "start", app2_container)
        wait_ssh(app2.address, app2.ssh_port)
        sh("docker", "start", *doomed, check=False)
        host_health_probe(app2)  # the periodic check: not ready yet, a fence is started
        app2.refresh_from_db()
        assert app2.status == Host.Status.UNREACHABLE and "fenced" in app2.status_reason
        fence = Operation.objects.get(kind="host.fence", host=app2)
        fence = run_operation(fence)
        assert fence.status == "succeeded", f"{fence.error}\n{step_text(fence)}"
        app2.refresh_from_db()
        assert app2.status == Host.Status.READY
        for inst in (jira, wiki):
            # app2's proxy no longer has the old site, nor the instance's certificate and key
            cert = Certificate.objects.get(instance=inst)
            assert not os.path.exists(f"{app2.data_root}/proxy/conf.d/{old[inst.pk]}.conf")
            assert not os.path.exists(f"{app2.data_root}/proxy/certs/{cert.pk}.pem")
            assert os.path.exists(f"{app1.data_root}/proxy/certs/{cert.pk}.pem")
            copy = EvacuatedCopy.objects.get(host=app2, project=old[inst.pk])
            assert copy.status == EvacuatedCopy.Status.FENCED and copy.kept_at
            label = f"label=com.docker.compose.project={old[inst.pk]}"
            old_ids = sh("docker", "ps", "-aq", "--filter", label).split()
            assert old_ids, "the old containers are kept (stopped), not removed"
            for cid in old_ids:
                state = _inspect(cid)
                assert state["State"]["Running"] is False
                assert state["HostConfig"]["RestartPolicy"]["Name"] == "no"
            assert subprocess.run(["test", "-d", copy.kept_at]).returncode == 0
            assert subprocess.run(["test", "-e", copy.directory]).returncode != 0
            # the new copy still runs and serves
            inst.refresh_from_db()
            answer = https_get(
                app1.address, inst.hostname, f"{inst.context_path}/status", cafile=pebble_root
            )
            assert answer.status == 200
            assert f"{inst.name} before the point" in _titles(inst)
        # a backup of an evacuated instance goes from app1
        op = run_operation(backup_start(actor=customer, instance=jira))
        assert op.status == "succeeded", step_text(op)
        assert Backup.objects.get(pk=op.result["backup"]).app_host_id == app1.pk
    finally:
        subprocess.run(["docker", "start", app2_container], capture_output=True)
        # app2's proxy was killed with it: running again for the next tests (or gone, to
        # be made again, when a network it was on has been removed meanwhile).
        for cid in doomed:
            if "proxy" in sh("docker", "inspect", "-f", "{{.Name}}", cid, check=False):
                if subprocess.run(["docker", "start", cid], capture_output=True).returncode:
                    sh("docker", "rm", "-f", cid, check=False)

        wait_ssh(lab_hosts["app2"]["address"], int(lab_hosts["app2"]["ssh_port"]))
        for inst in made:
            inst.refresh_from_db()
            projects = {inst.name, project_name(inst)}
            for project in projects:
                sh("docker", "compose", "-p", project, "down", "-v", "-t", "3",
                   "--remove-orphans", check=False, timeout=180)  # fmt: skip
                network_remove(f"panel-edge-{project}")
            network_remove(edge_network(inst))
            for host in (app1, app2):
                sh("rm", "-rf", f"{host.data_root}/instances/{inst.name}", check=False)
                confd = f"{host.data_root}/proxy/conf.d"
                for project in projects:
                    sh("rm", "-f", f"{confd}/{project}.conf", check=False)
        sh("rm", "-rf", f"{app2.data_root}/evacuated", check=False)
        for host in (app1, app2):
            for inst in made:
                sh("docker", "exec", lab_hosts["backup1"]["container"], "rm", "-rf",
                   f"{backup.data_root}/hosts/{host.name}/{inst.name}", check=False)  # fmt: skip
        for name, host in (("app1", app1), ("app2", app2), ("backup1", backup)):
            lab_key_remove(lab_state, name, host.ssh_public_key)
