"""Moving a point's files between an app host and its backup host, and checking them: rsync
through the backup host's restricted rsync (rrsync), and the checksum and owner/mode
manifests a point carries."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from django.conf import settings

from backups.store import DUMP_FILE
from panel.operations import OperationContext, OperationFailed
from provisioning.hosts import host_backup_ssh_argv
from provisioning.models import Host
from provisioning.remote import HostConnection

# The entries of a point that come from the instance (the rest are the panel's own files); a
# point whose database is the WAL archive has only the home.
POINT_ENTRIES = ("home", DUMP_FILE)
HOME_ONLY = ("home",)

_SHA_SCRIPT = (
    'set -e; cd "$1"; shift; '
    'find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --'
)
_STAT_SCRIPT = 'set -e; cd "$1"; shift; find "$@" -printf "%y %#m %U %G %s %T@ %p\\0%l\\0"'
_RSYNC_EXIT = {
    1: "a syntax or usage error",
    3: "errors selecting input/output files or directories",
    5: "an error starting the client-server protocol",
    10: "an error in socket I/O",
    11: "an error in file I/O",
    12: "the connection to the backup host broke (error in the rsync protocol data stream)",
    23: "a partial transfer (some files could not be copied)",
    24: "files vanished while they were copied",
    30: "a timeout while waiting for the backup host",
    35: "a timeout waiting for the backup host's rsync",
    255: "the SSH connection to the backup host failed",
}


# --- rsync ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RsyncResult:
    """How one rsync run ended and how much it sent."""

    exit_code: int
    bytes_sent: int
    output: str


def _stats_number(output: str, label: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith(label):
            digits = "".join(ch for ch in line.split(":", 1)[1].split()[0] if ch.isdigit())
            return int(digits or 0)
    return 0


def rsync_run(
    ctx: OperationContext | None,
    conn: HostConnection,
    argv: list[str],
    *,
    message: str,
    allow_vanished: bool = False,
    backup_host_name: str = "the backup host",
) -> RsyncResult:
    """Run rsync on ``conn``; wait while the backup host's rrsync is busy with another copy of
    the same app host (it allows one at a time per directory); readable errors otherwise."""
    wait_until = time.monotonic() + float(settings.PANEL_BACKUP_RRSYNC_BUSY_WAIT)
    while True:
        result = conn.run(
            argv,
            ok_codes=range(256),
            timeout=settings.PANEL_BACKUP_RSYNC_TIMEOUT,
            message=message,
        )
        text = result.stderr + result.stdout
        if result.exit_code != 0 and "Another instance of rrsync" in text:
            if time.monotonic() > wait_until:
                raise OperationFailed(
                    f"{backup_host_name} kept refusing the copy: another copy of the same app "
                    "host was running the whole time."
                )
            if ctx is not None:
                ctx.step(
                    f"{backup_host_name} is busy with another copy of this app host; waiting",
                    level="debug",
                )
                ctx.check_cancelled()
            time.sleep(3)
            continue
        break
    ok = result.exit_code == 0 or (allow_vanished and result.exit_code == 24)
    if not ok:
        reason = _RSYNC_EXIT.get(result.exit_code, f"exit code {result.exit_code}").replace(
            "the backup host", backup_host_name
        )
        if "No space left on device" in text:
            reason = f"{backup_host_name}'s disk is full (No space left on device)"
        detail = (result.stderr.strip() or result.stdout.strip())[-400:]
        raise OperationFailed(
            f"Copying with rsync failed: {reason} (rsync exit {result.exit_code}). {detail}"
        )
    return RsyncResult(
        result.exit_code, _stats_number(result.stdout, "Total bytes sent"), result.stdout
    )


def rsync_base(app_host: Host) -> list[str]:
    """rsync options shared by every copy between an app host and its backup host."""
    argv = [
        "rsync",
        "-aH",
        "--numeric-ids",
        "--stats",
        f"--timeout={int(settings.PANEL_BACKUP_RSYNC_IO_TIMEOUT)}",
        "-e",
        shlex.join(host_backup_ssh_argv(app_host)),
    ]
    if settings.PANEL_BACKUP_RSYNC_BWLIMIT:
        argv.append(f"--bwlimit={int(settings.PANEL_BACKUP_RSYNC_BWLIMIT)}")
    return argv


def rsync_remote(app_host: Host, path: str) -> str:
    """``path`` on the app host's backup host, as rsync's remote argument."""
    backup = app_host.backup_host
    assert backup is not None
    return f"{backup.ssh_user}@{backup.peer_address}:{path}"


# --- manifests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of ``manifest.stat``."""

    kind: str
    mode: str
    uid: int
    gid: int
    size: int
    mtime: int
    target: str

    def comparable(self) -> tuple:
        # Directory sizes and times depend on the file system and on rsync's order of work.
        if self.kind == "d":
            return (self.kind, self.mode, self.uid, self.gid)
        if self.kind == "l":
            return (self.kind, self.uid, self.gid, self.target)
        return (self.kind, self.mode, self.uid, self.gid, self.size, self.mtime)


# rrsync -munge makes the backup host store a pushed symlink's target behind this prefix (so it
# leads nowhere there); pulling through rrsync -munge takes it off again.
MUNGE_PREFIX = "/rsyncd-munged/"


def stat_parse(text: str) -> dict[str, Entry]:
    """``manifest.stat`` text as {path: Entry}; symlink targets as the instance sees them."""
    fields = text.split("\0")
    entries: dict[str, Entry] = {}
    for i in range(0, len(fields) - 1, 2):
        parts = fields[i].split(" ", 6)
        if len(parts) < 7:
            continue
        kind, mode, uid, gid, size, mtime, path = parts
        target = fields[i + 1]
        if kind == "l":
            target = target.removeprefix(MUNGE_PREFIX)
        entries[path] = Entry(kind, mode, int(uid), int(gid), int(size), int(float(mtime)), target)
    return entries


def stat_differences(source: dict[str, Entry], copy: dict[str, Entry]) -> list[str]:
    """Paths that one side lacks or whose type, owner, mode, size or mtime differ."""
    paths = set(source) | set(copy)
    return sorted(
        p
        for p in paths
        if p not in source or p not in copy or source[p].comparable() != copy[p].comparable()
    )


def manifest_compute(
    conn: HostConnection, base: str, entries: tuple[str, ...] = POINT_ENTRIES
) -> tuple[str, str]:
    """The ``manifest.sha256`` and ``manifest.stat`` texts of a point's ``entries`` under
    ``base`` on ``conn``'s host."""
    sha = conn.run(["sh", "-c", _SHA_SCRIPT, "sh", base, *entries], record=False).stdout
    return sha, stat_read(conn, base, entries)


def stat_read(conn: HostConnection, base: str, entries: tuple[str, ...] = POINT_ENTRIES) -> str:
    """The ``manifest.stat`` text of a point's ``entries`` under ``base`` on ``conn``'s host."""
    return conn.run(["sh", "-c", _STAT_SCRIPT, "sh", base, *entries], record=False).stdout


def manifest_check(bconn: HostConnection, directory: str) -> list[str]:
    """Check every file of a point against its ``manifest.sha256`` on the backup host; the
    paths that do not match (empty when the point is intact)."""
    result = bconn.run(
        [
            "sh",
            "-c",
            'cd "$1" && sha256sum --check --strict --quiet manifest.sha256',
            "sh",
            directory,
        ],
        ok_codes=range(256),
        timeout=settings.PANEL_BACKUP_VERIFY_TIMEOUT,
        message=f"Verified {directory} against its checksum manifest",
    )
    if result.exit_code == 0:
        return []
    bad = [
        line.rsplit(":", 1)[0].removeprefix("sha256sum: ")
        for line in (result.stdout + result.stderr).splitlines()
        if "FAILED" in line or "No such file" in line
    ]
    return bad or [f"(sha256sum exit {result.exit_code}: {result.stderr.strip()[-200:]})"]


def _safe_entry(path: str) -> bool:
    """A path of the point's own tree (``home/...`` or the dump) with no way out of it."""
    parts = path.split("/")
    return (
        parts[0] in POINT_ENTRIES
        and ".." not in parts
        and "" not in parts
        and not any(ch in path for ch in "\0\n")
    )


def paths_remove(bconn: HostConnection, directory: str, paths: list[str]) -> None:
    """Remove entries of a point being built (never anything outside ``directory``)."""
    safe = [p for p in paths if _safe_entry(p)]
    for i in range(0, len(safe), 500):
        bconn.run(
            [
                "sh",
                "-c",
                'd="$1"; shift; for p in "$@"; do rm -rf --one-file-system -- "$d/$p"; done',
                "sh",
                directory,
                *safe[i : i + 500],
            ],
            record=False,
        )
