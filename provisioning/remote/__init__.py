"""The panel's one way to reach a managed host: pinned SSH, files over SFTP, and the Docker API.

This package is the only code that imports paramiko or the Docker SDK. Everything else uses::

    from provisioning.remote import HostConnection, SSHTarget

    with HostConnection(SSHTarget.for_host(host), ctx=ctx) as conn:
        conn.run(["docker", "info"], timeout=30)
        conn.upload("/srv/atlassian/x/compose.yaml", text, mode=0o640)
        conn.docker().containers.list()
"""

from provisioning.remote.errors import (
    CommandFailed,
    CommandTimeout,
    HostAuthFailed,
    HostKeyMismatch,
    HostUnreachable,
    RemoteError,
    RemoteFileNotFound,
)
from provisioning.remote.keys import (
    KeyPair,
    fingerprint_of_line,
    keypair_generate,
)
from provisioning.remote.ssh import (
    CommandResult,
    HostConnection,
    PinnedHostKeyPolicy,
    ScannedHostKey,
    SSHTarget,
    host_key_scan,
)

__all__ = [
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "HostAuthFailed",
    "HostConnection",
    "HostKeyMismatch",
    "HostUnreachable",
    "KeyPair",
    "PinnedHostKeyPolicy",
    "RemoteError",
    "RemoteFileNotFound",
    "SSHTarget",
    "ScannedHostKey",
    "fingerprint_of_line",
    "host_key_scan",
    "keypair_generate",
]
