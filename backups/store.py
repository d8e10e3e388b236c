"""Where an instance's backup points live on its backup host, and what is there.

Layout on the backup host::

    <backup data_root>/incoming/<app host>/          the app host's write-only rsync root
        <instance>/incoming/<point>/   being pushed by the app host
        <instance>/base/home/          hard links of the newest point, for --link-dest
    <backup data_root>/hosts/<app host>/             the app host's read-only rsync root
        <instance>/commit/<point>/     moved out of the write root, being verified (panel only)
        <instance>/points/<point>/     committed points
            home/              the product's home directory (numeric owners, modes, hard links)
            db.dump            pg_dump --format=custom of the instance's database
            manifest.sha256    sha256 of every file, computed on the app host
            manifest.stat      type, mode, owner, size and mtime of every entry
            point.json         what the catalogue needs to know about the point

How a point gets there is :mod:`backups.point`; what the catalogue makes of it is
:mod:`backups.catalogue`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from backups.models import Backup, BackupPolicy, BackupStatus
from backups.retention import Point, point_parse
from panel.operations import OperationContext, OperationFailed
from provisioning.models import AtlassianInstance, Host
from provisioning.remote import HostConnection

log = logging.getLogger(__name__)

DUMP_FILE = "db.dump"


@dataclass(frozen=True)
class PointStore:
    """Where one instance's points live on a backup host, seen by the panel and by rsync."""

    backup_host: Host
    app_host_name: str
    instance_name: str

    @property
    def area(self) -> str:
        """Absolute path on the backup host (the panel's own connection): the instance's
        directory in the app host's read-only root, where committed points live."""
        return f"{self.backup_host.data_root}/hosts/{self.app_host_name}/{self.instance_name}"

    @property
    def push_root(self) -> str:
        """The app host's write-only rsync root (its incoming area); rrsync locks it."""
        return f"{self.backup_host.data_root}/incoming/{self.app_host_name}"

    @property
    def push_area(self) -> str:
        return f"{self.push_root}/{self.instance_name}"

    @property
    def base(self) -> str:
        """Hard links of the newest point inside the write root, for ``--link-dest``."""
        return f"{self.push_area}/base"

    def point(self, name: str) -> str:
        return f"{self.area}/points/{name}"

    def incoming(self, name: str) -> str:
        """Where the app host pushes a new point (inside its write-only root)."""
        return f"{self.push_area}/incoming/{name}"

    def commit(self, name: str) -> str:
        """Where the panel verifies a point after moving it out of the write root."""
        return f"{self.area}/commit/{name}"

    def rsync_path(self, sub: str) -> str:
        """A path as the app host's restricted rsync sees it (anchored at its root: the read
        root for pulls, the write root for pushes; both hold one directory per instance)."""
        return f"/{self.instance_name}/{sub}"


def store_for(instance: AtlassianInstance, app_host: Host) -> PointStore:
    """The store the next point of ``instance`` (placed on ``app_host``) goes to."""
    backup_host = effective_backup_host(instance, app_host)
    return PointStore(backup_host, app_host.name, instance.name)


def store_of(backup: Backup) -> PointStore:
    """The store holding ``backup``'s point."""
    return PointStore(backup.backup_host, backup.app_host.name, backup.instance.name)


def effective_backup_host(instance: AtlassianInstance, app_host: Host | None = None) -> Host:
    """The backup host of ``instance``: its policy's, else its app host's.

    The app host's key is authorised only on the app host's own backup host, so a policy may
    name another one only once the app host has been provisioned with it.
    """
    app_host = app_host or instance.host
    if app_host is None:
        raise OperationFailed(f"{instance.name} is not placed on an app host.")
    policy = BackupPolicy.objects.filter(instance=instance).select_related("backup_host").first()
    wanted = policy.backup_host if policy is not None and policy.backup_host_id else None
    current = app_host.backup_host
    if current is None:
        raise OperationFailed(
            f"App host {app_host.name} has no backup host; a platform admin must give it one "
            "and provision it again."
        )
    if wanted is not None and wanted.pk != current.pk:
        raise OperationFailed(
            f"The backup policy names {wanted.name}, but {app_host.name} is provisioned to push "
            f"its backups to {current.name}. Provision {app_host.name} with {wanted.name} as "
            "its backup host first."
        )
    return current


# --- what is there --------------------------------------------------------------------------


def points_present(bconn: HostConnection, store: PointStore) -> list[Point]:
    """The committed points on the backup host, by directory name (anything else is ignored)."""
    result = bconn.run(
        ["sh", "-c", 'ls -1 "$1/points" 2>/dev/null || true', "sh", store.area], record=False
    )
    return [p for p in (point_parse(n.strip()) for n in result.stdout.splitlines()) if p]


def catalogued(instance: AtlassianInstance, store: PointStore) -> QuerySet[Backup]:
    """The catalogue rows of ``instance`` that name a point in ``store``."""
    return Backup.objects.filter(
        instance=instance, backup_host=store.backup_host, app_host__name=store.app_host_name
    ).exclude(point_name="")


def newest_point(
    bconn: HostConnection, *, instance: AtlassianInstance, store: PointStore
) -> Backup | None:
    """The newest committed point of the catalogue that is still on the backup host."""
    on_disk = {p.name for p in points_present(bconn, store)}
    rows = catalogued(instance, store).filter(status=BackupStatus.SUCCEEDED)
    return next((r for r in rows.order_by("-taken_at") if r.point_name in on_disk), None)


# --- disk -----------------------------------------------------------------------------------


def disk_usage(bconn: HostConnection, earlier: list[str], path: str) -> int:
    """New bytes ``path`` occupies beyond ``earlier`` (du counts a hard-linked file once)."""
    out = bconn.run(["du", "-s", "-B1", *earlier, path], record=False).stdout
    line = out.strip().splitlines()[-1] if out.strip() else "0"
    return int(line.split()[0])


def points_disk_usage(bconn: HostConnection, store: PointStore) -> int:
    """Bytes all the committed points of ``store`` occupy together."""
    total = bconn.run(
        ["sh", "-c", 'du -s -B1 "$1/points" | cut -f1', "sh", store.area], record=False
    ).stdout.strip()
    return int(total or 0)


def disk_check(
    ctx: OperationContext,
    bconn: HostConnection,
    app: HostConnection,
    *,
    store: PointStore,
    idir: str,
    dump_bytes: int,
    previous: Backup | None,
) -> None:
    """Refuse a new point when the backup host's disk would pass
    ``PANEL_BACKUP_DISK_MAX_PERCENT`` with it: a full disk fails every tenant's backups on that
    host. The estimate is the dump plus what the newest point added (the whole home for a
    first point)."""
    limit = float(settings.PANEL_BACKUP_DISK_MAX_PERCENT)
    if limit <= 0 or limit >= 100:
        return
    if previous is not None:
        home = max(0, (previous.disk_bytes or 0) - (previous.dump_bytes or 0))
    else:
        out = app.run(["du", "-s", "-B1", f"{idir}/home"], record=False, ok_codes=range(256))
        home = int((out.stdout.split() or ["0"])[0] or 0) if out.exit_code == 0 else 0
    estimate = dump_bytes + home
    out = bconn.run(
        ["df", "-P", "-B1", store.backup_host.data_root], record=False
    ).stdout.splitlines()
    fields = out[-1].split() if len(out) > 1 else []
    if len(fields) < 4 or not fields[1].isdigit():
        raise OperationFailed("Could not read the free space of the backup host's disk.")
    total, used = int(fields[1]), int(fields[2])
    after = 100.0 * (used + estimate) / total if total else 100.0
    if after > limit:
        log.error(
            "backup host %s: disk would be %.1f%% full (limit %.0f%%)",
            store.backup_host.name,
            after,
            limit,
        )
        raise OperationFailed(
            f"Not enough space for a new point: the backup host's disk would be {after:.0f} % "
            f"full with it (limit {limit:g} %, about {estimate} bytes needed). Nothing was "
            "written; a platform admin must free space or move instances to another backup "
            "host."
        )
    ctx.step(
        f"The backup host's disk will be about {after:.0f} % full with this point "
        f"(limit {limit:g} %)",
        level="debug",
    )
