"""Hostile host names, data roots, addresses and SSH users are refused before any command."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from panel.access import access_for_user
from provisioning.hosts import host_enrol
from provisioning.models import Host, Operation

pytestmark = pytest.mark.django_db

ATTACKS = [
    "; rm -rf /",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "x\ntouch /tmp/pwned",
    "../../etc",
]
VALID = {
    "name": "app-fra-1",
    "role": "app",
    "address": "10.0.0.5",
    "ssh_port": 22,
    "ssh_user": "root",
    "data_root": "/srv/atlassian",
    "private_address": "",
}
# Each field with hostile values shaped like what it expects.
HOSTILE = {
    "name": [f"app{a}" for a in ATTACKS] + ["../app", "app/../../x"],
    "data_root": [f"/srv/x{a}" for a in ATTACKS] + ["/srv/../etc", "srv/relative", "/srv/a b"],
    "address": [f"10.0.0.5{a}" for a in ATTACKS] + ["../10.0.0.5", "host name"],
    "private_address": [f"lab-b{a}" for a in ATTACKS],
    "ssh_user": [f"root{a}" for a in ATTACKS] + ["../root", "-oProxyCommand=id"],
}
CASES = [(field, value) for field, values in HOSTILE.items() for value in values]


@pytest.fixture(autouse=True)
def _nothing_remote_may_run(monkeypatch):
    """Any attempt to reach a host from these tests is a failure."""

    def refuse(*args, **kwargs):
        raise AssertionError("a remote call was attempted with hostile input")

    monkeypatch.setattr("provisioning.hosts.operations.host_key_scan", refuse)
    monkeypatch.setattr("provisioning.remote.ssh.HostConnection.open", refuse)


def _nothing_created() -> None:
    assert not Host.objects.exists()
    assert not Operation.objects.exists()


@pytest.mark.parametrize(("field", "value"), CASES)
def test_the_api_refuses_hostile_values(field, value, api, pat, _no_broker):
    response = api(pat).post("/api/hosts/", {**VALID, field: value})
    assert response.status_code == 400, (field, value)
    assert field in response.json()
    _nothing_created()
    assert _no_broker == []


@pytest.mark.parametrize(("field", "value"), CASES)
def test_the_enrol_form_refuses_hostile_values(field, value, client, pat):
    client.force_login(pat)
    response = client.post("/hosts/enrol/", {**VALID, field: value})
    assert response.status_code == 400, (field, value)
    assert field in response.context["form"].errors
    _nothing_created()


@pytest.mark.parametrize(("field", "value"), CASES)
def test_the_service_refuses_hostile_values(field, value, pat):
    with pytest.raises(ValidationError) as err:
        host_enrol(actor=access_for_user(pat), **{**VALID, field: value})
    assert field in err.value.message_dict
    _nothing_created()


@pytest.mark.parametrize(
    "value",
    ["SHA256:abc; rm -rf /", "SHA256:$(id)" + "a" * 38, "MD5:aa:bb", "SHA256:" + "a" * 42 + "\n"],
)
def test_hostile_fingerprints_are_refused(value, api, pat):
    response = api(pat).post("/api/hosts/", {**VALID, "host_key_fingerprint": value})
    assert response.status_code == 400 and "host_key_fingerprint" in response.json()
    _nothing_created()


def test_a_password_with_control_characters_is_refused(api, pat):
    response = api(pat).post("/api/hosts/", {**VALID, "root_password": "pw\nwith newline"})
    assert response.status_code == 400 and "root_password" in response.json()
    _nothing_created()
