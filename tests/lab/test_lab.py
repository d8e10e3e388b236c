"""The lab works as the panel's tests need it: real sshd on each host with the
recorded host key, docker + compose over SSH on app hosts, rsnapshot on the
backup host, and stand-in Atlassian images that start, talk to PostgreSQL and
report what they were configured with.

Needs `scripts/lab up` first (state in .lab/state.json or $PANEL_LAB_STATE).
No Django database is used.
"""

from __future__ import annotations

import os
import secrets
import time

import pytest

from tests.lab.labkit import (
    LabSSH,
    Sandbox,
    docker,
    fingerprint,
    host,
    http_json,
    keyscan,
    load_state,
    published,
    run,
    wait_for,
    wait_pg_ready,
)

pytestmark = pytest.mark.lab

HOST_NAMES = ["app1", "app2", "backup1"]


@pytest.fixture(scope="module")
def state() -> dict:
    return load_state()


@pytest.fixture(scope="module")
def ssh(state, tmp_path_factory):
    session = LabSSH(state, tmp_path_factory.mktemp("lab-ssh"))
    yield session
    session.close()


@pytest.fixture(scope="module")
def pg(state):
    """A private network with one panel-lab/postgres:15 server named `db`."""
    box = Sandbox()
    try:
        db = box.run(
            state["postgres_image"],
            name="db",
            alias="db",
            env={"POSTGRES_USER": "lab", "POSTGRES_PASSWORD": "lab-pw", "POSTGRES_DB": "lab"},
        )
        wait_pg_ready(db, "lab")
        yield box, db
    finally:
        box.close()


def new_database(db_container: str, owner: str = "lab") -> str:
    name = f"t_{secrets.token_hex(4)}"
    docker(
        "exec",
        db_container,
        "psql",
        "-U",
        "lab",
        "-d",
        "lab",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        f"CREATE DATABASE {name} OWNER {owner}",
    )
    return name


def psql(db_container: str, database: str, sql: str) -> str:
    return docker(
        "exec",
        db_container,
        "psql",
        "-U",
        "lab",
        "-d",
        database,
        "-v",
        "ON_ERROR_STOP=1",
        "-tAc",
        sql,
    ).stdout.strip()


# ---------------------------------------------------------------------------
# The state file and the hosts
# ---------------------------------------------------------------------------


def test_state_file_describes_every_host_and_image(state):
    assert [h["name"] for h in state["hosts"]] == HOST_NAMES
    for h in state["hosts"]:
        assert h["address"].startswith("127.")
        assert h["ssh_user"] == "root" and h["root_password"]
        assert h["private_address"] == f"lab-{h['name']}"
        assert h["container"] == f"panel-lab-{h['name']}"
        assert h["host_key_fingerprint"].startswith("SHA256:")
        assert os.path.isdir(h["data_root"]), h["data_root"]
    assert {h["role"] for h in state["hosts"]} == {"app", "backup"}
    assert state["docker_network"] == "panel-lab"
    refs = [
        f"{state['image_prefix']}{p}:{t}" for p, tags in state["products"].items() for t in tags
    ]
    assert "panel-lab/jira-software:9.12.0" in refs and "panel-lab/crowd:0.0.0-broken" in refs
    docker("image", "inspect", "--format", "{{.Id}}", state["postgres_image"], *refs)


@pytest.mark.parametrize("name", HOST_NAMES)
def test_each_host_presents_its_recorded_host_key(state, name):
    h = host(state, name)
    assert fingerprint(keyscan(h["address"], h["ssh_port"])) == h["host_key_fingerprint"]


def test_hosts_have_distinct_host_keys(state):
    fps = [h["host_key_fingerprint"] for h in state["hosts"]]
    assert len(set(fps)) == len(fps)


def test_root_can_log_in_with_the_recorded_password(state, ssh, tmp_path):
    # The panel enrols a host by logging in once with the root password.
    h = host(state, "app2")
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' '{h['root_password']}'\n")
    askpass.chmod(0o700)
    env = dict(os.environ, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    cmd = [
        "ssh",
        "-p",
        str(h["ssh_port"]),
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={ssh.known_hosts}",
        f"root@{h['address']}",
        "hostname",
    ]
    assert run(cmd, env=env).stdout.strip() == "lab-app2"
    askpass.write_text("#!/bin/sh\necho wrong-password\n")
    assert run(cmd, env=env, check=False).returncode != 0


@pytest.mark.parametrize("name", ["app1", "app2"])
def test_app_host_runs_docker_and_compose_over_ssh(ssh, name):
    out = ssh.run(
        name, "docker version --format '{{.Server.Version}}' && docker compose version --short"
    )
    server, compose = out.stdout.split()
    assert server and compose.lstrip("v").startswith("2.")
    assert ssh.run(name, "hostname").stdout.strip() == f"lab-{name}"


def test_app_host_bind_mounts_resolve_at_the_same_path(state, ssh):
    # Compose files on an app host bind-mount paths of the machine: the data
    # root is the same path inside the host and outside.
    h = host(state, "app1")
    d = f"{h['data_root']}/lab-test-{secrets.token_hex(4)}"
    try:
        ssh.run("app1", f"mkdir -p {d} && echo from-ssh > {d}/probe")
        with open(f"{d}/probe") as f:
            assert f.read() == "from-ssh\n"
        out = ssh.run(
            "app1",
            f"docker run --rm --label panel-lab=1 -v {d}:/probe "
            f"{state['image_prefix']}base:bookworm cat /probe/probe",
        )
        assert out.stdout == "from-ssh\n"
    finally:
        ssh.run("app1", f"rm -rf {d}", check=False)


def test_backup_host_has_rsnapshot_and_reaches_app_hosts_by_name(state, ssh, tmp_path):
    h = host(state, "backup1")
    assert ssh.run("backup1", "rsnapshot -V", check=False).stdout.startswith("rsnapshot 1.")
    conf = (
        "config_version\t1.2\n"
        f"snapshot_root\t{h['data_root']}/lab-test-snapshots/\n"
        "no_create_root\t0\n"
        "cmd_rsync\t/usr/bin/rsync\n"
        "cmd_ssh\t/usr/bin/ssh\n"
        "retain\tdaily\t7\n"
        "backup\troot@lab-app1:/srv/\tapp1/\n"
    )
    ssh.run("backup1", "cat > /tmp/lab-test-rsnapshot.conf", input=conf)
    out = ssh.run(
        "backup1",
        "rsnapshot -c /tmp/lab-test-rsnapshot.conf configtest; rm -f /tmp/lab-test-rsnapshot.conf",
    )
    assert "Syntax OK" in out.stdout
    # The backup host sees app1's sshd on the lab network, with the same key.
    line = ssh.run("backup1", "ssh-keyscan -T 5 -t ed25519 lab-app1").stdout.strip()
    assert fingerprint(line) == host(state, "app1")["host_key_fingerprint"]


# ---------------------------------------------------------------------------
# panel-lab/postgres:15
# ---------------------------------------------------------------------------


def test_postgres_image_uses_c_collation_and_password_auth(pg):
    box, db = pg
    assert (
        psql(
            db,
            "lab",
            "SELECT datcollate || ' ' || pg_encoding_to_char(encoding) "
            "FROM pg_database WHERE datname = 'lab'",
        )
        == "C UTF8"
    )
    # Over the network a password is required.
    bad = docker(
        "exec",
        "-e",
        "PGPASSWORD=wrong",
        db,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "lab",
        "-d",
        "lab",
        "-c",
        "SELECT 1",
        check=False,
    )
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    good = docker(
        "exec",
        "-e",
        "PGPASSWORD=lab-pw",
        db,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "lab",
        "-d",
        "lab",
        "-tAc",
        "SELECT 41 + 1",
    )
    assert good.stdout.strip() == "42"
    dump = docker("exec", db, "sh", "-c", "pg_dump -U lab -Fc lab | pg_restore -l | head -n 3")
    assert "Archive" in dump.stdout


# ---------------------------------------------------------------------------
# Stand-in Atlassian images
# ---------------------------------------------------------------------------


def jira_env(database: str, **extra) -> dict:
    env = {
        "ATL_JDBC_URL": f"jdbc:postgresql://db:5432/{database}",
        "ATL_JDBC_USER": "lab",
        "ATL_JDBC_PASSWORD": "lab-pw",
        "ATL_DB_TYPE": "postgres72",
        "ATL_DB_DRIVER": "org.postgresql.Driver",
        "ATL_PROXY_NAME": "jira.acme.example",
        "ATL_PROXY_PORT": "443",
        "ATL_TOMCAT_SCHEME": "https",
        "ATL_TOMCAT_SECURE": "true",
        "ATL_TOMCAT_CONTEXTPATH": "/jira",
        "JVM_MINIMUM_MEMORY": "1024m",
        "JVM_MAXIMUM_MEMORY": "2048m",
        "ATL_LICENSE_KEY": "AAAB-lab-license",
        "STANDIN_STARTUP_SECONDS": "3",
    }
    env.update(extra)
    return env


def test_postgres_stops_at_once_under_the_panels_confinement(state):
    """Rule (official postgres image: its Dockerfile sets STOPSIGNAL SIGINT and its entrypoint
    ends in ``exec gosu postgres``, https://github.com/docker-library/postgres): the server is
    PID 1 and gets Docker's stop signal itself, so with every capability dropped but the ones
    the panel grants a database (provisioning.products.DB_CAPABILITIES, no CAP_KILL) a stop is
    a fast shutdown within seconds, exit 0, not a kill after the grace period."""
    from provisioning.products import DB_CAPABILITIES

    box = Sandbox()
    try:
        confinement = ["--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"]
        for cap in DB_CAPABILITIES:
            confinement += ["--cap-add", cap]
        db = box.run(
            state["postgres_image"],
            name="db",
            env={"POSTGRES_USER": "lab", "POSTGRES_PASSWORD": "lab-pw"},
            extra=confinement,
        )
        wait_pg_ready(db, "lab")
        assert docker("exec", db, "cat", "/proc/1/comm").stdout.strip() == "postgres"
        started = time.monotonic()
        docker("stop", "-t", "60", db)
        took = time.monotonic() - started
        assert took < 15, f"stop took {took:.0f} s: the stop signal did not reach the server"
        assert docker("inspect", "-f", "{{.State.ExitCode}}", db).stdout.strip() == "0"
    finally:
        box.close()


def test_standin_jira_starts_stores_base_url_and_echoes_its_config(state, pg):
    box, db = pg
    database = new_database(db)
    image = f"{state['image_prefix']}jira-software:9.12.0"
    env = jira_env(database)
    jira = box.run(image, name="jira", env=env, ports=["127.0.0.1::8080"])
    addr, port = published(jira, 8080)
    base = f"http://{addr}:{port}/jira"

    first = wait_for(lambda: http_json(base + "/status"), timeout=15, what="jira /status")
    assert first == (200, {"state": "STARTING"})
    wait_for(
        lambda: http_json(base + "/status")[1] == {"state": "RUNNING"}, timeout=30, what="RUNNING"
    )

    code, info = http_json(base + "/rest/standin/1.0/info")
    assert code == 200
    assert info["product"] == "jira-software" and info["version"] == "9.12.0"
    assert info["base_url"] == "https://jira.acme.example/jira"
    assert info["uid"] == 2001 and info["home"] == "/var/atlassian/application-data/jira"
    for key, value in env.items():
        assert info["env"][key] == value
    # The base URL really is in Jira's tables.
    assert (
        psql(
            db,
            database,
            "SELECT s.propertyvalue FROM propertyentry e JOIN propertystring s "
            "ON s.id = e.id WHERE e.property_key = 'jira.baseurl'",
        )
        == "https://jira.acme.example/jira"
    )

    # Rows and files for backup/restore tests.
    assert (
        http_json(base + "/rest/standin/1.0/items", method="POST", body={"title": "ACME-1"})[0]
        == 201
    )
    assert [i["title"] for i in http_json(base + "/rest/standin/1.0/items")[1]["items"]] == [
        "ACME-1"
    ]
    files_before = info["home_file_count"]
    code, _ = http_json(
        base + "/rest/standin/1.0/files",
        method="POST",
        body={"path": "data/attachments/ACME-1/a.txt", "content": "hello"},
    )
    assert code == 201
    assert http_json(base + "/rest/standin/1.0/info")[1]["home_file_count"] == files_before + 1
    for evil in ("../escape.txt", "/etc/passwd", "data/../../x"):
        assert (
            http_json(
                base + "/rest/standin/1.0/files", method="POST", body={"path": evil, "content": "x"}
            )[0]
            == 400
        )
    assert (
        docker(
            "exec",
            jira,
            "cat",
            "/var/atlassian/application-data/jira/data/attachments/ACME-1/a.txt",
        ).stdout
        == "hello"
    )

    # SIGTERM: exits 0 promptly.
    t0 = time.monotonic()
    docker("stop", "-t", "10", jira)
    assert time.monotonic() - t0 < 5
    assert docker("inspect", "-f", "{{.State.ExitCode}}", jira).stdout.strip() == "0"
    box.remove(jira)

    # A later start with other proxy settings keeps the base URL from the DB,
    # like the real product (it is only derived from the proxy on first start).
    env2 = jira_env(
        database,
        ATL_PROXY_NAME="other.example",
        ATL_TOMCAT_CONTEXTPATH="",
        STANDIN_STARTUP_SECONDS="0",
    )
    jira2 = box.run(
        f"{state['image_prefix']}jira-software:9.17.0",
        name="jira2",
        env=env2,
        ports=["127.0.0.1::8080"],
    )
    addr, port = published(jira2, 8080)
    base2 = f"http://{addr}:{port}"
    wait_for(
        lambda: http_json(base2 + "/status")[1] == {"state": "RUNNING"}, timeout=30, what="RUNNING"
    )
    info2 = http_json(base2 + "/rest/standin/1.0/info")[1]
    assert info2["version"] == "9.17.0"
    assert info2["base_url"] == "https://jira.acme.example/jira"
    assert [i["title"] for i in http_json(base2 + "/rest/standin/1.0/items")[1]["items"]] == [
        "ACME-1"
    ]
    box.remove(jira2)


def test_broken_tag_never_reaches_running(state, pg):
    box, db = pg
    database = new_database(db)
    broken = box.run(
        f"{state['image_prefix']}jira-software:0.0.0-broken",
        name="broken",
        env=jira_env(database, STANDIN_STARTUP_SECONDS="1"),
        ports=["127.0.0.1::8080"],
    )
    addr, port = published(broken, 8080)
    url = f"http://{addr}:{port}/jira/status"
    wait_for(lambda: http_json(url)[0] == 200, timeout=15, what="broken /status answers")
    deadline = time.monotonic() + 10
    seen = set()
    while time.monotonic() < deadline:
        seen.add(http_json(url)[1]["state"])
        time.sleep(0.5)
    assert seen == {"STARTING"}
    box.remove(broken)


@pytest.mark.parametrize(
    ("product", "tag", "env", "port", "status_path", "sql", "expected"),
    [
        (
            "confluence",
            "8.9.0",
            {
                "ATL_PROXY_NAME": "wiki.acme.example",
                "ATL_PROXY_PORT": "443",
                "ATL_TOMCAT_SCHEME": "https",
            },
            8090,
            "/status",
            "SELECT substring(bandanavalue from '<baseUrl>(.*)</baseUrl>') FROM bandana "
            "WHERE bandanakey = 'atlassian.confluence.settings'",
            "https://wiki.acme.example",
        ),
        (
            "bitbucket",
            "9.4.0",
            {
                "SERVER_PROXY_NAME": "git.acme.example",
                "SERVER_PROXY_PORT": "8443",
                "SERVER_SCHEME": "https",
                "SERVER_SECURE": "true",
                "SERVER_CONTEXT_PATH": "/bitbucket",
            },
            7990,
            "/bitbucket/status",
            "SELECT prop_value FROM app_property WHERE prop_key = 'instance.url'",
            "https://git.acme.example:8443/bitbucket",
        ),
    ],
)
def test_other_standins_store_base_url_where_the_product_does(
    state, pg, product, tag, env, port, status_path, sql, expected
):
    box, db = pg
    database = new_database(db)
    jdbc = f"jdbc:postgresql://db:5432/{database}"
    if product == "bitbucket":
        env = {**env, "JDBC_URL": jdbc, "JDBC_USER": "lab", "JDBC_PASSWORD": "lab-pw"}
    else:
        env = {**env, "ATL_JDBC_URL": jdbc, "ATL_JDBC_USER": "lab", "ATL_JDBC_PASSWORD": "lab-pw"}
    env["STANDIN_STARTUP_SECONDS"] = "1"
    extra_ports = {"confluence": 8091, "bitbucket": 7999}[product]
    c = box.run(
        f"{state['image_prefix']}{product}:{tag}",
        name=product,
        env=env,
        ports=[f"127.0.0.1::{port}", f"127.0.0.1::{extra_ports}"],
    )
    addr, p = published(c, port)
    url = f"http://{addr}:{p}{status_path}"
    wait_for(
        lambda: http_json(url)[1] == {"state": "RUNNING"}, timeout=30, what=f"{product} RUNNING"
    )
    info = http_json(url.replace("/status", "/rest/standin/1.0/info"))[1]
    assert info["base_url"] == expected
    assert psql(db, database, sql) == expected
    xaddr, xport = published(c, extra_ports)
    if product == "confluence":
        import urllib.request

        with urllib.request.urlopen(f"http://{xaddr}:{xport}/synchrony/heartbeat", timeout=5) as r:
            assert r.status == 200
        assert (
            docker(
                "exec", c, "test", "-d", "/var/atlassian/application-data/confluence/keys"
            ).returncode
            == 0
        )
    else:
        import socket

        with socket.create_connection((xaddr, xport), timeout=5) as s:
            assert s.recv(64).startswith(b"SSH-2.0-")
    box.remove(c)
