"""The hosts API: platform admins only, 202 operations, idempotency, conflicts, no secrets."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from django.db import connection

from panel.crypto import decrypt
from provisioning.hosts import PASSWORD_PARAM
from provisioning.models import Host, Operation
from provisioning.remote import keypair_generate
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db

SEEN = "SHA256:" + "s" * 43
ENROL = {
    "name": "app-fra-1",
    "role": "app",
    "address": "10.0.0.5",
    "ssh_port": 22,
    "data_root": "/srv/atlassian",
    "root_password": "one-time-Pa55word",
}


@pytest.fixture
def keyed_host(app_host) -> Host:
    keys = keypair_generate("panel@app-one")
    app_host.ssh_private_key = keys.private_openssh
    app_host.ssh_public_key = keys.public_openssh
    app_host.host_key_fingerprint = "SHA256:" + "p" * 43
    app_host.save()
    return app_host


@pytest.fixture
def seen_host(db) -> Host:
    return Host.objects.create(
        name="app-two",
        role="app",
        address="10.0.0.6",
        status="enrolled",
        seen_host_key_fingerprint=SEEN,
        seen_host_key="ssh-ed25519 AAAAC3Nza",
        ssh_public_key="ssh-ed25519 AAAA panel@app-two",
    )


@pytest.mark.parametrize("who", ["alice", "bob", "charlie", "sam"])
def test_only_platform_admins_reach_hosts(who, request, api, keyed_host):
    client = api(request.getfixturevalue(who))
    for response in (
        client.get("/api/hosts/"),
        client.get(f"/api/hosts/{keyed_host.pk}/"),
        client.post("/api/hosts/", ENROL),
        client.post(f"/api/hosts/{keyed_host.pk}/provision/"),
    ):
        assert response.status_code == 403, response.content
        assert "app-one" not in response.content.decode()
    assert Host.objects.count() == 1 and not Operation.objects.exists()


def test_anonymous_callers_are_refused(api, keyed_host):
    assert api().get("/api/hosts/").status_code in (401, 403)


def test_admins_see_the_public_key_and_never_the_private_key(api, pat, keyed_host):
    response = api(pat).get(f"/api/hosts/{keyed_host.pk}/")
    assert response.status_code == 200
    data = response.json()
    assert data["ssh_public_key"] == keyed_host.ssh_public_key
    assert data["host_key_fingerprint"] == keyed_host.host_key_fingerprint
    assert "ssh_private_key" not in data and "PRIVATE KEY" not in response.content.decode()
    assert data["disk_used_percent"] == 25.0 and data["disk_warning"] is False
    listed = api(pat).get("/api/hosts/").json()["results"]
    assert [h["name"] for h in listed] == ["app-one"]


def test_enrolling_answers_202_with_the_first_contact_operation(api, pat, _no_broker):
    response = api(pat).post("/api/hosts/", ENROL)
    assert response.status_code == 202, response.content
    op = Operation.objects.get()
    assert response["Location"] == f"/api/operations/{op.id}/"
    assert response.json()["kind"] == "host.connect" and op.kind == "host.connect"
    host = Host.objects.get(name="app-fra-1")
    assert op.host == host and host.status == "enrolled" and op.lock_key == f"host:{host.pk}"
    assert host.ssh_public_key.startswith("ssh-ed25519 ") and host.ssh_public_key.endswith(
        "panel@app-fra-1"
    )
    assert "OPENSSH PRIVATE KEY" in host.ssh_private_key
    with connection.cursor() as cursor:  # encrypted at rest
        cursor.execute("SELECT ssh_private_key FROM provisioning_host WHERE id = %s", [host.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "PRIVATE KEY" not in stored
    # The one-time password only exists encrypted in the pending operation, nowhere else.
    password = ENROL["root_password"]
    assert password not in response.content.decode()
    assert decrypt(op.params[PASSWORD_PARAM]) == password
    assert password not in str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert _no_broker == []  # enqueued only after commit (the test transaction never commits)


def test_an_idempotency_key_returns_the_first_enrolment(api, pat):
    client = api(pat)
    first = client.post("/api/hosts/", ENROL, HTTP_IDEMPOTENCY_KEY="enrol-1")
    second = client.post("/api/hosts/", ENROL, HTTP_IDEMPOTENCY_KEY="enrol-1")
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert Host.objects.count() == 1
    other = client.post(
        f"/api/hosts/{Host.objects.get().pk}/provision/", HTTP_IDEMPOTENCY_KEY="enrol-1"
    )
    assert other.status_code == 409


def test_a_duplicate_name_or_a_wrong_backup_host_is_refused(api, pat, keyed_host):
    client = api(pat)
    response = client.post("/api/hosts/", {**ENROL, "name": "app-one"})
    assert response.status_code == 400 and "name" in response.json()
    response = client.post("/api/hosts/", {**ENROL, "backup_host": str(keyed_host.pk)})
    assert response.status_code == 400 and "backup_host" in response.json()


def test_trusting_needs_the_fingerprint_the_host_presented(api, pat, seen_host):
    client = api(pat)
    wrong = "SHA256:" + "w" * 43
    response = client.post(f"/api/hosts/{seen_host.pk}/trust/", {"fingerprint": wrong})
    assert response.status_code == 400
    assert SEEN in response.json()["fingerprint"][0]
    seen_host.refresh_from_db()
    assert seen_host.host_key_fingerprint == "" and not Operation.objects.exists()

    response = client.post(f"/api/hosts/{seen_host.pk}/trust/", {"fingerprint": SEEN})
    assert response.status_code == 202 and response.json()["kind"] == "host.connect"
    seen_host.refresh_from_db()
    assert seen_host.host_key_fingerprint == SEEN and seen_host.status == "trusted"
    assert seen_host.host_key == "ssh-ed25519 AAAAC3Nza"
    assert AuditEvent.objects.filter(action="host.trust_key").exists()


def test_provisioning_an_untrusted_host_is_refused(api, pat, seen_host):
    response = api(pat).post(f"/api/hosts/{seen_host.pk}/provision/")
    assert response.status_code == 400 and "Confirm the host key" in response.json()["detail"]
    assert not Operation.objects.exists()


def test_a_second_provision_while_one_is_active_is_409(api, pat, keyed_host):
    client = api(pat)
    first = client.post(f"/api/hosts/{keyed_host.pk}/provision/")
    assert first.status_code == 202 and first.json()["kind"] == "host.provision"
    second = client.post(f"/api/hosts/{keyed_host.pk}/provision/")
    assert second.status_code == 409
    assert second.json()["operation"] == first.json()["id"]
    assert Operation.objects.filter(kind="host.provision").count() == 1


def test_a_health_check_is_an_operation_too(api, pat, keyed_host):
    response = api(pat).post(f"/api/hosts/{keyed_host.pk}/health/")
    assert response.status_code == 202 and response.json()["kind"] == "host.health"


def test_a_read_only_token_cannot_enrol(api, pat, make_token):
    token = make_token(pat, scope="read")
    assert api(token=token).get("/api/hosts/").status_code == 200
    assert api(token=token).post("/api/hosts/", ENROL).status_code == 403
    assert not Host.objects.exists()


def test_the_schema_documents_the_host_endpoints_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    for path in (
        "/api/hosts/",
        "/api/hosts/{id}/",
        "/api/hosts/{id}/trust/",
        "/api/hosts/{id}/provision/",
        "/api/hosts/{id}/health/",
    ):
        assert path in schema["paths"], path
    assert "202" in schema["paths"]["/api/hosts/"]["post"]["responses"]
    assert "409" in schema["paths"]["/api/hosts/{id}/provision/"]["post"]["responses"]
    host = schema["components"]["schemas"]["Host"]["properties"]
    assert "ssh_public_key" in host and "ssh_private_key" not in host
    enrol = schema["components"]["schemas"]["HostEnrolRequest"]["properties"]
    assert enrol["root_password"]["writeOnly"] is True
