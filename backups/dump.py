"""The instance's compose project as backups and restores drive it: which services run, waiting
for the database, and the ``pg_dump`` of a point (written on the app host; the data never
passes through the panel)."""

from __future__ import annotations

import time

from django.conf import settings

from panel.operations import OperationContext, OperationFailed
from provisioning.compose import instance_dir, project_name
from provisioning.models import AtlassianInstance
from provisioning.remote import HostConnection

# Where a restore pulls a point's dump to, next to the instance's project.
RESTORE_DUMP_FILE = "restore.dump"

_DUMP_SCRIPT = """set -eu
umask 077
dir="$1"; project="$2"; user="$3"; db="$4"; out="$1/db.dump"
trap 'rm -f "$out.partial"' EXIT
dc() { docker compose --project-directory "$dir" --project-name "$project" "$@"; }
dc exec -T db pg_dump --format=custom --username="$user" --dbname="$db" > "$out.partial"
dc exec -T db pg_restore --list < "$out.partial" > /dev/null
mv -f "$out.partial" "$out"
sha256sum "$out" | cut -d' ' -f1
stat -c %s "$out"
"""


def compose_argv(instance: AtlassianInstance, *args: str) -> list[str]:
    """``docker compose`` for the instance's project, spelt as ``HostConnection.compose`` spells
    it. Backups need the argv itself: polls run unrecorded, psql reads SQL on stdin, and a
    restore streams a dump into it, none of which ``compose()`` offers."""
    return [
        "docker",
        "compose",
        "--project-directory",
        instance_dir(instance),
        "--project-name",
        project_name(instance),
        *args,
    ]


def running_services(conn: HostConnection, instance: AtlassianInstance) -> set[str]:
    """The compose services of ``instance`` that run now."""
    result = conn.run(
        compose_argv(instance, "ps", "--status", "running", "--services"),
        ok_codes=range(256),
        record=False,
        timeout=60,
    )
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def db_wait_ready(
    ctx: OperationContext | None,
    conn: HostConnection,
    instance: AtlassianInstance,
    timeout: float = 120,
) -> None:
    """Wait until the database container accepts TCP connections (its entrypoint's temporary
    socket-only server during initdb does not count)."""
    deadline = time.monotonic() + timeout
    while True:
        result = conn.run(
            compose_argv(
                instance,
                "exec",
                "-T",
                "db",
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-U",
                instance.db_user,
                "-d",
                instance.db_name,
            ),
            ok_codes=range(256),
            record=False,
            timeout=30,
        )
        if result.exit_code == 0:
            if ctx is not None:
                ctx.step(f"The database of {instance.name} accepts connections")
            return
        if time.monotonic() > deadline:
            raise OperationFailed(
                f"The database of {instance.name} did not accept connections within "
                f"{timeout:g} s: {(result.stdout + result.stderr).strip()[-200:]}"
            )
        if ctx is not None:
            ctx.check_cancelled()
        time.sleep(1)


def dump_create(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance
) -> tuple[str, int]:
    """``pg_dump --format=custom`` inside the db container into ``<instance dir>/db.dump`` on
    the app host (the data never passes through the panel); checked with ``pg_restore
    --list``. Returns (sha256, size)."""
    result = conn.run(
        [
            "sh",
            "-c",
            _DUMP_SCRIPT,
            "sh",
            instance_dir(instance),
            project_name(instance),
            instance.db_user,
            instance.db_name,
        ],
        timeout=settings.PANEL_BACKUP_DUMP_TIMEOUT,
        message=f"Dumped database {instance.db_name} with pg_dump inside the db container",
    )
    lines = result.stdout.split()
    if len(lines) < 2:
        raise OperationFailed(f"pg_dump printed no checksum: {result.stdout[-200:]}")
    return lines[0], int(lines[1])
