"""Host ports: Bitbucket's git over SSH and Bamboo's agent broker are published on a port the
panel allocates per instance from PANEL_INSTANCE_PORT_RANGE, unique per host, on the address
the host's proxy publishes on, and the product is told that port."""

from __future__ import annotations

import socket
import threading

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from backups.services import restore_start
from certificates.consistency import _published_port_problems
from panel.access import access_for_user
from provisioning.compose import compose_render
from provisioning.models import AtlassianInstance, Host
from provisioning.ports import (
    HostPortsExhausted,
    host_ports_in_use,
    instance_host_port_allocate,
    port_range,
    publish_bind,
)
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


def _bitbucket(tenant, name: str, host: Host | None, **fields) -> AtlassianInstance:
    return make_instance(tenant, name, product="bitbucket", version="8.19.0", host=host, **fields)


def _second_host(name: str = "app-two", address: str = "127.0.0.12") -> Host:
    return Host.objects.create(
        name=name,
        role=Host.Role.APP,
        address=address,
        status=Host.Status.READY,
        memory_mb=16384,
        cpu_count=4,
        disk_total_bytes=200 * 1024**3,
        disk_free_bytes=150 * 1024**3,
    )


def test_instances_on_one_host_get_distinct_ports_and_another_host_starts_over(acme, app_host):
    one = _bitbucket(acme, "acme-git", app_host)
    two = make_instance(acme, "acme-ci", product="bamboo", version="9.6.0", host=app_host)
    assert instance_host_port_allocate(one, app_host) == 20000
    assert instance_host_port_allocate(two, app_host) == 20001
    other = _bitbucket(acme, "acme-git-copy", _second_host())
    assert instance_host_port_allocate(other, other.host) == 20000
    ports = dict(AtlassianInstance.objects.values_list("name", "host_port"))
    assert ports == {"acme-git": 20000, "acme-ci": 20001, "acme-git-copy": 20000}


def test_a_port_is_kept_and_products_without_one_get_none(acme, app_host):
    git = _bitbucket(acme, "acme-git", app_host)
    assert instance_host_port_allocate(git, app_host) == 20000
    assert instance_host_port_allocate(git, app_host) == 20000  # a retry keeps its port
    jira = make_instance(acme, "acme-jira", host=app_host)
    assert instance_host_port_allocate(jira, app_host) is None
    jira.refresh_from_db()
    assert jira.host_port is None and jira.published_url == ""


def test_a_deleted_instance_frees_its_port_and_the_lowest_free_one_is_taken(acme, app_host):
    gone = _bitbucket(acme, "acme-old", app_host, host_port=20000)
    _bitbucket(acme, "acme-mid", app_host, host_port=20001)
    AtlassianInstance.objects.filter(pk=gone.pk).update(status="deleted")
    new = _bitbucket(acme, "acme-new", app_host)
    assert instance_host_port_allocate(new, app_host) == 20000


def test_the_database_refuses_two_live_instances_on_one_host_port(acme, app_host):
    _bitbucket(acme, "acme-git", app_host, host_port=20005)
    with pytest.raises(IntegrityError), transaction.atomic():
        _bitbucket(acme, "acme-git-2", app_host, host_port=20005)


def test_a_full_range_fails_with_a_reason_naming_the_host_and_the_setting(acme, app_host, settings):
    settings.PANEL_INSTANCE_PORT_RANGE = "20000-20001"
    for i, port in enumerate((20000, 20001)):
        _bitbucket(acme, f"acme-git-{i}", app_host, host_port=port)
    late = _bitbucket(acme, "acme-git-late", app_host)
    with pytest.raises(HostPortsExhausted) as exc:
        instance_host_port_allocate(late, app_host)
    assert "app-one" in str(exc.value) and "20000-20001" in str(exc.value)
    assert "PANEL_INSTANCE_PORT_RANGE" in str(exc.value)
    late.refresh_from_db()
    assert late.host_port is None


@pytest.mark.parametrize("value", ["", "20000", "20999-20000", "80-90", "20000-70000", "a-b"])
def test_a_bad_port_range_is_a_configuration_error(settings, value):
    settings.PANEL_INSTANCE_PORT_RANGE = value
    with pytest.raises(ImproperlyConfigured, match="PANEL_INSTANCE_PORT_RANGE"):
        port_range()


def test_the_default_range_is_20000_to_20999():
    assert port_range() == (20000, 20999)


def test_bitbucket_publishes_ssh_on_the_hosts_address_and_learns_its_clone_url(acme, app_host):
    git = _bitbucket(acme, "acme-git", app_host, hostname="git.acme.example", host_port=20003)
    app = yaml.safe_load(compose_render(git).compose_yaml)["services"]["app"]
    assert app["ports"] == ["127.0.0.11:20003:7999"]
    assert "7999" in app["expose"]
    assert app["environment"]["PLUGIN_SSH_BASEURL"] == "ssh://git.acme.example:20003/"
    assert git.published_url == "ssh://git.acme.example:20003/"
    db = yaml.safe_load(compose_render(git).compose_yaml)["services"]["db"]
    assert "ports" not in db  # the database stays on its private network


def test_bamboo_publishes_its_broker_and_tells_agents_the_host_port(acme, app_host):
    ci = make_instance(
        acme,
        "acme-ci",
        product="bamboo",
        version="9.6.0",
        hostname="ci.acme.example",
        host=app_host,
        host_port=20004,
    )
    app = yaml.safe_load(compose_render(ci).compose_yaml)["services"]["app"]
    assert app["ports"] == ["127.0.0.11:20004:54663"]
    assert "54663" in app["expose"]
    assert app["environment"]["ATL_BROKER_CLIENT_URI"] == "failover:(tcp://ci.acme.example:20004)"


def test_other_products_and_unallocated_rows_publish_nothing(acme, app_host):
    jira = make_instance(acme, "acme-jira", host=app_host)
    git = _bitbucket(acme, "acme-git", app_host)  # an old row before its migration ran
    for inst in (jira, git):
        app = yaml.safe_load(compose_render(inst).compose_yaml)["services"]["app"]
        assert "ports" not in app
        assert "PLUGIN_SSH_BASEURL" not in app["environment"]
        assert "ATL_BROKER_CLIENT_URI" not in app["environment"]


def test_a_host_known_by_name_publishes_on_every_address_like_its_proxy(app_host):
    from certificates.proxy import compose_render as proxy_compose_render

    assert publish_bind(app_host) == "127.0.0.11:"
    named = Host(name="app-dns", role=Host.Role.APP, address="app.example.net")
    assert publish_bind(named) == ""
    proxy = yaml.safe_load(proxy_compose_render(app_host))["services"]["nginx"]
    assert proxy["ports"] == ["127.0.0.11:80:80", "127.0.0.11:443:443"]


def test_the_api_shows_the_port_and_url_read_only(api, alice, acme, app_host):
    git = _bitbucket(acme, "acme-git", app_host, hostname="git.acme.example", host_port=20007)
    url = f"/api/instances/{git.pk}/"
    body = api(alice).get(url).json()
    assert body["host_port"] == 20007
    assert body["published_url"] == "ssh://git.acme.example:20007/"
    api(alice).patch(url, {"host_port": 1}, format="json")
    git.refresh_from_db()
    assert git.host_port == 20007


def test_the_instance_page_shows_the_clone_url(client, alice, acme, app_host):
    git = _bitbucket(acme, "acme-git", app_host, hostname="git.acme.example", host_port=20007)
    client.force_login(alice)
    page = client.get(f"/instances/{git.pk}/").content.decode()
    assert "Git over SSH" in page and "ssh://git.acme.example:20007/" in page


def test_a_restore_into_a_new_instance_gets_its_own_port_on_the_target_host(acme, app_host, sam):
    backups = backup_host()
    with_backup_host(app_host, backups)
    target_host = with_backup_host(_second_host(), backups)
    source = _bitbucket(acme, "acme-git", app_host, host_port=20000)
    _bitbucket(acme, "acme-busy", target_host, host_port=20000)
    restore_start(
        actor=access_for_user(sam),
        backup=make_point(source),
        mode="new_instance",
        name="acme-git-copy",
        hostname="git-copy.acme.example",
        host=target_host,
    )
    copy = AtlassianInstance.objects.get(name="acme-git-copy")
    assert (copy.host_id, copy.host_port) == (target_host.pk, 20001)


class _Result:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout


class _FakeHost:
    """A host connection that answers `docker ps` / `docker port` with canned output."""

    def __init__(self, **answers: str) -> None:
        self.answers = answers
        self.commands: list[list[str]] = []

    def run(self, argv: list[str], **kw) -> _Result:
        self.commands.append(argv)
        return _Result(self.answers.get(argv[1], ""))


def test_ports_containers_publish_on_the_hosts_address_are_busy(acme, app_host):
    conn = _FakeHost(
        ps="127.0.0.11:20000->7999/tcp, 7990/tcp\n"
        "0.0.0.0:20010-20011->54663-54664/tcp, [::]:20010-20011->54663-54664/tcp\n"
        "127.0.0.12:20002->7999/tcp\n"
        "127.0.0.11:80->80/tcp, 127.0.0.11:443->443/tcp\n"
        "5432/tcp\n"
    )
    assert host_ports_in_use(conn, app_host) == {20000, 20010, 20011, 80, 443}
    git = _bitbucket(acme, "acme-git", app_host)
    assert instance_host_port_allocate(git, app_host, busy={20000, 20001}) == 20002


def _ssh_server(banner: bytes) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        try:
            conn, _ = server.accept()
        except OSError:  # the test closed the server without a connection (nothing to answer)
            return
        conn.sendall(banner)
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize(
    ("docker_port", "banner", "expect"),
    [
        (None, b"SSH-2.0-OpenSSH_9.6\r\n", None),
        ("127.0.0.1:20999\n", b"SSH-2.0-OpenSSH_9.6\r\n", "not published on host port"),
        (None, b"HTTP/1.1 400 Bad Request\r\n", "does not answer as an SSH server"),
    ],
)
def test_the_endpoint_check_compares_docker_port_and_reads_the_ssh_banner(
    acme, docker_port, banner, expect
):
    server, port = _ssh_server(banner)
    host = Host.objects.create(name="app-local", role=Host.Role.APP, address="127.0.0.1")
    git = _bitbucket(acme, "acme-git", host, hostname="git.acme.example", host_port=port)
    conn = _FakeHost(ps="abc123\n", port=docker_port or f"127.0.0.1:{port}\n")
    env = {"PLUGIN_SSH_BASEURL": f"ssh://git.acme.example:{port}/"}
    try:
        problems = _published_port_problems(conn, git, env)
    finally:
        server.close()
    if expect is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expect in problems[0]["problem"], problems
        assert problems[0]["component"] == "port"
    assert ["docker", "port", "abc123", "7999/tcp"] in conn.commands


def test_the_endpoint_check_names_a_base_url_the_app_was_not_given(acme, app_host):
    git = _bitbucket(acme, "acme-git", app_host, hostname="git.acme.example", host_port=20001)
    problems = _published_port_problems(_FakeHost(), git, {"PLUGIN_SSH_BASEURL": ""})
    assert len(problems) == 1
    assert "PLUGIN_SSH_BASEURL=''" in problems[0]["problem"]
    assert "ssh://git.acme.example:20001/" in problems[0]["problem"]
    assert "Roll the instance out again" in problems[0]["fix"]
    jira = make_instance(acme, "acme-jira", host=app_host)
    assert _published_port_problems(_FakeHost(), jira, {}) == []
