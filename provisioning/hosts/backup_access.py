"""How an app host reaches its backup host: its own key, restricted on the backup host to
rsync into its incoming area and out of its points (``backups`` uses these to push and pull).
"""

from __future__ import annotations

import re

from panel.operations import OperationFailed
from provisioning.hosts.connection import host_peer_ssh_port
from provisioning.models import Host
from provisioning.remote import HostConnection

# The app host's own key for pushing backups (under its data root, so it survives rebuilds).
BACKUP_KEY = ".ssh/backup_ed25519"
BACKUP_KNOWN_HOSTS = ".ssh/known_hosts_backup"
# The forced command of every app host's backup key on a backup host (see
# backup_access_line): pulls (rsync --sender) go to a read-only rrsync on the host's points,
# everything else to a write-only rrsync on its incoming area, with --ignore-existing forced so
# no session can change a file that already exists there (the base copy shares its inodes with
# committed points). Each rrsync checks the command itself; this only picks which one.
BACKUP_FORCED_COMMAND = "/usr/local/sbin/panel-backup-rsync"
BACKUP_FORCED_SCRIPT = """#!/bin/sh
# Installed by the panel: forced command of app hosts' backup keys (authorized_keys).
# Usage: panel-backup-rsync RRSYNC READ_ROOT WRITE_ROOT [WAL_ROOT]
set -eu
rrsync="$1"; read_root="$2"; write_root="$3"; wal_root="${4:-}"
last=${SSH_ORIGINAL_COMMAND##* }
case "${SSH_ORIGINAL_COMMAND:-}" in
  "rsync --server --sender "*)
    exec "$rrsync" -ro -munge "$read_root" ;;
esac
case "${SSH_ORIGINAL_COMMAND:-}" in "rsync --server "*) ;; *) last="" ;; esac
case "$last" in
  /wal/*|/wal-partial/*)
    # Streamed WAL: its own write root, without rrsync's single-run lock, so a long home push
    # never delays it (the lock guards the incoming points while the panel commits them).
    if [ -z "$wal_root" ]; then
      echo "panel-backup-rsync: no WAL area for this key; provision the app host again" >&2
      exit 1
    fi
    # WAL stays where it was pushed (the archive itself): no option that deletes there.
    case "$SSH_ORIGINAL_COMMAND" in
      *" --del"*|*" --backup"*)
        echo "panel-backup-rsync: the WAL area takes no --delete or --backup" >&2
        exit 1 ;;
    esac
    SSH_ORIGINAL_COMMAND="rsync --server --ignore-existing ${SSH_ORIGINAL_COMMAND#rsync --server }"
    export SSH_ORIGINAL_COMMAND
    exec "$rrsync" -wo -munge -no-lock "$wal_root" ;;
esac
case "${SSH_ORIGINAL_COMMAND:-}" in
  "rsync --server "*)
    SSH_ORIGINAL_COMMAND="rsync --server --ignore-existing ${SSH_ORIGINAL_COMMAND#rsync --server }"
    export SSH_ORIGINAL_COMMAND
    exec "$rrsync" -wo -munge "$write_root" ;;
  *)
    echo "panel-backup-rsync: only rsync to or from the backup area is allowed" >&2
    exit 1 ;;
esac
"""
# What rrsync says when another transfer into the same directory holds its lock.
RRSYNC_BUSY = "Another instance of rrsync is already accessing this directory"


def host_backup_dir(app_host: Host) -> str:
    """Where ``app_host`` pushes its backups on its backup host (its restricted rsync root)."""
    if app_host.backup_host is None:
        raise ValueError(f"{app_host.name} has no backup host")
    return f"{app_host.backup_host.data_root}/hosts/{app_host.name}"


def host_backup_push_dir(app_host: Host) -> str:
    """The app host's incoming area on its backup host: its write-only rsync root. Committed
    points live outside it (in :func:`host_backup_dir`), where only the panel writes."""
    if app_host.backup_host is None:
        raise ValueError(f"{app_host.name} has no backup host")
    return f"{app_host.backup_host.data_root}/incoming/{app_host.name}"


def host_backup_wal_dir(app_host: Host) -> str:
    """The app host's WAL area on its backup host (the write-only root of its streamed WAL,
    ``wal/<instance>/`` and ``wal-partial/<instance>/``), apart from the incoming points."""
    if app_host.backup_host is None:
        raise ValueError(f"{app_host.name} has no backup host")
    return f"{app_host.backup_host.data_root}/wal-incoming/{app_host.name}"


def backup_access_line(app_host: Host, *, rrsync: str, sources: list[str], public_key: str) -> str:
    """The ``authorized_keys`` line of ``app_host``'s backup key on its backup host.

    ``restrict`` (no pty, forwarding or agent), ``from=`` the app host's own addresses, and a
    forced command that runs rrsync read-only on the host's points or write-only (with
    ``--ignore-existing``) into its incoming area, both with ``-munge`` so a pushed symlink
    leads nowhere on the backup host.
    """
    read_root, write_root = host_backup_dir(app_host), host_backup_push_dir(app_host)
    wal_root = host_backup_wal_dir(app_host)
    for value in (rrsync, read_root, write_root, wal_root, *sources):
        if not re.fullmatch(r"[A-Za-z0-9._:/@%-]+", value):
            raise OperationFailed(
                f"Refusing an unusual path or address in authorized_keys: {value!r}"
            )
    command = " ".join([BACKUP_FORCED_COMMAND, rrsync, read_root, write_root, wal_root])
    return (
        f'restrict,from="{",".join(sources)}",command="{command}" {public_key} '
        f"panel-backup@{app_host.name}"
    )


def backup_peer_addresses(bconn: HostConnection, app_host: Host) -> list[str]:
    """The addresses ``app_host`` connects from, as its backup host resolves its peer name."""
    name = app_host.peer_address
    out = bconn.run(
        ["getent", "ahosts", name],
        ok_codes=range(256),
        message=f"Resolve {name} on the backup host",
    ).stdout
    found = sorted({line.split()[0] for line in out.splitlines() if line.split()})
    if not found:
        raise OperationFailed(
            f"The backup host cannot resolve {name}, the address {app_host.name} connects "
            "from; its backup key is only accepted from there."
        )
    return found


def host_backup_ssh_argv(app_host: Host) -> list[str]:
    """The ``ssh`` command (run on ``app_host``) that reaches its backup host with the app host's
    restricted key and the backup host's pinned key; give it to ``rsync -e``."""
    backup = app_host.backup_host
    if backup is None:
        raise ValueError(f"{app_host.name} has no backup host")
    root = app_host.data_root
    return [
        "ssh",
        "-i",
        f"{root}/{BACKUP_KEY}",
        "-p",
        str(host_peer_ssh_port(backup)),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={root}/{BACKUP_KNOWN_HOSTS}",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=10",
    ]


def host_backup_rsync_destination(app_host: Host, path: str = "") -> str:
    """``user@peer:path`` for rsync; ``path`` is relative to :func:`host_backup_dir`."""
    backup = app_host.backup_host
    if backup is None:
        raise ValueError(f"{app_host.name} has no backup host")
    return f"{backup.ssh_user}@{backup.peer_address}:{path}"
