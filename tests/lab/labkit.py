"""Helpers for tests that use the lab (``scripts/lab up``): read its state,
reach its hosts over real SSH with pinned host keys, run throwaway containers
on the machine's Docker engine and clean them up.

Standard library only, so the Django tests can import it too
(``from tests.lab.labkit import load_state, LabSSH``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE = REPO / ".lab" / "state.json"
TEST_LABEL = "panel-lab.test=1"


class LabNotUp(RuntimeError):
    pass


def state_path() -> Path:
    return Path(os.environ.get("PANEL_LAB_STATE") or DEFAULT_STATE)


def load_state() -> dict:
    path = state_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LabNotUp(f"no lab state at {path}: run `scripts/lab up` first") from None


def host(state: dict, name: str) -> dict:
    for h in state["hosts"]:
        if h["name"] == name:
            return h
    raise KeyError(name)


def run(
    cmd: list[str],
    *,
    input: str | None = None,
    timeout: float = 60,
    check: bool = True,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
        )
    return p


def keyscan(address: str, port: int, key_type: str = "ed25519") -> str:
    """The host key sshd presents, as a known_hosts line (``[addr]:port type key``)."""
    p = run(["ssh-keyscan", "-T", "5", "-t", key_type, "-p", str(port), address], check=False)
    lines = [ln for ln in p.stdout.splitlines() if ln and not ln.startswith("#")]
    if not lines:
        raise AssertionError(f"sshd at {address}:{port} did not answer ssh-keyscan: {p.stderr}")
    return lines[0]


def fingerprint(known_hosts_line: str) -> str:
    return run(["ssh-keygen", "-lf", "-"], input=known_hosts_line + "\n").stdout.split()[1]


def docker(*args: str, **kw) -> subprocess.CompletedProcess:
    return run(["docker", *args], **kw)


# ---------------------------------------------------------------------------
# SSH with a throwaway key, authorised through `docker exec`
# ---------------------------------------------------------------------------


@dataclass
class LabSSH:
    """Real OpenSSH client sessions to the lab hosts: a throwaway key that is
    authorised on each host through ``docker exec``, and a known_hosts file
    built from ``ssh-keyscan`` whose fingerprints must equal those the lab
    recorded (StrictHostKeyChecking=yes). Call ``close()`` to de-authorise."""

    state: dict
    workdir: Path

    def __post_init__(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = self.workdir / "id_ed25519"
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"panel-lab-test-{secrets.token_hex(4)}",
                "-f",
                str(self.key),
            ]
        )
        self.pub = self.key.with_suffix(".pub").read_text().strip()
        self.known_hosts = self.workdir / "known_hosts"
        lines = []
        for h in self.state["hosts"]:
            line = keyscan(h["address"], h["ssh_port"])
            got = fingerprint(line)
            if got != h["host_key_fingerprint"]:
                raise AssertionError(
                    f"{h['name']} presents {got}, lab recorded {h['host_key_fingerprint']}"
                )
            lines.append(line)
        self.known_hosts.write_text("\n".join(lines) + "\n")
        self._authorised: list[str] = []

    def authorise(self, name: str) -> None:
        h = host(self.state, name)
        docker(
            "exec",
            "-i",
            h["container"],
            "sh",
            "-c",
            "mkdir -p /root/.ssh && cat >> /root/.ssh/authorized_keys",
            input=self.pub + "\n",
        )
        self._authorised.append(name)

    def base_cmd(self, name: str) -> list[str]:
        h = host(self.state, name)
        return [
            "ssh",
            "-i",
            str(self.key),
            "-p",
            str(h["ssh_port"]),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            f"{h['ssh_user']}@{h['address']}",
        ]

    def run(
        self,
        name: str,
        command: str,
        *,
        timeout: float = 60,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        if name not in self._authorised:
            self.authorise(name)
        return run(self.base_cmd(name) + [command], timeout=timeout, check=check, input=input)

    def close(self) -> None:
        for name in set(self._authorised):
            h = host(self.state, name)
            # Remove exactly our key line again.
            docker(
                "exec",
                "-i",
                h["container"],
                "sh",
                "-c",
                "IFS= read -r pub; "
                'grep -vxF "$pub" /root/.ssh/authorized_keys > /root/.ssh/ak.tmp || true; '
                "cat /root/.ssh/ak.tmp > /root/.ssh/authorized_keys; rm -f /root/.ssh/ak.tmp",
                input=self.pub + "\n",
                check=False,
            )
        self._authorised.clear()


# ---------------------------------------------------------------------------
# Throwaway containers
# ---------------------------------------------------------------------------


class Sandbox:
    """A private Docker network plus the containers a test starts on it, all
    labelled so ``scripts/lab down`` would find leftovers; ``close()`` removes
    them."""

    def __init__(self, prefix: str = "panel-lab-test"):
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        self.containers: list[str] = []
        docker("network", "create", "--label", "panel-lab=1", "--label", TEST_LABEL, self.name)

    def run(
        self,
        image: str,
        *,
        name: str,
        alias: str | None = None,
        env: dict | None = None,
        ports: list[str] | None = None,
        extra: list[str] | None = None,
    ) -> str:
        cname = f"{self.name}-{name}"
        cmd = [
            "docker",
            "run",
            "-d",
            "--name",
            cname,
            "--network",
            self.name,
            "--label",
            "panel-lab=1",
            "--label",
            TEST_LABEL,
        ]
        if alias:
            cmd += ["--network-alias", alias]
        for k, v in (env or {}).items():
            cmd += ["-e", f"{k}={v}"]
        for p in ports or []:
            cmd += ["-p", p]
        cmd += (extra or []) + [image]
        self.containers.append(cname)
        run(cmd)
        return cname

    def remove(self, cname: str) -> None:
        docker("rm", "-f", "-v", cname, check=False)
        if cname in self.containers:
            self.containers.remove(cname)

    def close(self) -> None:
        for c in list(self.containers):
            self.remove(c)
        docker("network", "rm", self.name, check=False)


def published(container: str, port: int) -> tuple[str, int]:
    """Address and port that ``container_port`` is published on (127.0.0.x)."""
    out = docker("port", container, f"{port}/tcp").stdout.split()[0]
    addr, _, p = out.rpartition(":")
    return addr, int(p)


def http_json(url: str, *, method: str = "GET", body: dict | None = None, timeout: float = 5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 - lab loopback only
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - lab loopback only
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(predicate, *, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError) as e:  # connection refused while starting, ...
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def wait_pg_ready(container: str, user: str, timeout: float = 30) -> None:
    wait_for(
        lambda: (
            docker(
                "exec", container, "pg_isready", "-h", "127.0.0.1", "-U", user, check=False
            ).returncode
            == 0
        ),
        timeout=timeout,
        what=f"{container} pg_isready",
    )
