"""Host pages for platform admins: list, enrol, confirm the key, provision, warnings."""

from __future__ import annotations

import pytest

from provisioning.models import Host, Operation

pytestmark = pytest.mark.django_db

SEEN = "SHA256:" + "s" * 43


@pytest.fixture
def admin(client, pat):
    client.force_login(pat)
    return client


@pytest.mark.parametrize("who", ["alice", "sam"])
def test_customers_and_support_cannot_open_host_pages(who, request, client, app_host):
    client.force_login(request.getfixturevalue(who))
    for url in ("/hosts/", "/hosts/enrol/", f"/hosts/{app_host.pk}/"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"app-one" not in response.content
    assert client.post(f"/hosts/{app_host.pk}/provision/").status_code == 403
    assert not Operation.objects.exists()


def test_the_list_shows_status_role_address_and_a_disk_warning(admin, app_host):
    Host.objects.filter(pk=app_host.pk).update(disk_free_bytes=10 * 1024**3)  # 95% used
    response = admin.get("/hosts/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-host="app-one"' in html and "App host" in html
    assert "root@127.0.0.11:2222" in html and 'data-status="ready"' in html
    assert 'data-testid="disk-warning"' in html and 'data-testid="disk-warnings"' in html
    assert 'id="nav-hosts"' in html


def test_enrolling_leads_to_the_host_page_which_waits_for_the_key(admin, _no_broker):
    form = {
        "name": "app-fra-1",
        "role": "app",
        "address": "10.0.0.5",
        "ssh_port": 22,
        "ssh_user": "root",
        "data_root": "/srv/atlassian",
        "root_password": "once-only-pw",
        "idempotency_key": "ui-abc",
    }
    response = admin.post("/hosts/enrol/", form)
    host = Host.objects.get(name="app-fra-1")
    assert response.status_code == 302 and response["Location"] == f"/hosts/{host.pk}/"
    page = admin.get(f"/hosts/{host.pk}/").content.decode()
    assert 'data-testid="key-fetching"' in page and 'hx-trigger="every 2s"' in page
    assert host.ssh_public_key in page and "once-only-pw" not in page
    # A double submit of the same form starts nothing new (the key replays only the same
    # fields, as on every form: another form with this key would be refused).
    again = admin.post("/hosts/enrol/", form)
    assert again.status_code == 302 and Operation.objects.count() == 1


def test_the_key_panel_stops_polling_once_first_contact_ended(admin, app_host):
    response = admin.get(
        f"/hosts/{app_host.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="host-key-panel"
    )
    assert response.status_code == 286


def test_the_admin_confirms_the_fingerprint_the_host_presented(admin):
    host = Host.objects.create(
        name="app-two",
        role="app",
        address="10.0.0.6",
        seen_host_key_fingerprint=SEEN,
        seen_host_key="ssh-ed25519 AAAA",
    )
    page = admin.get(f"/hosts/{host.pk}/").content.decode()
    assert 'data-testid="confirm-key"' in page and SEEN in page
    assert 'id="action-provision"' not in page

    wrong = admin.post(f"/hosts/{host.pk}/trust/", {"fingerprint": "SHA256:" + "w" * 43})
    assert wrong.status_code == 400
    assert SEEN in wrong.context["trust_form"].errors["fingerprint"][0]

    response = admin.post(f"/hosts/{host.pk}/trust/", {"fingerprint": SEEN})
    op = Operation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.pk}/"
    host.refresh_from_db()
    assert host.host_key_fingerprint == SEEN and host.status == "trusted"
    page = admin.get(f"/hosts/{host.pk}/").content.decode()
    assert 'id="pinned-fingerprint"' in page and 'id="action-provision"' in page


def test_the_provision_button_starts_one_operation_and_refuses_a_second(admin, app_host):
    app_host.host_key_fingerprint = "SHA256:" + "A" * 43
    app_host.save()
    response = admin.post(f"/hosts/{app_host.pk}/provision/", {"idempotency_key": "k1"})
    op = Operation.objects.get()
    assert op.kind == "host.provision" and response["Location"] == f"/operations/{op.pk}/"
    second = admin.post(f"/hosts/{app_host.pk}/provision/", {"idempotency_key": "k2"}, follow=True)
    assert "already running on this host" in second.content.decode()
    assert Operation.objects.count() == 1
    page = admin.get(f"/hosts/{app_host.pk}/").content.decode()
    assert f"/operations/{op.pk}/" in page


def test_the_detail_shows_facts_health_and_the_disk_warning(admin, app_host, settings):
    settings.PANEL_HOST_DISK_WARNING_PERCENT = 20
    app_host.facts = {
        "docker_version": "24.0.7",
        "compose_version": "2.40.3",
        "health": {"reachable": True, "docker": "24.0.7", "problem": ""},
    }
    app_host.save()
    page = admin.get(f"/hosts/{app_host.pk}/").content.decode()
    assert 'data-fact="docker_version"' in page and "2.40.3" in page
    assert "Engine 24.0.7 answers" in page
    assert 'data-testid="disk-warning"' in page and "25.0% used" in page
