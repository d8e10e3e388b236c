"""Drive one product image the way the rule tests need it: the image is a parameter.

``ImageUnderTest(product, version, box=...)`` starts ``f"{prefix}{product}:{version}"`` on a
:class:`tests.lab.labkit.Sandbox` network, with its home on a named volume (so a second start
reuses it, like a real instance's home), and reads the product's own health path and key.
The prefix is ``PANEL_RULES_IMAGE_PREFIX`` (default: the lab state's ``image_prefix``), so the
same tests run on Atlassian's images:

    PANEL_RULES_IMAGE_PREFIX=atlassian/ .venv/bin/python -m pytest tests/standin -m image_rules

Standard library and labkit only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tests.lab.labkit import (
    TEST_LABEL,
    Sandbox,
    docker,
    http_json,
    load_state,
    published,
    run,
    wait_for,
    wait_pg_ready,
)

# What the rule tests know about each product, from the images' READMEs ("Shared directory
# and user IDs", ports) and the Helm charts' probes (status path and key):
# https://bitbucket.org/atlassian-docker/docker-atlassian-jira (and -confluence-server,
# -bitbucket-server, -bamboo-server, -crowd), https://github.com/atlassian/data-center-helm-charts
# ``src/main/charts/<product>/templates/statefulset.yaml``.
PRODUCTS: dict[str, dict[str, Any]] = {
    "jira-software": {
        "home": "/var/atlassian/application-data/jira",
        "uid": 2001,
        "ports": [8080],
        "context": "",
        "status_path": "/status",
        "status_key": "state",
        "db_style": "atl",
        "db_type": "postgres72",
        "config": "dbconfig.xml",
    },
    "jira-servicemanagement": {
        "home": "/var/atlassian/application-data/jira",
        "uid": 2001,
        "ports": [8080],
        "context": "",
        "status_path": "/status",
        "status_key": "state",
        "db_style": "atl",
        "db_type": "postgres72",
        "config": "dbconfig.xml",
    },
    "confluence": {
        "home": "/var/atlassian/application-data/confluence",
        "uid": 2002,
        "ports": [8090, 8091],
        "context": "",
        "status_path": "/status",
        "status_key": "state",
        "db_style": "atl",
        "db_type": "postgresql",
        "config": "confluence.cfg.xml",
    },
    "bitbucket": {
        "home": "/var/atlassian/application-data/bitbucket",
        "uid": 2003,
        "ports": [7990, 7999],
        "context": "",
        "status_path": "/status",
        "status_key": "state",
        "db_style": "server",
        "db_type": "",
        "config": "shared/bitbucket.properties",
    },
    "bamboo": {
        "home": "/var/atlassian/application-data/bamboo",
        "uid": 2005,
        "ports": [8085, 54663],
        "context": "",
        # Bamboo's chart probes /rest/api/latest/status and reads .status (statefulset.yaml).
        "status_path": "/rest/api/latest/status",
        "status_key": "status",
        "db_style": "atl",
        "db_type": "postgresql",
        "config": "bamboo.cfg.xml",
    },
    "crowd": {
        "home": "/var/atlassian/application-data/crowd",
        "uid": 2004,
        "ports": [8095],
        # README CROWD: ATL_TOMCAT_CONTEXTPATH "(default: /crowd)".
        "context": "/crowd",
        "status_path": "/status",
        "status_key": "state",
        # Crowd reads no DB environment variable: its setup writes shared/crowd.cfg.xml.
        "db_style": "none",
        "db_type": "",
        "config": "shared/crowd.cfg.xml",
    },
}
ALL_PRODUCTS = list(PRODUCTS)
API = "/rest/standin/1.0"
# A started product: RUNNING, or FIRST_RUN when it waits in its setup (real images without a
# licence; Crowd before its setup).
UP = ("RUNNING", "FIRST_RUN")
# Real images take minutes to start; the stand-ins a second.
START_TIMEOUT = float(os.environ.get("PANEL_RULES_START_TIMEOUT", "60"))


def lab_state() -> dict:
    """The lab's state file (``scripts/lab up``), or an empty dict on a machine without it."""
    try:
        return load_state()
    except Exception:  # noqa: BLE001 - the real-image command needs no lab
        return {}


def image_prefix() -> str:
    """Registry prefix of the images under test (``panel-lab/`` or ``atlassian/``)."""
    return os.environ.get("PANEL_RULES_IMAGE_PREFIX") or lab_state().get("image_prefix", "")


def is_standin() -> bool:
    """True when the images under test are the lab's stand-ins (their test API exists)."""
    lab = lab_state().get("image_prefix")
    return bool(lab) and image_prefix() == lab


def postgres_image() -> str:
    """The throwaway database server's image (the lab's, unless overridden)."""
    return os.environ.get("PANEL_RULES_POSTGRES_IMAGE") or lab_state().get(
        "postgres_image", "postgres:15"
    )


def version_key(version: str) -> tuple[int, ...]:
    """``"9.12.0-failing"`` -> ``(9, 12, 0)``: versions compare as integer tuples."""
    core = version.split("-", 1)[0]
    return tuple(int(p) for p in re.findall(r"\d+", core))


def versions(product: str) -> list[str]:
    """Plain versions to test, oldest first: ``PANEL_RULES_VERSIONS`` (JSON
    ``{"product": ["v", ...]}``) or the lab's tags, without ``-broken``/``-failing``."""
    raw = os.environ.get("PANEL_RULES_VERSIONS")
    table = json.loads(raw) if raw else lab_state().get("products", {})
    plain = [v for v in table.get(product, []) if "-" not in v]
    return sorted(plain, key=version_key)


def tags(product: str) -> list[str]:
    """Every tag of ``product`` the lab built (including ``-broken``/``-failing``)."""
    return list(lab_state().get("products", {}).get(product, []))


def failing_tag(product: str) -> str | None:
    """The lab's ``X-failing`` tag of ``product`` (marks the schema with X, then ERROR)."""
    return next((t for t in tags(product) if t.endswith("-failing")), None)


@dataclass
class Database:
    """One database with its own owner on a :class:`Postgres` server."""

    name: str
    user: str
    password: str
    host: str = "db"

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:5432/{self.name}"


class Postgres:
    """A throwaway PostgreSQL server named ``db`` on its own :class:`Sandbox` network."""

    def __init__(self, box: Sandbox | None = None) -> None:
        self.box = box or Sandbox(prefix="panel-rules")
        self.container = self.box.run(
            postgres_image(),
            name="db",
            alias="db",
            env={"POSTGRES_USER": "lab", "POSTGRES_PASSWORD": "lab-pw", "POSTGRES_DB": "lab"},
        )
        wait_pg_ready(self.container, "lab")

    def psql(self, sql: str, database: str = "lab") -> str:
        """Run ``sql`` as the superuser; the unaligned output."""
        return docker(
            "exec",
            self.container,
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

    def new_database(self) -> Database:
        """A new database owned by a new role (as the panel gives each instance)."""
        name = f"r_{secrets.token_hex(4)}"
        password = secrets.token_hex(8)
        self.psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        self.psql(f"CREATE DATABASE {name} OWNER {name}")
        return Database(name=name, user=name, password=password)

    def schema_version(self, database: Database) -> str:
        """The version the stand-in's ``standin_schema`` carries ("" if none)."""
        return self.psql("SELECT version FROM standin_schema", database.name)

    def connections(self, database: Database) -> int:
        """Client connections to ``database`` now (``pg_stat_activity``)."""
        return int(
            self.psql(
                # the name is our own r_<hex>
                f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database.name}'"  # noqa: S608
            )
        )

    def close(self) -> None:
        self.box.close()


@dataclass
class ImageUnderTest:
    """One product image, its home volume and (after :meth:`start`) its container."""

    product: str
    version: str
    box: Sandbox
    volume: str = ""
    container: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    context: str | None = None
    _starts: int = 0

    def __post_init__(self) -> None:
        self.spec = PRODUCTS[self.product]
        if not self.volume:
            self.volume = f"{self.box.name}-{self.product}-home-{secrets.token_hex(3)}"
            docker("volume", "create", "--label", "panel-lab=1", "--label", TEST_LABEL, self.volume)

    # -- naming ------------------------------------------------------------------------
    @property
    def image(self) -> str:
        return f"{image_prefix()}{self.product}:{self.version}"

    @property
    def home(self) -> str:
        return self.spec["home"]

    def db_env(self, database: Database | None) -> dict[str, str]:
        """The environment that names ``database`` the way this product's image reads it
        (README "Database configuration"; Bitbucket: JDBC_*; Crowd: none at all)."""
        if database is None or self.spec["db_style"] == "none":
            return {}
        if self.spec["db_style"] == "server":
            return {
                "JDBC_DRIVER": "org.postgresql.Driver",
                "JDBC_URL": database.jdbc_url,
                "JDBC_USER": database.user,
                "JDBC_PASSWORD": database.password,
            }
        return {
            "ATL_DB_TYPE": self.spec["db_type"],
            "ATL_DB_DRIVER": "org.postgresql.Driver",
            "ATL_JDBC_URL": database.jdbc_url,
            "ATL_JDBC_USER": database.user,
            "ATL_JDBC_PASSWORD": database.password,
        }

    # -- lifecycle ---------------------------------------------------------------------
    def start(
        self,
        database: Database | None = None,
        env: dict[str, str] | None = None,
        *,
        version: str | None = None,
    ) -> str:
        """(Re)start the container on the same home volume; the environment names
        ``database`` plus ``env``. A running container is stopped first."""
        self.stop()
        if version:
            self.version = version
        self.env = {"STANDIN_STARTUP_SECONDS": "0", "STANDIN_ACCESS_LOG": "0"}
        self.env.update(self.db_env(database))
        self.env.update(env or {})
        server = self.spec["db_style"] == "server"
        ctx_var = "SERVER_CONTEXT_PATH" if server else "ATL_TOMCAT_CONTEXTPATH"
        if ctx_var in self.env:
            value = self.env[ctx_var].strip().rstrip("/")
            if self.product == "crowd" and not value:
                value = "/crowd"  # Crowd treats an empty context variable as unset
            self.context = value if not value or value.startswith("/") else "/" + value
        else:
            self.context = self.spec["context"]
        self._starts += 1
        self.container = self.box.run(
            self.image,
            name=f"{self.product}-{self._starts}-{secrets.token_hex(2)}",
            env=self.env,
            ports=[f"127.0.0.1::{p}" for p in self.spec["ports"]],
            extra=["-v", f"{self.volume}:{self.home}"],
        )
        return self.container

    def stop(self) -> None:
        """Stop and remove the container (the home volume stays)."""
        if self.container:
            docker("stop", "-t", "20", self.container, check=False)
            self.logs_before_stop = self.logs()
            self.box.remove(self.container)
            self.container = None

    def close(self) -> None:
        """Remove the container and the home volume."""
        self.stop()
        docker("volume", "rm", "-f", self.volume, check=False)

    # -- looking at it -----------------------------------------------------------------
    def port(self, container_port: int | None = None) -> tuple[str, int]:
        assert self.container, "not started"
        return published(self.container, container_port or self.spec["ports"][0])

    def url(self, path: str = "") -> str:
        addr, port = self.port()
        return f"http://{addr}:{port}{self.context or ''}{path}"

    def get(self, path: str) -> tuple[int, Any]:
        """``GET <ctx><path>`` as JSON (status code, body or None)."""
        try:
            return http_json(self.url(path))
        except ValueError:  # not JSON (a product's HTML page)
            return 0, None

    def status(self) -> tuple[int, str | None]:
        """HTTP code and state from the product's documented health path and key."""
        code, body = http_json(self.url(self.spec["status_path"]))
        state = body.get(self.spec["status_key"]) if isinstance(body, dict) else None
        return code, state

    def wait_status(self, *states: str, timeout: float = START_TIMEOUT) -> tuple[int, str | None]:
        """Wait until the health state is one of ``states``; return (code, state)."""
        return wait_for(
            lambda: (s := self.status())[1] in states and s,
            timeout=timeout,
            what=f"{self.product}:{self.version} state in {states}",
        )

    def info(self) -> dict:
        """The stand-in's ``GET <ctx>/rest/standin/1.0/info`` (stand-ins only)."""
        code, body = http_json(self.url(API + "/info"))
        assert code == 200, (code, body)
        return body

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """Call the stand-in API (``path`` relative to ``/rest/standin/1.0``)."""
        return http_json(self.url(API + path), method=method, body=body)

    def logs(self) -> str:
        """The container's output (stdout and stderr)."""
        if not self.container:
            return getattr(self, "logs_before_stop", "")
        p = docker("logs", self.container, check=False)
        return p.stdout + p.stderr

    def home_file(self, rel: str) -> str | None:
        """A file of the home volume, read by a throwaway container; None if absent."""
        p = run(
            [
                "docker",
                "run",
                "--rm",
                "--label",
                "panel-lab=1",
                "--label",
                TEST_LABEL,
                "--user",
                "0",
                "--entrypoint",
                "sh",
                "-v",
                f"{self.volume}:/home-under-test:ro",
                self.image,
                "-c",
                'cat "/home-under-test/$1" 2>/dev/null || exit 3',
                "sh",
                rel,
            ],
            check=False,
        )
        if p.returncode == 3:
            return None
        assert p.returncode == 0, p.stderr
        return p.stdout

    def put_home_file(self, rel: str, content: str) -> None:
        """Write a file into the home volume, owned by the product's uid (as an admin or a
        restore leaves it there)."""
        uid = self.spec["uid"]
        run(
            [
                "docker",
                "run",
                "--rm",
                "-i",
                "--label",
                "panel-lab=1",
                "--label",
                TEST_LABEL,
                "--user",
                "0",
                "--entrypoint",
                "sh",
                "-v",
                f"{self.volume}:/home-under-test",
                self.image,
                "-c",
                'f="/home-under-test/$1"; mkdir -p "$(dirname "$f")" && cat > "$f" '
                '&& chown -R "$2:$2" /home-under-test',
                "sh",
                rel,
                str(uid),
            ],
            input=content,
        )

    def crowd_setup(self, database: Database) -> tuple[int, Any]:
        """Finish Crowd's setup the stand-in's way (``POST <ctx>/rest/standin/1.0/setup``)."""
        return self.api(
            "POST",
            "/setup",
            {"jdbc_url": database.jdbc_url, "user": database.user, "password": database.password},
        )

    def home_owner(self) -> tuple[int, int]:
        """uid and gid of the home directory inside the running container."""
        assert self.container
        out = docker("exec", self.container, "stat", "-c", "%u %g", self.home).stdout.split()
        return int(out[0]), int(out[1])

    def copy_home(self, box: Sandbox | None = None) -> ImageUnderTest:
        """A new image under test whose home volume is a copy of this one (a restore into
        another instance copies the home, config file included)."""
        other = ImageUnderTest(self.product, self.version, box or self.box)
        run(
            [
                "docker",
                "run",
                "--rm",
                "--label",
                "panel-lab=1",
                "--user",
                "0",
                "--entrypoint",
                "sh",
                "-v",
                f"{self.volume}:/from:ro",
                "-v",
                f"{other.volume}:/to",
                self.image,
                "-c",
                "cp -a /from/. /to/",
            ]
        )
        return other


def wait_log(image: ImageUnderTest, pattern: str, timeout: float = 30) -> str:
    """Wait until the container log matches ``pattern`` (a regex); return the match."""

    def found() -> str | None:
        m = re.search(pattern, image.logs())
        return m.group(0) if m else None

    return wait_for(found, timeout=timeout, what=f"log line /{pattern}/")


def stays(image: ImageUnderTest, seconds: float) -> set[str | None]:
    """Every health state seen during ``seconds``, from the first answer on."""
    wait_for(image.status, timeout=START_TIMEOUT, what=f"{image.product} /status answers")
    seen: set[str | None] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            seen.add(image.status()[1])
        except OSError as e:  # a product that stops answering is not RUNNING either
            seen.add(f"no answer: {e}")
        time.sleep(0.3)
    return seen
