"""Errors of the remote layer. Each message is meant to be read by a person in the UI."""

from __future__ import annotations


class RemoteError(Exception):
    """Base class: something went wrong talking to a managed host."""


class HostUnreachable(RemoteError):
    """The host did not answer (refused, timed out, no route) after the bounded retries."""


class HostKeyMismatch(RemoteError):
    """The host presented a different SSH host key than the one pinned for it."""

    def __init__(
        self, label: str, expected: str, presented: str, presented_openssh: str = ""
    ) -> None:
        self.expected = expected
        self.presented = presented
        # The presented key itself (``type base64``), so an admin can trust it if it is right.
        self.presented_openssh = presented_openssh
        super().__init__(
            f"Host key mismatch for {label}: the panel pinned {expected} but the host presented "
            f"{presented}. Nothing was run. If the host was reinstalled on purpose, confirm its "
            "new key; otherwise someone may be intercepting the connection."
        )


class HostAuthFailed(RemoteError):
    """The host's key matched but it refused the panel's credentials."""


class CommandFailed(RemoteError):
    """A command ended with an exit code it was not expected to end with."""

    def __init__(
        self,
        message: str,
        *,
        command: str = "",
        exit_code: int | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(message)


class CommandTimeout(CommandFailed):
    """A command ran past its time limit and was stopped."""


class RemoteFileNotFound(CommandFailed):
    """A file the panel wanted to read does not exist on the host."""
