"""The last lines of an instance's container logs (its app or its database), read over the
host's pinned SSH connection with ``docker compose logs``.

A read, like the health checks: no Operation (the page polls it every few seconds while a
person follows it). What comes back is bounded (``LOG_LINES_MAX`` lines, ``LOG_BYTES_MAX``
bytes, the newest kept) and sanitized: the instance's own secrets (database password, extra
environment) and secret-looking values are redacted before anyone sees them.

Reads are shared and spaced: a read (or the reason there is none) is kept for a couple of
seconds per instance, service and line count, so any number of people following one
instance, or one client asking in a loop, cost the host at most one SSH read every
``LOGS_FRESH_SECONDS`` (an unreachable host, whose connection retries take seconds, one every
``LOGS_UNAVAILABLE_SECONDS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from panel.sanitize import sanitize
from provisioning.compose import instance_dir, project_name
from provisioning.hosts import host_connection
from provisioning.models import AtlassianInstance, InstanceStatus
from provisioning.remote import RemoteError

LOG_SERVICES = ("app", "db")
LOG_LINES_DEFAULT = 200
LOG_LINES_MAX = 1000
LOG_BYTES_MAX = 256 * 1024
LOGS_FRESH_SECONDS = 2  # under the page's follow interval (3 s): a follower sees every read
LOGS_UNAVAILABLE_SECONDS = 10


def logs_params(query: Mapping[str, str]) -> tuple[str, int] | str:
    """``service`` and ``lines`` of a logs request, or the sentence saying what is wrong."""
    service = query.get("service", "app")
    if service not in LOG_SERVICES:
        return f"service: choose one of {', '.join(LOG_SERVICES)}."
    raw = query.get("lines", str(LOG_LINES_DEFAULT))
    if not raw.isdigit() or not 1 <= int(raw) <= LOG_LINES_MAX:
        return f"lines: give a whole number from 1 to {LOG_LINES_MAX}."
    return service, int(raw)


class LogsUnavailable(Exception):
    """The logs cannot be read now (no host, the host does not answer); says why."""


@dataclass
class InstanceLogs:
    """What :func:`instance_logs` read."""

    service: str
    lines: int
    text: str
    truncated: bool
    fetched_at: datetime
    available: bool = True
    error: str = ""


def instance_logs(
    instance: AtlassianInstance, *, service: str = "app", lines: int = LOG_LINES_DEFAULT
) -> InstanceLogs:
    """The newest ``lines`` lines (with Docker's timestamps) of ``service``'s container.

    ``service`` and ``lines`` must be valid (see :data:`LOG_SERVICES`, :data:`LOG_LINES_MAX`):
    the views check them and answer 400. Raises :class:`LogsUnavailable`."""
    if service not in LOG_SERVICES or not 1 <= lines <= LOG_LINES_MAX:
        raise ValueError(f"service {service!r}, lines {lines}")
    # Keyed by where the instance runs too: after a move, the new host's logs at once.
    key = f"instance-logs:{instance.pk}:{instance.host_id}:{service}:{lines}"
    kept = cache.get(key)
    if isinstance(kept, InstanceLogs):
        return kept
    if isinstance(kept, str):
        raise LogsUnavailable(kept)
    try:
        read = _logs_read(instance, service=service, lines=lines)
    except LogsUnavailable as exc:
        cache.set(key, str(exc), LOGS_UNAVAILABLE_SECONDS)
        raise
    cache.set(key, read, LOGS_FRESH_SECONDS)
    return read


def _logs_read(instance: AtlassianInstance, *, service: str, lines: int) -> InstanceLogs:
    if instance.host is None or instance.status in (InstanceStatus.PENDING, InstanceStatus.DELETED):
        raise LogsUnavailable(f"{instance.name} runs on no host yet; it has no logs.")
    try:
        with host_connection(instance.host) as conn:
            result = conn.run(
                [
                    "docker",
                    "compose",
                    "--project-directory",
                    instance_dir(instance),
                    "--project-name",
                    project_name(instance),
                    "logs",
                    "--no-color",
                    "--timestamps",
                    "--tail",
                    str(lines),
                    service,
                ],
                timeout=30,
                record=False,
                ok_codes=range(256),
            )
    except RemoteError as exc:
        raise LogsUnavailable(f"The logs of {instance.name} cannot be read now: {exc}") from exc
    if result.exit_code != 0:
        raise LogsUnavailable(
            f"docker compose logs answered {result.exit_code}: "
            f"{sanitize(result.stderr.strip()[-300:])}"
        )
    # Compose prefixes each line with "<container> | "; the page says which service it is.
    body = "\n".join(
        line.split(" | ", 1)[1] if " | " in line else line for line in result.stdout.splitlines()
    )
    truncated = len(body.encode()) > LOG_BYTES_MAX
    if truncated:
        body = body.encode()[-LOG_BYTES_MAX:].decode(errors="ignore").split("\n", 1)[-1]
    secrets = [instance.db_password, *map(str, (instance.extra_env or {}).values())]
    return InstanceLogs(
        service=service,
        lines=lines,
        text=sanitize(body, secrets),
        truncated=truncated,
        fetched_at=timezone.now(),
    )
