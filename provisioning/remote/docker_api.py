"""The Docker SDK, carried over a :class:`~provisioning.remote.ssh.HostConnection`.

The SDK's own ``ssh://`` transport opens a second SSH connection that reads ``~/.ssh`` and
known_hosts of whoever runs the worker. Instead we give its SSH adapter the connection we have
already verified against the pinned host key: each HTTP request runs
``docker system dial-stdio`` on a new channel of it, talking to the engine's local socket.
(This relies on ``docker.transport.sshconn``, stable since docker-py 4.4; tested in
``tests/provisioning/test_remote_lab.py``.)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import docker
from docker.transport.basehttpadapter import BaseHTTPAdapter
from docker.transport.sshconn import SSHHTTPAdapter

from provisioning.remote.errors import HostUnreachable

if TYPE_CHECKING:
    from provisioning.remote.ssh import HostConnection

# Used only until the engine's own API version has been asked (over the pinned channel).
_BOOTSTRAP_API_VERSION = "1.41"


class PinnedSSHAdapter(SSHHTTPAdapter):
    """``SSHHTTPAdapter`` bound to an open, pinned paramiko connection; it never reconnects."""

    def __init__(
        self, connection: HostConnection, *, record: bool = True, max_pool_size: int = 4
    ) -> None:
        from urllib3._collections import RecentlyUsedContainer

        self.connection = connection
        self.record = record
        self.ssh_client = connection._client_or_raise()
        self.ssh_params: dict[str, Any] = {}
        self.ssh_host = connection.target.address
        self.timeout = int(connection.command_timeout)
        self.max_pool_size = max_pool_size
        self.pools = RecentlyUsedContainer(4, dispose_func=lambda p: p.close())
        BaseHTTPAdapter.__init__(self)

    def _create_paramiko_client(self, base_url: str) -> None:  # pragma: no cover - never used
        raise RuntimeError("the pinned adapter never creates its own SSH client")

    def _connect(self) -> None:
        # Called by the SDK when the transport is gone: never open an unverified one.
        raise HostUnreachable(
            f"The SSH connection to {self.connection.label} closed; the Docker API call was "
            "not made."
        )

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if self.connection.ctx is not None:
            # A safe point like every SSH command: a fenced (reaped) handler stops here, and a
            # cancel too outside the operation's uncancellable blocks.
            self.connection.ctx.check_cancelled()
        started = time.monotonic()
        response = super().send(request, *args, **kwargs)
        self.connection.docker_requests += 1
        if self.record and self.connection.ctx is not None:
            path = urlsplit(request.url).path
            self.connection.ctx.step(
                f"Docker API {request.method} {path}",
                command=f"docker-api {request.method} {path}",
                exit_code=response.status_code,
                duration_ms=int((time.monotonic() - started) * 1000),
                level="info" if response.status_code < 400 else "warning",
            )
        return response

    def close(self) -> None:
        # Close the HTTP pools; the SSH connection belongs to the HostConnection.
        self.pools.clear()


def pinned_docker_client(connection: HostConnection, *, record: bool = True) -> docker.DockerClient:
    """A ``docker.DockerClient`` whose requests all go through ``connection``."""
    # use_ssh_client=True makes the SDK build a lazy shell-out adapter that connects nowhere
    # until a request; we replace it before any request with the pinned one.
    client = docker.DockerClient(
        base_url=f"ssh://{connection.target.user}@{connection.target.address}",
        use_ssh_client=True,
        version=_BOOTSTRAP_API_VERSION,
        timeout=int(connection.command_timeout),
    )
    api = client.api
    api._custom_adapter.close()
    adapter = PinnedSSHAdapter(connection, record=record)
    api._custom_adapter = adapter
    api.mount("http+docker://ssh", adapter)
    if api.base_url != "http+docker://ssh" or {"http://", "https://"} & set(api.adapters):
        raise RuntimeError("the Docker SDK would not route requests through the SSH adapter")
    connection.docker_version = api.version(api_version=False)
    api._version = connection.docker_version["ApiVersion"]
    return client
