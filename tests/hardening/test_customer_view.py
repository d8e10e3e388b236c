"""Customers never see host internals (review L1): no host address, SSH user, port, host key or
backup-host name in operation steps, results, errors, endpoint problems or the policy form,
through the API and the pages. Staff still see all of it.

The texts are produced by the real code that writes them (the SSH connection's label, the
backup rsync destination and ssh command, the endpoint check), and one operation runs against a
lab host over real SSH.
"""

from __future__ import annotations

import shlex

import pytest
from django.test import Client
from django.urls import reverse

from certificates.consistency import endpoint_check
from panel.access import access_for_user
from provisioning.hosts import host_backup_rsync_destination, host_backup_ssh_argv
from provisioning.models import AtlassianInstance, Host, Operation, OperationStep
from provisioning.remote import HostConnection, SSHTarget
from provisioning.services import instance_stop
from tests.support.factories import make_instance
from tests.support.lab import run_operation, step_text

FINGERPRINT = "SHA256:" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V"
ADDRESS, PRIVATE, BACKUP_ADDRESS = "10.20.30.40", "app-one.internal.example", "10.20.30.99"
SSH_USER, BACKUP_USER, BACKUP_NAME = "deploy", "rsnap", "vault-backup-7"
SECRETS = [
    ADDRESS,
    PRIVATE,
    BACKUP_ADDRESS,
    BACKUP_NAME,
    f"{SSH_USER}@",
    f"{BACKUP_USER}@",
    FINGERPRINT,
    ":2201",
]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture
def hosts(db) -> tuple[Host, Host]:
    backup = Host.objects.create(
        name=BACKUP_NAME,
        role=Host.Role.BACKUP,
        address=BACKUP_ADDRESS,
        ssh_user=BACKUP_USER,
        data_root="/srv/backups",
        status=Host.Status.READY,
    )
    app = Host.objects.create(
        name="app-one",
        role=Host.Role.APP,
        address=ADDRESS,
        private_address=PRIVATE,
        ssh_port=2201,
        ssh_user=SSH_USER,
        host_key_fingerprint=FINGERPRINT,
        data_root="/srv/atlassian",
        status=Host.Status.READY,
        backup_host=backup,
    )
    return app, backup


@pytest.fixture
def backup_op(acme, hosts) -> Operation:
    """A (recorded) backup of an Acme instance, its steps written as the real code writes them."""
    app, _backup = hosts
    instance = make_instance(acme, "acme-jira", host=app)
    op = Operation.objects.create(
        kind="backup.create",
        tenant=acme,
        instance=instance,
        status="failed",
        params={"host": app.name, "backup_host": BACKUP_NAME, "mode": "hot"},
        result={"host": app.name, "compose_hash": "abc123", "copied_to": f"{BACKUP_NAME}:/x"},
        error=f"rsync to {host_backup_rsync_destination(app, 'incoming/')} failed (exit 12)",
    )
    label = HostConnection(SSHTarget.for_host(app)).label
    OperationStep.objects.create(
        operation=op, message=f"Connected to {label}; host key {FINGERPRINT} matches the pinned key"
    )
    rsync = [
        "rsync",
        "-aH",
        "-e",
        shlex.join(host_backup_ssh_argv(app)),
        "/srv/atlassian/instances/acme-jira/",
        host_backup_rsync_destination(app, "incoming/"),
    ]
    OperationStep.objects.create(
        operation=op,
        message=f"Copying to {BACKUP_NAME}",
        command=shlex.join(rsync),
        exit_code=12,
        output=f"rsync: connection to {BACKUP_ADDRESS} closed",
    )
    return op


def test_the_texts_under_test_really_carry_host_internals(backup_op):
    # Guards the test itself: what the real code writes does name the host internals.
    text = step_text(backup_op) + backup_op.error + str(backup_op.result)
    for internal in (
        ADDRESS,
        BACKUP_ADDRESS,
        BACKUP_NAME,
        f"{SSH_USER}@{ADDRESS}:2201",
        f"{BACKUP_USER}@{BACKUP_ADDRESS}",
        FINGERPRINT,
    ):
        assert internal in text


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_tenant_users_read_operations_without_host_internals_in_the_api(
    request, api, who, backup_op
):
    user = request.getfixturevalue(who)
    detail = api(user).get(f"/api/operations/{backup_op.pk}/")
    steps = api(user).get(f"/api/operations/{backup_op.pk}/steps/")
    listing = api(user).get("/api/operations/")
    for response in (detail, steps, listing):
        assert response.status_code == 200
        assert _leaks(response.content.decode()) == []
    data = detail.json()
    assert data["steps"][0]["message"].startswith("Connected to app-one; host key [host key]")
    assert "[backup host]" in data["steps"][1]["message"]
    assert "host" not in data["result"] and data["result"]["compose_hash"] == "abc123"
    assert "backup_host" not in data["params"] and data["params"]["mode"] == "hot"
    assert "[host address]" in data["error"]


def test_staff_still_read_every_host_detail_in_the_api(api, sam, backup_op):
    body = api(sam).get(f"/api/operations/{backup_op.pk}/").content.decode()
    assert set(_leaks(body)) >= {ADDRESS, BACKUP_NAME, f"{SSH_USER}@", FINGERPRINT}
    assert f"{BACKUP_USER}@{BACKUP_ADDRESS}" in body
    assert api(sam).get(f"/api/operations/{backup_op.pk}/").json()["result"]["host"] == "app-one"


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_tenant_users_read_operation_pages_without_host_internals(request, who, backup_op):
    client = _client(request.getfixturevalue(who))
    page = client.get(reverse("provisioning:operation_detail", args=[backup_op.pk]))
    poll = client.get(reverse("provisioning:operation_log", args=[backup_op.pk]) + "?after=0")
    assert page.status_code == 200 and poll.status_code in (200, 286)
    for response in (page, poll):
        content = response.content.decode()
        assert _leaks(content) == []
        assert "Connected to app-one; host key [host key]" in content
        assert "[backup host]" in content
    assert "Why it failed" in page.content.decode()


def test_staff_read_operation_pages_with_host_internals(sam, backup_op):
    content = (
        _client(sam)
        .get(reverse("provisioning:operation_detail", args=[backup_op.pk]))
        .content.decode()
    )
    assert f"{SSH_USER}@{ADDRESS}:2201" in content and BACKUP_NAME in content


def test_an_instance_status_reason_shows_no_host_address_to_customers(api, alice, sam, backup_op):
    AtlassianInstance.objects.filter(pk=backup_op.instance_id).update(
        status="failed", status_reason=backup_op.error
    )
    url = f"/api/instances/{backup_op.instance_id}/"
    assert _leaks(api(alice).get(url).content.decode()) == []
    assert BACKUP_ADDRESS in api(sam).get(url).json()["status_reason"]


def test_endpoint_problems_name_no_host_for_customers(api, alice, bob, sam, acme, hosts):
    app, _ = hosts
    # The panel holds no key for this host, so the real check fails before any network traffic,
    # with the connection's full label in the error.
    instance = make_instance(acme, "acme-wiki", host=app)
    problems = endpoint_check(instance)
    assert any(f"{SSH_USER}@{ADDRESS}" in p.get("detail", "") for p in problems)
    url = f"/api/instances/{instance.pk}/endpoint/"
    for user in (alice, bob):
        body = api(user).get(url)
        assert body.status_code == 200 and _leaks(body.content.decode()) == []
        assert any("could not reach" in p["problem"] for p in body.json()["problems"])
        page = _client(user).get(reverse("provisioning:instance_detail", args=[instance.pk]))
        assert _leaks(page.content.decode()) == []
    staff = api(sam).get(url).json()["problems"]
    assert any(f"{SSH_USER}@{ADDRESS}" in (p.get("detail") or "") for p in staff)


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_the_backup_policy_page_lists_no_backup_hosts_to_customers(request, who, acme, hosts):
    app, _ = hosts
    Host.objects.create(name="other-backup-3", role=Host.Role.BACKUP, address="10.9.9.9")
    instance = make_instance(acme, "acme-jira", host=app)
    page = _client(request.getfixturevalue(who)).get(reverse("backups:policy", args=[instance.pk]))
    content = page.content.decode()
    assert page.status_code == 200
    assert BACKUP_NAME not in content and "other-backup-3" not in content
    assert "Chosen by support" in content


def test_support_still_chooses_among_backup_hosts(sam, acme, hosts):
    app, _ = hosts
    Host.objects.create(name="other-backup-3", role=Host.Role.BACKUP, address="10.9.9.9")
    instance = make_instance(acme, "acme-jira", host=app)
    content = _client(sam).get(reverse("backups:policy", args=[instance.pk])).content.decode()
    assert BACKUP_NAME in content and "other-backup-3" in content


# --- a real operation over SSH against the lab ------------------------------------------------


@pytest.mark.lab
def test_a_tenant_admin_reads_a_real_lab_operation_without_the_hosts_address_or_user(
    api, alice, bob, sam, acme, enrol_lab_host, lab_hosts
):
    host = enrol_lab_host("app1")
    spec = lab_hosts["app1"]
    instance = make_instance(acme, f"cv-{host.pk.hex[:6]}", host=host, status="running")
    # A stop of an instance that was never deployed on the host: the panel connects over real
    # SSH (and logs the connection), then docker compose fails; both end up in the log.
    op = run_operation(instance_stop(actor=access_for_user(alice), instance=instance))
    staff_view = api(sam).get(f"/api/operations/{op.pk}/").content.decode()
    internals = [f"{spec['ssh_user']}@{spec['address']}", spec["host_key_fingerprint"]]
    assert all(text in staff_view for text in internals), step_text(op)
    for user in (alice, bob):
        for url in (f"/api/operations/{op.pk}/", f"/api/operations/{op.pk}/steps/"):
            body = api(user).get(url).content.decode()
            # The lab host's private address is its name (lab-app1), so both are masked.
            assert "Connected to [host address]; host key [host key] matches" in body
            assert spec["address"] not in body and f"{spec['ssh_user']}@" not in body
            assert spec["host_key_fingerprint"] not in body
        page = _client(user).get(reverse("provisioning:operation_detail", args=[op.pk]))
        content = page.content.decode()
        assert "Connected to [host address]" in content and spec["address"] not in content
        assert f"{spec['ssh_user']}@" not in content


# --- the mask itself ----------------------------------------------------------------------------


def test_the_mask_matches_whole_addresses_and_names_only():
    from panel.customer_view import HostMask

    mask = HostMask.of(addresses=["10.0.0.1", "db.int"], backup_names=["bk"])
    assert mask.text("10.0.0.12 and 10.0.0.1.") == "10.0.0.12 and [host address]."
    assert mask.text("bkp bk-2 bk") == "bkp bk-2 [backup host]"
    assert mask.text("ssh -p 22 root@db.int:22 ok") == "ssh -p 22 [host address] ok"
    assert mask.text("Connected to app (ops@10.0.0.1:2222)") == "Connected to app"
    assert mask.data({"host": "app", "n": ["bk", 3], "hostname": "jira.example"}) == {
        "n": ["[backup host]", 3],
        "hostname": "jira.example",
    }


def test_an_instance_page_and_its_backup_points_show_no_host_address_to_customers(
    alice, bob, sam, backup_op
):
    from tests.backups.factories import make_point

    instance = AtlassianInstance.objects.get(pk=backup_op.instance_id)
    AtlassianInstance.objects.filter(pk=instance.pk).update(
        status="failed", status_reason=backup_op.error
    )
    make_point(instance, status="failed", error=backup_op.error)
    pages = [
        reverse("provisioning:instance_detail", args=[instance.pk]),
        reverse("backups:instance_backups", args=[instance.pk]),
    ]
    for user in (alice, bob):
        for url in pages:
            page = _client(user).get(url)
            assert page.status_code == 200
            assert _leaks(page.content.decode()) == [], (user, url)
    for url in pages:  # staff read the whole reason
        assert BACKUP_USER in _client(sam).get(url).content.decode(), url


def _mask_text_reference(addresses: list[str], backup_names: list[str], value: str) -> str:
    """The mask's rule written plainly (every pattern applied in turn, longest term first), as
    the optimised :meth:`HostMask.text` must keep it."""
    import re

    from panel.customer_view import BACKUP_HOST, HOST_ADDRESS, HOST_KEY

    terms = [(t, HOST_ADDRESS) for t in sorted(set(filter(None, addresses)))]
    terms += [(t, BACKUP_HOST) for t in sorted(set(filter(None, backup_names)))]
    terms.sort(key=lambda pair: len(pair[0]), reverse=True)
    for term, word in terms:
        if len(term) >= 2:
            value = re.sub(rf"(?<![\w.-]){re.escape(term)}(?![\w-])", word, value)
    placeholder = rf"(?:{re.escape(HOST_ADDRESS)}|{re.escape(BACKUP_HOST)})"
    value = re.sub(r"\bSHA256:[A-Za-z0-9+/]{43}=?", HOST_KEY, value)
    value = re.sub(rf"[\w.+-]+@(?={placeholder})", "", value)
    value = re.sub(rf"({placeholder}):\d+", r"\1", value)
    return re.sub(rf"\s*\({placeholder}\)", "", value)


def test_the_mask_masks_exactly_as_its_plain_rule_does():
    import random

    from panel.customer_view import HostMask

    rnd = random.Random(16)
    pieces = ["a", "1", ".", "-", "_", " ", "@", ":", "(", ")", "[", "]", "\n", "+", "/", "="]
    pieces += ["host", "address", "backup", "[host address]", "[backup host]", "22", "é"]
    pieces += ["SHA256:", "x" * 43]

    def word() -> str:
        return "".join(rnd.choice(["a", "1", ".", "-", ":", "host", " "]) for _ in range(4))

    for _ in range(300):
        addresses = [word() for _ in range(rnd.randint(0, 5))]
        names = [word() for _ in range(rnd.randint(0, 3))]
        mask = HostMask.of(addresses=addresses, backup_names=names)
        for _ in range(20):
            choices = pieces + 3 * (addresses + names)
            text = "".join(rnd.choice(choices) for _ in range(rnd.randint(0, 25)))
            assert mask.text(text) == _mask_text_reference(addresses, names, text), text


def test_the_mask_reads_a_long_output_in_linear_time():
    """A step's output can be long; masking it for a customer must not take seconds (a run of
    word characters once cost quadratic time, and every host term a full regex scan)."""
    import time

    from panel.customer_view import HostMask

    mask = HostMask.of(
        addresses=[f"10.1.{i // 250}.{i % 250}" for i in range(1000)], backup_names=["bk-1"]
    )
    output = "x" * 100_000 + " deploy@10.1.0.7:22 (bk-1) " + "y" * 100_000
    started = time.monotonic()
    masked = mask.text(output)
    assert time.monotonic() - started < 5
    assert masked == "x" * 100_000 + " [host address] " + "y" * 100_000
