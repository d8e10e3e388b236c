"""The steps of ``host.provision``: platform, Docker and Compose, the data root layout, the
proxy network, capacity, and (app hosts) the access to their backup host. Each step checks
first and changes only what is missing, so provisioning again changes nothing."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from panel.operations import OperationContext, OperationFailed
from provisioning.compose import PROXY_NETWORK
from provisioning.hosts.backup_access import (
    BACKUP_FORCED_COMMAND,
    BACKUP_FORCED_SCRIPT,
    BACKUP_KEY,
    BACKUP_KNOWN_HOSTS,
    RRSYNC_BUSY,
    backup_access_line,
    backup_peer_addresses,
    host_backup_dir,
    host_backup_push_dir,
    host_backup_rsync_destination,
    host_backup_ssh_argv,
    host_backup_wal_dir,
)
from provisioning.hosts.connection import host_connection, host_peer_ssh_port
from provisioning.models import Host
from provisioning.remote import HostConnection, fingerprint_of_line

# The proxy network has inter-container traffic off (instances meet the proxy on their own
# edge network, never each other).
PROXY_NETWORK_OPTIONS = {"com.docker.network.bridge.enable_icc": "false"}
# Directories under a host's data root, created by provisioning (parents first).
HOST_LAYOUT: dict[str, tuple[str, ...]] = {
    Host.Role.APP: ("instances", "proxy", "proxy/conf.d", "proxy/certs", ".ssh"),
    Host.Role.BACKUP: ("hosts",),
}
SUPPORTED_ARCHES = {"x86_64", "aarch64"}
DEBIAN_FAMILY = {"debian", "ubuntu"}


@dataclass
class Provisioner:
    """The steps of ``host.provision`` on one host; ``changes`` lists what it altered."""

    ctx: OperationContext
    host: Host
    conn: HostConnection
    changes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    os_id: str = ""
    _apt_updated: bool = False

    @property
    def sudo(self) -> list[str]:
        return [] if self.host.ssh_user == "root" else ["sudo", "-n"]

    def path(self, rel: str = "") -> str:
        return f"{self.host.data_root}/{rel}" if rel else self.host.data_root

    # platform

    def check_platform(self) -> None:
        arch = self.conn.run(["uname", "-m"], message="Check the CPU architecture").stdout.strip()
        if arch not in SUPPORTED_ARCHES:
            supported = ", ".join(sorted(SUPPORTED_ARCHES))
            raise OperationFailed(f"{self.host.name} is {arch}; the panel supports {supported}.")
        kernel = self.conn.run(["uname", "-r"], message="Check the kernel").stdout.strip()
        release = _parse_os_release(
            (self.conn.read("/etc/os-release", missing_ok=True, record=True) or b"").decode()
        )
        self.os_id = release.get("ID", "")
        family = {self.os_id, *release.get("ID_LIKE", "").split()}
        self.facts.update(
            arch=arch,
            kernel=kernel,
            os=release.get("PRETTY_NAME", "unknown"),
            os_id=self.os_id,
            os_version=release.get("VERSION_ID", ""),
            os_family="debian" if family & DEBIAN_FAMILY else self.os_id,
        )
        self.ctx.step(f"{self.host.name} runs {self.facts['os']} on {arch}, kernel {kernel}")

    @property
    def debian_like(self) -> bool:
        return self.facts.get("os_family") == "debian"

    def apt_install(self, packages: list[str], why: str) -> None:
        if not self.debian_like:
            raise OperationFailed(
                f"{why} is missing on {self.host.name} and the panel installs packages only on "
                f"Debian and Ubuntu ({self.facts.get('os')}); install it, then provision again."
            )
        env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        if not self._apt_updated:
            self.conn.run(
                [*self.sudo, *env, "apt-get", "update", "-q"],
                timeout=600,
                message="Refresh the package lists",
            )
            self._apt_updated = True
        self.conn.run(
            [
                *self.sudo,
                *env,
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                *packages,
            ],
            timeout=1200,
            message=f"Install {' '.join(packages)}",
        )
        self.changes.append(f"installed {' '.join(packages)}")

    def apt_candidate(self, package: str) -> str:
        out = self.conn.run(
            ["apt-cache", "policy", package],
            ok_codes=(0, 100),
            message=f"Look up package {package}",
        ).stdout
        match = re.search(r"Candidate:\s*(\S+)", out)
        return "" if not match or match.group(1) == "(none)" else match.group(1)

    # docker

    def ensure_docker(self) -> None:
        check = ["docker", "version", "--format", "{{.Server.Version}}"]
        r = self.conn.run(check, ok_codes=(0, 1, 127), message="Check Docker Engine")
        if r.exit_code == 127:
            self.apt_install(["docker.io"], "Docker Engine")
            r = self.conn.run(check, ok_codes=(0, 1), message="Check Docker Engine again")
        if r.exit_code != 0:
            self.conn.run(
                [*self.sudo, "systemctl", "enable", "--now", "docker"],
                ok_codes=range(256),
                message="Start Docker Engine",
            )
            r = self.conn.run(check, ok_codes=(0, 1), message="Check Docker Engine again")
            if r.exit_code != 0:
                raise OperationFailed(
                    f"Docker Engine is installed on {self.host.name} but does not answer: "
                    f"{(r.stderr or r.stdout).strip()[-400:]}"
                )
            self.changes.append("started Docker Engine")
        self.conn.docker()
        version = self.conn.docker_version
        self.facts.update(
            docker_version=version.get("Version", r.stdout.strip()),
            docker_api_version=version.get("ApiVersion", ""),
        )
        self.ctx.step(
            f"Docker Engine {self.facts['docker_version']} answers over SSH "
            f"(API {self.facts['docker_api_version']})"
        )

    def ensure_compose(self) -> None:
        check = ["docker", "compose", "version", "--short"]
        r = self.conn.run(check, ok_codes=range(256), message="Check the Compose v2 plugin")
        if r.exit_code != 0 or not r.stdout.strip()[:1].isdigit():
            package = self._compose_package()
            if not package:
                raise OperationFailed(
                    f"The Docker Compose v2 plugin is missing on {self.host.name} and "
                    f"{self.facts.get('os')} has no package for it; install "
                    "docker-compose-plugin (Docker's repository), then provision again."
                )
            self.apt_install([package], "The Docker Compose v2 plugin")
            r = self.conn.run(check, message="Check the Compose v2 plugin again")
        version = r.stdout.strip().lstrip("v")
        if not version.startswith(("2.", "3.")):
            raise OperationFailed(
                f"{self.host.name} has Docker Compose {version}; the panel "
                "needs Compose v2 (`docker compose`)."
            )
        self.facts["compose_version"] = version

    def _compose_package(self) -> str:
        if not self.debian_like:
            return ""
        for package in ("docker-compose-plugin", "docker-compose-v2", "docker-compose"):
            candidate = self.apt_candidate(package)
            if candidate and re.match(r"^(\d+:)?[2-9]\.", candidate):
                return package
        return ""

    # layout

    def ensure_layout(self, rels: tuple[str, ...]) -> None:
        wanted = [self.path(), *(self.path(rel) for rel in rels)]
        missing = [p for p in wanted if not self.conn.exists(p)]
        if missing:
            noun = "directory" if len(missing) == 1 else "directories"
            self.conn.run(
                [*self.sudo, "mkdir", "-p", "-m", "0750", *missing],
                message=f"Create {len(missing)} {noun} under the data root",
            )
            self.changes.append("created " + ", ".join(missing))
        else:
            self.ctx.step(f"Data root layout under {self.path()} is in place")
        ssh_dir = self.path(".ssh")
        if ".ssh" in rels:
            mode = self.conn.sftp().stat(ssh_dir).st_mode & 0o777
            if mode != 0o700:
                self.conn.run([*self.sudo, "chmod", "0700", ssh_dir], message="Protect .ssh")
                self.changes.append(f"chmod 0700 {ssh_dir}")

    def ensure_proxy_network(self) -> None:
        client = self.conn.docker()
        found = [n for n in client.networks.list(names=[PROXY_NETWORK]) if n.name == PROXY_NETWORK]
        if found:
            self.ctx.step(f"Docker network {PROXY_NETWORK} exists")
            return
        client.networks.create(
            PROXY_NETWORK,
            driver="bridge",
            labels={"panel.managed": "1"},
            options=PROXY_NETWORK_OPTIONS,
            check_duplicate=True,
        )
        self.changes.append(f"created Docker network {PROXY_NETWORK} (no inter-container traffic)")

    # capacity

    def record_capacity(self) -> None:
        cpus = self.conn.run(["nproc"], message="Count CPUs").stdout.strip()
        meminfo = (self.conn.read("/proc/meminfo") or b"").decode()
        mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
        self.facts["cpu_count"] = int(cpus) if cpus.isdigit() else None
        self.facts["memory_mb"] = int(mem.group(1)) // 1024 if mem else None
        self.facts.update(disk_usage(self.conn, self.host.data_root))

    # backups

    def ensure_backup_host_tools(self) -> None:
        # rsync only: points are rsync --link-dest copies the panel commits itself (see
        # backups/README.md for why not rsnapshot).
        found = self.conn.run(
            ["sh", "-c", 'command -v "$1"', "sh", "rsync"],
            ok_codes=(0, 1, 127),
            message="Check rsync",
        )
        if found.exit_code != 0:
            self.apt_install(["rsync"], "rsync")
        rsync = self.conn.run(["rsync", "--version"], message="rsync version").stdout
        self.facts["rsync_version"] = _first_version(rsync)
        self.facts["rrsync"] = rrsync_path(self.conn)

    def ensure_backup_access(self) -> None:
        """The app host's own key, allowed on its backup host only to rsync into its directory."""
        backup = self.host.backup_host
        assert backup is not None
        if backup.status != Host.Status.READY or not backup.host_key:
            raise OperationFailed(
                f"Backup host {backup.name} is {backup.get_status_display().lower()}; provision "
                f"it before {self.host.name}."
            )
        key_path = self.path(BACKUP_KEY)
        if not (self.conn.exists(key_path) and self.conn.exists(key_path + ".pub")):
            self.conn.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"panel-backup@{self.host.name}",
                    "-f",
                    key_path,
                ],
                message="Create the app host's backup key",
            )
            self.changes.append(f"created backup key {key_path}")
        public = (self.conn.read(key_path + ".pub") or b"").decode().strip()
        key_type, key_b64 = public.split()[:2]
        self.facts["backup_key_fingerprint"] = fingerprint_of_line(public)

        # known_hosts on the app host: only the backup host, with the key the panel pinned.
        port = host_peer_ssh_port(backup)
        pattern = backup.peer_address if port == 22 else f"[{backup.peer_address}]:{port}"
        known = f"{pattern} {' '.join(backup.host_key.split()[:2])}\n"
        if self.conn.upload_if_changed(
            self.path(BACKUP_KNOWN_HOSTS),
            known,
            mode=0o600,
            message="Pin the backup host's key for the app host",
        ):
            self.changes.append(f"pinned {backup.name}'s host key in {BACKUP_KNOWN_HOSTS}")

        target_dir = host_backup_dir(self.host)
        marker = f"panel-backup@{self.host.name}"
        with host_connection(backup, ctx=self.ctx) as bconn:
            rrsync = rrsync_path(bconn)
            if not rrsync:
                raise OperationFailed(
                    f"rrsync is missing on {backup.name}; it ships with rsync 3.2.3 or newer "
                    "(Debian 12: /usr/bin/rrsync). Provision the backup host again."
                )
            push_dir = host_backup_push_dir(self.host)
            for directory in (target_dir, push_dir, host_backup_wal_dir(self.host)):
                if not bconn.exists(directory):
                    bconn.run(
                        ["mkdir", "-p", "-m", "0750", directory],
                        message=f"Create {directory} on {backup.name}",
                    )
                    self.changes.append(f"created {directory} on {backup.name}")
            if bconn.upload_if_changed(
                BACKUP_FORCED_COMMAND,
                BACKUP_FORCED_SCRIPT,
                mode=0o755,
                message="Install the forced command of backup keys",
            ):
                self.changes.append(f"installed {BACKUP_FORCED_COMMAND} on {backup.name}")
            sources = backup_peer_addresses(bconn, self.host)
            home = bconn.run(["sh", "-c", 'printf %s "$HOME"'], message="Find the home").stdout
            auth_path = f"{home.rstrip('/')}/.ssh/authorized_keys"
            line = backup_access_line(
                self.host, rrsync=rrsync, sources=sources, public_key=f"{key_type} {key_b64}"
            )
            current = (bconn.read(auth_path, missing_ok=True) or b"").decode()
            # A key another app host already uses is refused: replacing that host's line
            # because this host reports the same public key would lock the other one out.
            for raw in current.splitlines():
                if (
                    f" {key_b64} " in f" {raw} "
                    and "panel-backup@" in raw
                    and not raw.rstrip().endswith(" " + marker)
                ):
                    raise OperationFailed(
                        f"{self.host.name}'s backup key is already authorised on {backup.name} "
                        "for another app host; give this host its own key "
                        f"({self.path(BACKUP_KEY)}) and provision it again."
                    )
            # One line per app host: its older line (another key, or older options) is
            # replaced; a line of this key without the marker (sshd would use the first) too.
            lines = [
                raw
                for raw in current.splitlines()
                if raw.strip()
                and not raw.rstrip().endswith(" " + marker)
                and f" {key_b64} " not in f" {raw} "
            ]
            wanted = "\n".join([*lines, line]) + "\n"
            if line not in current.splitlines():
                bconn.upload(
                    auth_path,
                    wanted,
                    mode=0o600,
                    message=f"Authorise {self.host.name}'s backup key on {backup.name} "
                    f"(from {', '.join(sources)} only; write into {push_dir}, "
                    f"read from {target_dir})",
                )
                self.changes.append(f"authorised {self.host.name}'s backup key on {backup.name}")
            else:
                self.ctx.step(f"{self.host.name}'s backup key is authorised on {backup.name}")
        # Prove it: the app host lists its backup directory through the restricted key.
        check = self.conn.run(
            [
                "rsync",
                "--list-only",
                "-e",
                " ".join(host_backup_ssh_argv(self.host)),
                host_backup_rsync_destination(self.host),
            ],
            timeout=60,
            ok_codes=range(256),
            message=f"Check that {self.host.name} reaches {backup.name} with rsync",
        )
        if check.exit_code != 0:
            if RRSYNC_BUSY in check.stderr:
                # rrsync answered through the forced command: key, pin and restriction work;
                # it only holds its one-transfer-at-a-time lock for a backup that is running.
                self.ctx.step(
                    f"{backup.name} is busy with a backup of {self.host.name}; the "
                    "restricted key reached rrsync, so access works"
                )
            else:
                raise OperationFailed(
                    f"{self.host.name} cannot rsync to {backup.name} with its backup key (exit "
                    f"code {check.exit_code}): {(check.stderr or check.stdout).strip()[-400:]}"
                )
        self.facts["backup_target"] = f"{backup.name}:{target_dir}"


def _parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            try:
                out[key.strip()] = " ".join(shlex.split(value))
            except ValueError:
                out[key.strip()] = value.strip().strip('"')
    return out


def _first_version(text: str) -> str:
    match = re.search(r"(\d+\.\d+(?:\.\d+)?(?:-\S+)?)", text or "")
    return match.group(1) if match else ""


def rrsync_path(conn: HostConnection) -> str:
    found = conn.run(["sh", "-c", "command -v rrsync || true"], message="Find rrsync")
    path = found.stdout.strip()
    return path if path.startswith("/") else ""


def disk_usage(conn: HostConnection, path: str) -> dict[str, int]:
    out = conn.run(["df", "-P", "-B1", path], message=f"Disk usage of {path}").stdout
    rows = [line.split() for line in out.strip().splitlines()[1:]]
    if not rows or len(rows[-1]) < 4:
        raise OperationFailed(f"Could not read the disk usage of {path}: {out.strip()[:200]}")
    total, _used, free = (int(x) for x in rows[-1][1:4])
    return {"disk_total_bytes": total, "disk_free_bytes": free}
