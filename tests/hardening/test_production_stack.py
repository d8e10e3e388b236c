"""The production stack, started for real (issue #17): the Dockerfile built and
docker-compose.yml run as they are, with their secrets as files.

No registry is reachable here, so the base images are the build arguments' stand-ins built
from the lab's Debian base: Debian's Python 3.11 for the panel's image (its Python packages
from a wheelhouse made on this machine, as the build cannot reach PyPI), the lab's PostgreSQL
image with the official image's ``*_FILE`` variables, and Debian's redis-server
(``tests/hardening/stack_images``). The test logs in as staff through the real login with
TOTP, makes an API token and uses it to enrol an SSH host of its own (the lab's app-host
image, on the stack's network, its key pinned) and to check it through the stack's worker;
it restarts that worker in the middle of a check (the operation is then failed readably by
the reaper), checks that every long-running service reports healthy, and stops the stack.

It uses no lab host, fixture or network, only the lab's images (``scripts/lab up`` builds
them; scripts/test runs that first), so it runs in the suite's non-lab process.
"""

from __future__ import annotations

import contextlib
import email.parser
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from panel.operations import wait_for
from tests.support.otp import totp_now

REPO = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).resolve().parent / "stack_images"
COMPOSE_FILES = [REPO / "docker-compose.yml", IMAGES / "compose.test.yml"]
WHEELHOUSE = REPO / ".wheelhouse"
ARTIFACTS = REPO / "test-artifacts"

LAB_BASE = "panel-lab/base:bookworm"
LAB_POSTGRES = "panel-lab/postgres:15"
LAB_APPHOST = "panel-lab/apphost"
PREFIX = "panel-stack-test"
PANEL_IMAGE = f"{PREFIX}/panel"
DB_IMAGE = f"{PREFIX}/postgres:15"
REDIS_IMAGE = f"{PREFIX}/redis:7"
LABEL = f"{PREFIX}=1"

SERVED_HOST = "panel.example.com"  # docker-compose.yml's default PANEL_ALLOWED_HOSTS
LONG_RUNNING = {"web", "worker", "worker-housekeeping", "beat", "db", "redis"}
HOST_ALIAS = "stackhost"
HOST_DATA_ROOT = "/srv/stackhost"


# --- commands ---------------------------------------------------------------------------


def _run(
    cmd: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (bounded by ``timeout``); a failure shows the end of its output."""
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            input=input,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(cmd)} took more than {timeout:g} s") from exc
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    return _run(["docker", *args], timeout=timeout, check=check).stdout.strip()


def _lab_images_present() -> None:
    """The lab's images are this test's base images; CI builds them first (scripts/test)."""
    missing = [
        ref
        for ref in (LAB_BASE, LAB_POSTGRES, LAB_APPHOST)
        if _run(["docker", "image", "inspect", ref], timeout=30, check=False).returncode != 0
    ]
    if missing:
        pytest.fail(
            f"The lab's images {', '.join(missing)} are missing: run `scripts/lab up` first "
            "(scripts/test does). This test builds the production stack from them.",
            pytrace=False,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers_remove() -> None:
    """Remove what an earlier run that was killed left behind (its process is gone)."""
    dead = re.compile(rf"^{PREFIX}-(\d+)")
    projects: set[str] = set()
    for kind in ("container", "network", "volume"):
        listing = _docker(
            kind, "ls", *(["-a"] if kind == "container" else []),
            "--filter", "label=com.docker.compose.project",
            "--format", '{{.Label "com.docker.compose.project"}}',
        )  # fmt: skip
        projects |= {p for p in listing.split() if dead.match(p)}
    for name in _docker(
        "ps", "-a", "--filter", f"name=^{PREFIX}-", "--format", "{{.Names}}"
    ).split():
        match = dead.match(name)
        if match and not _alive(int(match.group(1))):
            _docker("rm", "-f", "-v", name, check=False)
    for project in sorted(projects):
        match = dead.match(project)
        if match and not _alive(int(match.group(1))):
            _run(
                ["docker", "compose", "-p", project, "down", "-v", "-t", "1"],
                timeout=120,
                check=False,
            )


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 for the stack's network that no Docker network of this engine uses."""
    used = []
    ids = _docker("network", "ls", "-q").split()
    for net in json.loads(_docker("network", "inspect", *ids)) if ids else []:
        for conf in (net.get("IPAM") or {}).get("Config") or []:
            if conf.get("Subnet"):
                used.append(ipaddress.ip_network(conf["Subnet"], strict=False))
    for third in range(200, 250):
        candidate = ipaddress.IPv4Network(f"172.31.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used if u.version == 4):
            return candidate
    raise AssertionError("no free 172.31.200-249.0/24 network for the stack")


# --- the panel image's Python packages --------------------------------------------------


def _target_python() -> str:
    """The Python version of the lab's Debian base (Debian's python3 in bookworm)."""
    return _docker(
        "run", "--rm", "--name", f"{PREFIX}-{os.getpid()}-python",
        LAB_BASE, "python3", "-c", "import platform; print(platform.python_version())",
    )  # fmt: skip


def _pip(*args: str) -> None:
    _run([sys.executable, "-m", "pip", *args], timeout=600)


def _wheel_metadata(wheelhouse: Path) -> dict[str, Any]:
    metas: dict[str, Any] = {}
    for wheel in wheelhouse.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            name = next(
                n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            )
            metas[parse_wheel_filename(wheel.name)[0]] = email.parser.Parser().parsestr(
                z.read(name).decode()
            )
    return metas


def _missing_for(requirements: list[str], wheelhouse: Path, python: str) -> list[str]:
    """Requirements of the target Python that no wheel in ``wheelhouse`` provides.

    pip resolves markers for the Python it runs on (this machine's), so a dependency under a
    marker such as ``python_full_version < "3.11.3"`` (redis' async-timeout, for Debian's
    3.11.2) is left out; walking the wheels' metadata with the target's markers finds it."""
    env: dict[str, str] = {str(k): str(v) for k, v in default_environment().items()}
    env.update(
        python_full_version=python,
        python_version=".".join(python.split(".")[:2]),
        implementation_version=python,
    )
    metas = _wheel_metadata(wheelhouse)
    todo = [Requirement(r) for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    missing = []
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        meta = metas.get(name)
        if meta is None:
            missing.append(f"{req.name}{req.specifier}")
            continue
        for text in meta.get_all("Requires-Dist") or []:
            dep = Requirement(text)
            wanted = dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in (req.extras or {""})
            )
            if wanted:
                dep.marker = None
                todo.append(dep)
    return sorted(set(missing))


def _wheelhouse_build(python: str) -> None:
    """Wheels of the panel's dependencies in .wheelhouse/ (the Dockerfile installs from it),
    at the versions this test run uses; kept while the requirements stay the same."""
    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    freeze = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], timeout=120).stdout
    constraints = "".join(line + "\n" for line in freeze.splitlines() if " @ " not in line)
    stamp = hashlib.sha256(json.dumps([requirements, constraints, python]).encode()).hexdigest()
    stamp_file = WHEELHOUSE / ".stamp"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    WHEELHOUSE.mkdir()
    (WHEELHOUSE / ".gitignore").write_text(
        "# Made by tests/hardening/test_production_stack.py\n*\n"
    )
    (WHEELHOUSE / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (WHEELHOUSE / "constraints.txt").write_text(constraints)
    wanted = ["-r", str(WHEELHOUSE / "requirements.txt")]
    for _ in range(3):
        _pip("wheel", "-q", "--wheel-dir", str(WHEELHOUSE),
             "-c", str(WHEELHOUSE / "constraints.txt"), *wanted)  # fmt: skip
        wanted = _missing_for(requirements, WHEELHOUSE, python)
        if not wanted:
            break
    assert not wanted, f"no wheels for {wanted} (Python {python})"
    stamp_file.write_text(stamp)


# --- the stack --------------------------------------------------------------------------


class Stack:
    """One compose project of the production stack, named ``panel-stack-test-<pid>``."""

    def __init__(self, workdir: Path, phases: Phases) -> None:
        self.phases = phases
        self.project = f"{PREFIX}-{os.getpid()}"
        self.network = f"{self.project}_default"
        self.host_container = f"{self.project}-host"
        subnet = _free_subnet()
        gateway = str(subnet.network_address + 1)
        secrets_dir = workdir / "secrets"
        secrets_dir.mkdir(mode=0o700)
        self.secret_key = secrets.token_urlsafe(50)
        for name, value in {
            "panel_secret_key": self.secret_key,
            "panel_encryption_keys": Fernet.generate_key().decode(),
            "db_password": secrets.token_urlsafe(24),
        }.items():
            path = secrets_dir / name
            path.write_text(value + "\n")
            # Read by the panel's user and by postgres inside the containers.
            path.chmod(0o644)
        env_file = workdir / "compose.env"
        env_file.write_text("")  # never a developer's .env from the repository
        # Only this test's variables reach compose's interpolation.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PANEL_", "COMPOSE_"))}
        self.env.update(
            PANEL_IMAGE=PANEL_IMAGE,
            PANEL_VERSION="test",
            PANEL_PYTHON_IMAGE=LAB_BASE,
            PANEL_WHEELS_ONLY="1",
            PANEL_DB_IMAGE=DB_IMAGE,
            PANEL_REDIS_IMAGE=REDIS_IMAGE,
            PANEL_SECRETS_DIR=str(secrets_dir),
            PANEL_WEB_PORT="0",
            PANEL_NETWORK_SUBNET=str(subnet),
            PANEL_NETWORK_GATEWAY=gateway,
            # The test is the TLS proxy: it reaches web through the published port.
            PANEL_TRUSTED_PROXIES=gateway,
        )
        self.base = ["docker", "compose", "-p", self.project, "--env-file", str(env_file)]
        for f in COMPOSE_FILES:
            self.base += ["-f", str(f)]

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return _run([*self.base, *args], timeout=timeout, env=self.env, check=check).stdout

    def services(self, *, all_: bool = False) -> dict[str, dict[str, Any]]:
        """``docker compose ps --format json``, by service."""
        out = self.compose("ps", *(["-a"] if all_ else []), "--format", "json").strip()
        rows = json.loads(out) if out.startswith("[") else [json.loads(x) for x in out.splitlines()]
        return {row["Service"]: row for row in rows}

    def wait_healthy(self, timeout: float) -> dict[str, dict[str, Any]]:
        """Wait until every long-running service runs and its health check passed."""
        rows: dict[str, dict[str, Any]] = {}

        def healthy() -> bool:
            rows.clear()
            rows.update(self.services())
            return set(rows) == LONG_RUNNING and all(
                r["State"] == "running" and r["Health"] == "healthy" for r in rows.values()
            )

        assert wait_for(healthy, timeout=timeout, interval=1), (
            f"not every service healthy within {timeout:g} s: "
            + ", ".join(f"{s} {r['State']}/{r['Health'] or '-'}" for s, r in sorted(rows.items()))
        )
        return rows

    def web_url(self) -> str:
        address = self.compose("port", "web", "8000").strip()
        return f"http://{address}"

    def logs_save(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        logs = self.compose("logs", "--no-color", "--timestamps", timeout=60, check=False)
        (ARTIFACTS / "production-stack.log").write_text(logs)

    def remove(self) -> None:
        _docker("rm", "-f", "-v", self.host_container, check=False)
        self.compose("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)
        # Tags moved by this build leave the older images dangling.
        _docker("image", "prune", "-f", "--filter", f"label={LABEL}", check=False)


# --- a client that is the TLS proxy's peer ----------------------------------------------


class Browser:
    """HTTP to the published port as the stack's TLS proxy would pass it on: the served host
    name and ``X-Forwarded-Proto: https``. A logged-in browser sends its (Secure) cookies
    back; with a token it is a script and keeps none."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.token = token
        self.cookies: dict[str, str] = {}
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {
            "Host": SERVED_HOST,
            "X-Forwarded-Proto": "https",
            "Origin": f"https://{SERVED_HOST}",
            "Referer": f"https://{SERVED_HOST}{path}",
            **kwargs.pop("headers", {}),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        answer = self.session.request(
            method, self.base + path, headers=headers, allow_redirects=False, timeout=30, **kwargs
        )
        if not self.token:
            self.cookies.update({k: v for k, v in answer.cookies.items() if v is not None})
        return answer

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.request("POST", path, json=body)

    def form(self, path: str, fields: dict[str, str]) -> requests.Response:
        return self.request("POST", path, data={**fields, "csrfmiddlewaretoken": self.csrf})

    @property
    def csrf(self) -> str:
        return self.cookies["csrftoken"]

    def operation(self, started: requests.Response) -> dict[str, Any]:
        """The operation a 202 started."""
        assert started.status_code == 202, (started.status_code, started.text)
        return self.get(started.headers["Location"]).json()

    def operation_wait(self, op: dict[str, Any], timeout: float) -> dict[str, Any]:
        state = dict(op)

        def done() -> bool:
            state.update(self.get(f"/api/operations/{op['id']}/").json())
            return bool(state["is_terminal"])

        assert wait_for(done, timeout=timeout), f"operation not ended in {timeout:g} s: {state}"
        return state


class Phases:
    """How long each part took (test-artifacts/production-stack-times.json)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.mark = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = round(now - self.mark, 1)
        self.mark = now

    def save(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        times = {**self.times, "total": round(sum(self.times.values()), 1)}
        (ARTIFACTS / "production-stack-times.json").write_text(json.dumps(times, indent=1))


def _steps(op: dict[str, Any]) -> str:
    return "\n".join(s["message"] for s in op.get("steps") or [])


# --- the test ---------------------------------------------------------------------------


@contextlib.contextmanager
def _stack_running(tmp_path: Path) -> Iterator[Stack]:
    """The stack built and started; always taken down again (``down -v``)."""
    phases = Phases()
    _leftovers_remove()
    _wheelhouse_build(_target_python())
    phases.done("wheelhouse")
    for ref, dockerfile, base in (
        (DB_IMAGE, "postgres.Dockerfile", LAB_POSTGRES),
        (REDIS_IMAGE, "redis.Dockerfile", LAB_BASE),
    ):
        _docker(
            "build", "-q", "-t", ref, "-f", str(IMAGES / dockerfile), "--label", LABEL,
            "--build-arg", f"BASE={base}", str(IMAGES), timeout=600,
        )  # fmt: skip
    phases.done("db and redis images")
    s = Stack(tmp_path, phases)
    try:
        s.compose("build", timeout=900)
        phases.done("panel image")
        s.compose("up", "-d", timeout=300)
        phases.done("up")
        yield s
    finally:
        s.logs_save()
        s.remove()
        phases.done("down")
        phases.save()


def _ssh_host_start(s: Stack) -> tuple[str, str]:
    """An SSH host of this test's own (the lab's app-host image) on the stack's network, as
    scripts/lab starts one; returns its host key fingerprint and one-time root password."""
    password = secrets.token_urlsafe(18)
    _docker(
        "run", "-d", "--name", s.host_container, "--hostname", HOST_ALIAS,
        "--network", s.network, "--network-alias", HOST_ALIAS, "--init", "--label", LABEL,
        # `docker info` of the health check reaches the machine's engine, as on lab app hosts.
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        LAB_APPHOST,
    )  # fmt: skip
    key = "/etc/ssh/ssh_host_ed25519_key.pub"
    has_key = ["docker", "exec", s.host_container, "test", "-s", key]
    assert wait_for(
        lambda: _run(has_key, timeout=30, check=False).returncode == 0, timeout=60, interval=0.3
    ), "the SSH host made no host key in 60 s"
    script = (
        'IFS= read -r pw; printf "root:%s\\n" "$pw" | chpasswd; '
        f"mkdir -p {HOST_DATA_ROOT}; ssh-keygen -lf {key}"
    )
    out = _run(
        ["docker", "exec", "-i", s.host_container, "sh", "-c", script],
        timeout=30,
        input=password + "\n",
    ).stdout
    return out.split()[1], password


def test_the_production_stack_builds_runs_operations_through_its_worker_and_stops(
    tmp_path: Path,
) -> None:
    _lab_images_present()  # a failure, never a skip: CI builds them before the tests
    with _stack_running(tmp_path) as s:
        _stack_exercise(s)


def _stack_exercise(s: Stack) -> None:
    """Everything the test asserts on the running stack, in the order a person meets it."""
    rows = s.wait_healthy(timeout=180)
    panel_services = LONG_RUNNING - {"db", "redis"}
    assert {rows[name]["Image"] for name in panel_services} == {f"{PANEL_IMAGE}:test"}
    migrate = s.services(all_=True)["migrate"]
    assert migrate["State"] == "exited" and migrate["ExitCode"] == 0, migrate
    s.phases.done("healthy")

    # Secrets are files: none in the environment, and the settings read the files.
    probe = s.compose(
        "exec", "-T", "web", "python", "-c",
        "import os, panel.settings as s; "
        "print(s.SECRET_KEY == open('/run/secrets/panel_secret_key').read().strip(), "
        "s.PANEL_EMBEDDED_DEFAULTS, s.DATABASES['default']['PASSWORD'] == "
        "open('/run/secrets/db_password').read().strip(), "
        "[k for k in ('PANEL_SECRET_KEY', 'PANEL_ENCRYPTION_KEYS', 'PANEL_DB_PASSWORD') "
        "if k in os.environ])",
    )  # fmt: skip
    assert probe.strip().splitlines()[-1] == "True False True []", probe

    # The first platform admin, as the README says; then the real login, with TOTP.
    password = secrets.token_urlsafe(16)
    s.env["DJANGO_SUPERUSER_PASSWORD"] = password
    s.compose(
        "exec", "-T", "-e", "DJANGO_SUPERUSER_PASSWORD", "web", "python", "manage.py",
        "createsuperuser", "--noinput", "--username", "stackadmin",
        "--email", "stackadmin@example.com",
    )  # fmt: skip
    del s.env["DJANGO_SUPERUSER_PASSWORD"]
    browser = Browser(s.web_url())
    assert browser.get("/login/").status_code == 200
    login = browser.form("/login/", {"username": "stackadmin", "password": password, "next": "/"})
    assert login.status_code == 302, login.text[:500]
    # Staff set up an authenticator first: every other page sends them there.
    assert browser.get("/").headers["Location"].startswith("/account/two-factor/")
    setup = browser.get("/account/two-factor/")
    secret = re.search(r'data-testid="otp-secret">([A-Z2-7]+)<', setup.text)
    assert secret, setup.text[:500]
    confirmed = browser.form("/account/two-factor/", {"token": totp_now(secret[1]), "next": "/"})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == "/", confirmed.text
    me = browser.get("/api/me/").json()
    assert me["username"] == "stackadmin" and "platform-admin" in me["staff_roles"], me
    made = browser.request(
        "POST",
        "/api/tokens/",
        json={"name": "production stack test", "scope": "write"},
        headers={"X-CSRFToken": browser.csrf},
    )
    assert made.status_code == 201, made.text
    api = Browser(s.web_url(), token=made.json()["token"])
    assert api.get("/api/me/").json()["token"]["name"] == "production stack test"
    s.phases.done("admin, login, token")

    # An SSH host enrolled with its key pinned; first contact runs on the stack's worker.
    fingerprint, root_password = _ssh_host_start(s)
    enrol = api.post(
        "/api/hosts/",
        {
            "name": HOST_ALIAS,
            "role": "app",
            "address": HOST_ALIAS,
            "ssh_port": 22,
            "ssh_user": "root",
            "data_root": HOST_DATA_ROOT,
            "host_key_fingerprint": fingerprint,
            "root_password": root_password,
        },
    )
    connect = api.operation_wait(api.operation(enrol), timeout=120)
    assert connect["status"] == "succeeded", (connect["error"], _steps(connect))
    assert "The panel's key was installed" in _steps(connect)
    host = api.get("/api/hosts/").json()
    host = (host["results"] if isinstance(host, dict) else host)[0]
    assert host["host_key_fingerprint"] == fingerprint and host["status"] == "trusted", host
    health = f"/api/hosts/{host['id']}/health/"
    check = api.operation_wait(api.operation(api.post(health)), timeout=120)
    assert check["status"] == "succeeded", (check["error"], _steps(check))
    assert f"{HOST_ALIAS} is healthy" in _steps(check)
    s.phases.done("host enrolled and checked")

    # The worker restarted in the middle of a check: the host is paused, so the check waits
    # on SSH; the restart's stop grace (3 s) runs out and Docker kills the worker. Redis
    # would re-deliver the message only after its visibility timeout (hours), and a
    # re-delivery cannot claim a running operation anyway: the reaper (beat and the
    # housekeeping worker) ends it once its heartbeat is older than the timeout.
    _docker("pause", s.host_container)
    try:
        cut = api.operation(api.post(health))
        assert wait_for(
            lambda: api.get(f"/api/operations/{cut['id']}/").json()["status"] == "running",
            timeout=30,
            interval=0.2,
        ), api.get(f"/api/operations/{cut['id']}/").json()
        worker = s.services()["worker"]["ID"]
        started = _docker("inspect", "-f", "{{.State.StartedAt}}", worker)
        s.compose("restart", "-t", "3", "worker", timeout=60)
    finally:
        _docker("unpause", s.host_container, check=False)
    assert _docker("inspect", "-f", "{{.State.StartedAt}}", worker) != started
    cut = api.operation_wait(cut, timeout=120)
    assert cut["status"] == "failed", (cut["status"], _steps(cut))
    assert "The worker running this operation stopped responding" in cut["error"], cut["error"]
    assert "Traceback" not in cut["error"]
    s.phases.done("worker restarted, operation reaped")

    # The restarted worker runs the next check; every service is healthy again.
    again = api.operation_wait(api.operation(api.post(health)), timeout=120)
    assert again["status"] == "succeeded", (again["error"], _steps(again))
    s.wait_healthy(timeout=90)
    s.phases.done("checked again, healthy again")

    # A stop is graceful everywhere: no service outlasts its stop grace and is killed.
    browser.session.close()
    api.session.close()
    s.compose("stop", timeout=180)
    ended = s.services(all_=True)
    assert {name: ended[name]["ExitCode"] for name in LONG_RUNNING} == dict.fromkeys(
        LONG_RUNNING, 0
    ), ended
    s.phases.done("stop")


def test_the_compose_file_defaults_to_the_official_images_and_checks_every_service(
    tmp_path: Path,
) -> None:
    """Without any variable the stack is the official one; the test's images are only
    overrides. Every long-running service has a health check; secrets are files."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANEL_", "COMPOSE_"))}
    out = _run(
        ["docker", "compose", "--env-file", str(env_file), "-f", str(REPO / "docker-compose.yml"),
         "config", "--format", "json"],
        timeout=60,
        env=env,
    ).stdout  # fmt: skip
    config = json.loads(out)
    services = config["services"]
    assert services["db"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    dockerfile = (REPO / "Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert default and default[1] == "python:3.11-slim-bookworm"
    for name in (LONG_RUNNING | {"migrate"}) - {"db", "redis"}:
        assert services[name]["image"] == "atlassian-panel:latest", name
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == default[1], name
        assert not services[name]["build"]["args"]["WHEELS_ONLY"], name
        if name != "migrate":  # migrations first, on a first start and on an upgrade
            assert services[name]["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            ), name
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
    assert "replicas" not in (services["beat"].get("deploy") or {})
    assert {s["file"] for s in config["secrets"].values()} == {
        str(REPO / "secrets" / name)
        for name in ("panel_secret_key", "panel_encryption_keys", "db_password")
    }
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"secrets", ".git", ".venv", "var"} <= set(ignored)
