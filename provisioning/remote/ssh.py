"""SSH to a managed host with its host key pinned: commands, files, and the Docker API.

:class:`HostConnection` is the only way the panel talks to a host. It refuses to authenticate
until the server has shown the pinned host key (see :class:`PinnedHostKeyPolicy`), runs commands
as argv lists (joined with :func:`shlex.join`, never as a string a caller built), writes files
atomically over SFTP, and records every command as a step of the current Operation.
"""

from __future__ import annotations

import logging
import posixpath
import re
import secrets
import select
import shlex
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import paramiko
from django.conf import settings

from provisioning.remote.errors import (
    CommandFailed,
    CommandTimeout,
    HostAuthFailed,
    HostKeyMismatch,
    HostUnreachable,
    RemoteError,
    RemoteFileNotFound,
)
from provisioning.remote.keys import fingerprint_of_key, openssh_line, private_key_load

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)
# paramiko logs every connection at INFO; its warnings are enough.
logging.getLogger("paramiko").setLevel(logging.WARNING)

# Paths handed to SFTP: absolute, no '..' segments, no control characters.
_PATH_RE = re.compile(r"\A/[^\x00-\x1f\x7f]*\Z")
_OUTPUT_TAIL = 600


class StepLog(Protocol):
    """What the remote layer needs from an operation (``panel.operations.OperationContext``)."""

    def step(
        self,
        message: str,
        *,
        level: str = ...,
        command: str = ...,
        exit_code: int | None = ...,
        duration_ms: int | None = ...,
        output: str = ...,
    ) -> None: ...

    def check_cancelled(self) -> None:
        """Raise if the operation lost its lease (always) or a cancel waits (outside an
        uncancellable block); called before every command and upload."""
        ...

    def add_secrets(self, values: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and how it ended."""

    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to log in, and which host key to insist on."""

    label: str
    address: str
    port: int
    user: str
    fingerprint: str
    host_key_type: str = ""
    private_key: str = ""
    # A one-time password (enrolment only). Held in memory for one connection, never stored.
    password: str = ""

    @classmethod
    def for_host(cls, host: Any, *, password: str = "") -> SSHTarget:
        """The target for a ``provisioning.models.Host`` (its pinned key and the panel's key)."""
        key_type = host.host_key.split()[0] if (host.host_key or "").strip() else ""
        return cls(
            label=host.name,
            address=host.address,
            port=int(host.ssh_port),
            user=host.ssh_user,
            fingerprint=host.host_key_fingerprint,
            host_key_type=key_type,
            private_key=host.ssh_private_key or "",
            password=password,
        )


@dataclass(frozen=True)
class ScannedHostKey:
    """A host key seen on first contact, before anything was trusted."""

    key_type: str
    openssh: str
    fingerprint: str


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accept the server only if its key's SHA256 fingerprint is the pinned one.

    The panel loads no known_hosts file, so paramiko asks this policy about every server; a
    mismatch raises before authentication, so no credential is offered and no command runs.
    """

    def __init__(self, expected_fingerprint: str, label: str) -> None:
        self.expected = expected_fingerprint
        self.label = label
        self.presented: str = ""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.presented = fingerprint_of_key(key)
        if not self.expected or self.presented != self.expected:
            raise HostKeyMismatch(
                self.label, self.expected or "(nothing)", self.presented, openssh_line(key)
            )


def _describe_network_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        if errors and all(isinstance(e, ConnectionRefusedError) for e in errors):
            return "connection refused"
        return "; ".join(str(e.strerror or e) for e in errors) or str(exc)
    if isinstance(exc, socket.gaierror):
        return "the name does not resolve"
    if isinstance(exc, EOFError):
        return "the connection was closed during the SSH handshake"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _host_key_algorithms(key_type: str) -> list[str]:
    """Host key algorithms that may carry a pinned key of ``key_type``."""
    if key_type == "ssh-rsa":
        return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    return [key_type]


def _retrying(label: str, address: str, port: int, timeout: float, attempt_fn: Any) -> Any:
    """Call ``attempt_fn`` up to PANEL_SSH_CONNECT_TRIES times on network errors only."""
    tries = max(1, settings.PANEL_SSH_CONNECT_TRIES)
    backoff = settings.PANEL_SSH_RETRY_BACKOFF
    last: BaseException | None = None
    for attempt in range(1, tries + 1):
        try:
            return attempt_fn()
        except (HostKeyMismatch, HostAuthFailed):
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if isinstance(exc, paramiko.AuthenticationException):
                raise
            last = exc
            log.info(
                "connecting to %s (%s:%s) failed, try %s of %s: %s",
                label,
                address,
                port,
                attempt,
                tries,
                exc,
            )
            if attempt < tries:
                time.sleep(backoff * 2 ** (attempt - 1))
    reason = _describe_network_error(last, timeout) if last else "unknown error"
    raise HostUnreachable(
        f"Cannot reach {label} at {address}:{port} over SSH: {reason} "
        f"(tried {tries} time{'s' if tries != 1 else ''})."
    )


def host_key_scan(
    address: str, port: int, *, label: str = "", timeout: float | None = None
) -> ScannedHostKey:
    """First contact: fetch the host's SSH key without authenticating or trusting it."""
    timeout = timeout or settings.PANEL_SSH_CONNECT_TIMEOUT

    def attempt() -> ScannedHostKey:
        sock = socket.create_connection((address, port), timeout=timeout)
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = timeout
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
            return ScannedHostKey(key.get_name(), openssh_line(key), fingerprint_of_key(key))
        finally:
            transport.close()
            sock.close()

    return _retrying(label or address, address, port, timeout, attempt)


class HostConnection:
    """One pinned, authenticated SSH connection to a host (use as a context manager).

    ``ctx`` (an :class:`OperationContext`) receives a step for every command, upload and
    Docker API call; without it nothing is recorded (e.g. the periodic health probe).
    """

    def __init__(
        self,
        target: SSHTarget,
        *,
        ctx: StepLog | None = None,
        connect_timeout: float | None = None,
        command_timeout: float | None = None,
    ) -> None:
        self.target = target
        self.ctx = ctx
        self.connect_timeout = connect_timeout or settings.PANEL_SSH_CONNECT_TIMEOUT
        self.command_timeout = command_timeout or settings.PANEL_SSH_COMMAND_TIMEOUT
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._docker: Any = None
        self.docker_requests = 0
        # The engine's answer to GET /version, asked when the Docker client is first made.
        self.docker_version: dict[str, Any] = {}
        if ctx is not None and target.password:
            ctx.add_secrets([target.password])

    # --- connection ---------------------------------------------------------------------

    def __enter__(self) -> HostConnection:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def label(self) -> str:
        t = self.target
        return f"{t.label} ({t.user}@{t.address}:{t.port})"

    @property
    def transport(self) -> paramiko.Transport:
        if self._client is None or self._client.get_transport() is None:
            raise HostUnreachable(f"The SSH connection to {self.label} is not open.")
        return self._client.get_transport()

    def open(self) -> HostConnection:
        """Connect, verify the pinned host key, then authenticate (key, or one-time password)."""
        t = self.target
        if not t.fingerprint:
            raise HostKeyMismatch(self.label, "(no key trusted yet)", "(not checked)")
        if not t.private_key and not t.password:
            raise HostAuthFailed(f"The panel has no key or password to log in to {self.label}.")
        pkey = private_key_load(t.private_key) if t.private_key else None
        started = time.monotonic()

        def attempt() -> paramiko.SSHClient:
            client = paramiko.SSHClient()
            # No known_hosts is loaded: every server goes through the pinned-key policy.
            client.set_missing_host_key_policy(PinnedHostKeyPolicy(t.fingerprint, self.label))
            disabled = None
            if t.host_key_type:
                wanted = set(_host_key_algorithms(t.host_key_type))
                disabled = {
                    "keys": [k for k in paramiko.Transport._preferred_keys if k not in wanted]
                }
            try:
                client.connect(
                    t.address,
                    port=t.port,
                    username=t.user,
                    pkey=None if t.password else pkey,
                    password=t.password or None,
                    timeout=self.connect_timeout,
                    banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout,
                    channel_timeout=self.connect_timeout,
                    allow_agent=False,
                    look_for_keys=False,
                    disabled_algorithms=disabled,
                )
            except paramiko.AuthenticationException as exc:
                client.close()
                how = "one-time password" if t.password else "panel's SSH key"
                raise HostAuthFailed(
                    f"{self.label} refused the {how} ({exc}). "
                    + (
                        "Check the password."
                        if t.password
                        else "Install the public key shown on the host's page in the user's "
                        "~/.ssh/authorized_keys, or enrol again with a one-time password."
                    )
                ) from None
            except BaseException:
                client.close()
                raise
            return client

        self._client = _retrying(self.label, t.address, t.port, self.connect_timeout, attempt)
        self._client.get_transport().set_keepalive(30)
        if self.ctx is not None:
            self.ctx.step(
                f"Connected to {self.label}; host key {t.fingerprint} matches the pinned key",
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        return self

    def close(self) -> None:
        if self._docker is not None:
            try:
                self._docker.close()
            except Exception:  # closing must not hide the real outcome
                log.debug("closing the docker client failed", exc_info=True)
            self._docker = None
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- commands -----------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        ok_codes: Iterable[int] = (0,),
        input: bytes | str | None = None,  # mirrors subprocess.run
        message: str = "",
        record: bool = True,
    ) -> CommandResult:
        """Run ``argv`` on the host; raise :class:`CommandFailed` on an unexpected exit code.

        The argv list is joined with :func:`shlex.join`, so every argument reaches the
        program as one word whatever it contains. ``input`` is sent on stdin (and not logged).
        """
        if isinstance(argv, str | bytes):
            raise TypeError("run() takes an argv list, not a command string")
        argv = [str(a) for a in argv]
        if not argv or any("\x00" in a for a in argv):
            raise ValueError("empty command or NUL byte in an argument")
        ok_codes = tuple(ok_codes)
        timeout = timeout or self.command_timeout
        command = shlex.join(argv)
        if self.ctx is not None:
            # A safe point: a reaped (fenced) handler stops here even during compensation; a
            # cancel stops here only outside the operation's uncancellable blocks.
            self.ctx.check_cancelled()
        started = time.monotonic()
        try:
            stdout, stderr, code = self._exec(command, timeout, input)
        except CommandTimeout as exc:
            self._record(
                message or f"Timed out: {command}",
                command,
                None,
                started,
                exc.stdout + exc.stderr,
                level="error",
                record=True,
            )
            raise
        duration = int((time.monotonic() - started) * 1000)
        result = CommandResult(stdout, stderr, code, duration)
        ok = code in ok_codes
        self._record(
            message or f"Ran {argv[0]}",
            command,
            code,
            started,
            _combined(stdout, stderr),
            level="info" if ok else "error",
            record=record or not ok,
        )
        if not ok:
            detail = (stderr.strip() or stdout.strip())[-_OUTPUT_TAIL:]
            raise CommandFailed(
                f"`{_short(command)}` failed on {self.target.label} with exit code {code}"
                + (f": {detail}" if detail else "."),
                command=command,
                exit_code=code,
                stdout=stdout,
                stderr=stderr,
            )
        return result

    def _exec(
        self, command: str, timeout: float, input: bytes | str | None
    ) -> tuple[str, str, int]:
        chan = self.transport.open_session(timeout=self.connect_timeout)
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            chan.settimeout(timeout)
            chan.exec_command(command)
            if input is not None:
                chan.sendall(input.encode() if isinstance(input, str) else input)
            chan.shutdown_write()
            deadline = time.monotonic() + timeout
            while True:
                got = False
                while chan.recv_ready():
                    out.append(chan.recv(65536))
                    got = True
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(65536))
                    got = True
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not chan.recv_stderr_ready()
                ):
                    break
                if chan.closed and not got and not chan.exit_status_ready():
                    raise HostUnreachable(
                        f"The SSH connection to {self.label} closed while `{_short(command)}` "
                        "was running."
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(
                        f"`{_short(command)}` did not finish within {timeout:g} s on "
                        f"{self.target.label} and was stopped.",
                        command=command,
                        stdout=_text(out),
                        stderr=_text(err),
                    )
                if not got:
                    select.select([chan], [], [], min(0.2, remaining))
            return _text(out), _text(err), chan.recv_exit_status()
        finally:
            chan.close()

    def _record(
        self,
        message: str,
        command: str,
        exit_code: int | None,
        started: float,
        output: str,
        *,
        level: str = "info",
        record: bool = True,
    ) -> None:
        if self.ctx is None or not record:
            return
        self.ctx.step(
            message,
            level=level,
            command=command,
            exit_code=exit_code,
            duration_ms=int((time.monotonic() - started) * 1000),
            output=output,
        )

    def compose(
        self,
        project_dir: str,
        *args: str,
        project_name: str = "",
        files: Sequence[str] = (),
        timeout: float | None = None,
        ok_codes: Iterable[int] = (0,),
        message: str = "",
    ) -> CommandResult:
        """``docker compose`` (v2, the CLI plugin on the host) for the project in a directory."""
        _check_path(project_dir)
        argv = ["docker", "compose", "--project-directory", project_dir]
        for f in files:
            _check_path(f)
            argv += ["--file", f]
        if project_name:
            argv += ["--project-name", project_name]
        return self.run(
            [*argv, *args],
            timeout=timeout,
            ok_codes=ok_codes,
            message=message or f"docker compose {' '.join(args[:1])}".strip(),
        )

    # --- files --------------------------------------------------------------------------

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._client_or_raise().open_sftp()
            self._sftp.get_channel().settimeout(self.command_timeout)
        return self._sftp

    def _client_or_raise(self) -> paramiko.SSHClient:
        self.transport  # noqa: B018 - raises if the connection is not open
        assert self._client is not None
        return self._client

    def exists(self, path: str) -> bool:
        _check_path(path)
        try:
            self.sftp().stat(path)
        except FileNotFoundError:
            return False
        return True

    def read(self, path: str, *, missing_ok: bool = False, record: bool = False) -> bytes | None:
        """The content of ``path`` on the host (``None`` if missing and ``missing_ok``)."""
        _check_path(path)
        started = time.monotonic()
        try:
            with self.sftp().open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            if missing_ok:
                return None
            raise RemoteFileNotFound(
                f"{path} does not exist on {self.target.label}.", command=f"read {path}"
            ) from None
        self._record(
            f"Read {path} ({len(data)} bytes)", f"sftp get {path}", 0, started, "", record=record
        )
        return data

    def upload(
        self,
        path: str,
        data: bytes | str,
        *,
        mode: int = 0o644,
        owner: tuple[int, int] | None = None,
        message: str = "",
    ) -> None:
        """Write ``path`` atomically: a temporary file in the same directory, then a rename.

        Mode (and owner, as numeric uid/gid) are set on the temporary file before any content
        is written, so a reader never sees a half-written or too-readable file.
        """
        _check_path(path)
        if isinstance(data, str):
            data = data.encode()
        directory, base = posixpath.split(path)
        tmp = posixpath.join(directory, f".{base}.panel-{secrets.token_hex(6)}.tmp")
        if self.ctx is not None:
            self.ctx.check_cancelled()
        sftp = self.sftp()
        started = time.monotonic()
        try:
            with sftp.open(tmp, "wb") as fh:
                sftp.chmod(tmp, mode)
                if owner is not None:
                    sftp.chown(tmp, int(owner[0]), int(owner[1]))
                fh.write(data)
            sftp.posix_rename(tmp, path)
        except BaseException:
            try:
                sftp.remove(tmp)
            except OSError:
                pass
            raise
        owner_text = f", owner {owner[0]}:{owner[1]}" if owner else ""
        self._record(
            message or f"Wrote {path} ({len(data)} bytes, mode {mode:04o}{owner_text})",
            f"sftp put {path}",
            0,
            started,
            "",
        )

    def upload_if_changed(
        self,
        path: str,
        data: bytes | str,
        *,
        mode: int = 0o644,
        owner: tuple[int, int] | None = None,
        message: str = "",
    ) -> bool:
        """Like :meth:`upload`, but leave an identical file alone; returns whether it wrote."""
        if isinstance(data, str):
            data = data.encode()
        current = self.read(path, missing_ok=True)
        if current == data:
            st = self.sftp().stat(path)
            same_mode = (st.st_mode or 0) & 0o7777 == mode
            same_owner = owner is None or (st.st_uid, st.st_gid) == tuple(owner)
            if same_mode and same_owner:
                return False
        self.upload(path, data, mode=mode, owner=owner, message=message)
        return True

    # --- Docker API ---------------------------------------------------------------------

    def docker(self, *, record: bool = True) -> docker.DockerClient:
        """A Docker SDK client whose every request travels over this pinned SSH connection.

        Each HTTP request opens a channel running ``docker system dial-stdio`` on the host,
        which talks to the engine's local socket; nothing listens on TCP.
        """
        if self._docker is None:
            from provisioning.remote.docker_api import pinned_docker_client

            self._docker = pinned_docker_client(self, record=record)
        return self._docker


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", errors="replace")


def _combined(stdout: str, stderr: str) -> str:
    if stdout and stderr:
        return f"{stdout.rstrip()}\n--- stderr ---\n{stderr}"
    return stdout or stderr


def _short(command: str, limit: int = 160) -> str:
    return command if len(command) <= limit else command[: limit - 1] + "…"


def _check_path(path: str) -> None:
    if (
        not isinstance(path, str)
        or not _PATH_RE.match(path)
        or any(part == ".." for part in path.split("/"))
    ):
        raise ValueError(f"refusing a remote path that is not absolute and clean: {path!r}")


__all__ = [
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "HostAuthFailed",
    "HostConnection",
    "HostKeyMismatch",
    "HostUnreachable",
    "PinnedHostKeyPolicy",
    "RemoteError",
    "RemoteFileNotFound",
    "SSHTarget",
    "ScannedHostKey",
    "host_key_scan",
]
