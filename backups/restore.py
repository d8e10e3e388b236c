"""Bringing a backup point back: in place, into a new instance, or into a scratch instance for
a drill. Each restore first checks the point against its manifest on the backup host.

In place: a safety backup of the current state, stop the app, restore the dump into a fresh
database next to the live one, pull home back with ``rsync --delete`` and numeric owners,
swap the databases by renaming, start, wait for RUNNING. If anything fails after the app was
stopped, the previous database is renamed back, home is pulled from the safety point and the
instance is started again; the operation says what happened.

Cancelling: a cancel takes effect at the next command. Before the app is stopped nothing was
changed and the restore just stops; after that, the cancel is treated like a failure: the
roll-back runs inside ``ctx.uncancellable()`` (a cancel, a soft time limit or any other error
never interrupts it) and the instance ends running on its previous state. Clean-up of staged
copies and of drills' scratch instances is uncancellable as well. Only a lost lease (the
reaper ended the operation) stops a roll-back, since the target may be another operation's.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import unescape as xml_unescape

from django.conf import settings
from django.utils import timezone

from backups.dump import RESTORE_DUMP_FILE, compose_argv, db_wait_ready, running_services
from backups.models import Backup, BackupKind, PointDatabase
from backups.policies import default_mode
from backups.store import DUMP_FILE, PointStore, store_of
from backups.take import backup_take
from backups.transfer import manifest_check, rsync_base, rsync_remote, rsync_run
from panel.operations import (
    OperationCancelled,
    OperationContext,
    OperationFailed,
    OperationFenced,
    failure_words,
)
from provisioning.compose import compose_render, instance_dir
from provisioning.homefiles import home_db_config_point
from provisioning.hosts import host_connection
from provisioning.models import AtlassianInstance, Host, InstanceHealth
from provisioning.ports import HostPortsExhausted, host_ports_in_use, instance_host_port_allocate
from provisioning.remote import HostConnection, RemoteError
from provisioning.rollout import instance_probe, owned_dirs_create, wait_running

_IDENT_RE = re.compile(r"\A[a-z_][a-z0-9_]{0,62}\Z")

# Where each product keeps its base URL (the stand-ins keep it the same way).
BASE_URL_UPDATE: dict[str, str] = {
    "jira": "UPDATE propertystring SET propertyvalue = :'new_url' WHERE id IN "
    "(SELECT id FROM propertyentry WHERE property_key = 'jira.baseurl');",
    "confluence": "UPDATE bandana SET bandanavalue = regexp_replace(bandanavalue, "
    "'<baseUrl>.*?</baseUrl>', '<baseUrl>' || :'new_url_xml' || '</baseUrl>') "
    "WHERE bandanacontext = '_GLOBAL' "
    "AND bandanakey = 'atlassian.confluence.settings';",
    "bitbucket": "UPDATE app_property SET prop_value = :'new_url' WHERE prop_key = 'instance.url';",
    "bamboo": "UPDATE bandana SET serialized_data = CASE WHEN serialized_data LIKE '<string>%' "
    "THEN '<string>' || :'new_url_xml' || '</string>' ELSE :'new_url' END "
    "WHERE bandana_key = 'bamboo.baseUrl';",
    "crowd": "UPDATE cwd_property SET property_value = :'new_url' "
    "WHERE property_key = 'crowd' AND property_name = 'base.url';",
}
# Where each family keeps it, for the reason a restore gives when it is missing.
BASE_URL_WHERE: dict[str, str] = {
    "jira": "property jira.baseurl (propertyentry/propertystring)",
    "confluence": "<baseUrl> of bandana atlassian.confluence.settings",
    "bitbucket": "app_property instance.url",
    "bamboo": "bandana bamboo.baseUrl",
    "crowd": "cwd_property crowd base.url",
}
BASE_URL_READ: dict[str, str] = {
    "jira": "SELECT s.propertyvalue FROM propertyentry e JOIN propertystring s ON s.id = e.id "
    "WHERE e.property_key = 'jira.baseurl';",
    "confluence": "SELECT substring(bandanavalue from '<baseUrl>(.*?)</baseUrl>') FROM bandana "
    "WHERE bandanacontext = '_GLOBAL' "
    "AND bandanakey = 'atlassian.confluence.settings';",
    "bitbucket": "SELECT prop_value FROM app_property WHERE prop_key = 'instance.url';",
    "bamboo": "SELECT serialized_data FROM bandana WHERE bandana_key = 'bamboo.baseUrl';",
    "crowd": "SELECT property_value FROM cwd_property WHERE property_key = 'crowd' "
    "AND property_name = 'base.url';",
}


# Application links of a copy would call production (and production's links, if the copy's
# URL were ever registered, would call it back). A copy's links are pointed at a name under
# .invalid, which never resolves (https://www.rfc-editor.org/rfc/rfc6761#section-6.4), keeping
# the original host and path so a person still sees what each link was for.
APPLINK_SUFFIX = ".applink-disabled.invalid"
# Confluence: BANDANA keys applinks.admin.<id>.rpc.url / .display.url, as Atlassian's KB
# edits them: https://ja.confluence.atlassian.com/confkb/how-to-update-an-application-link-url-manually-674988406.html
# Jira/JSM: the same keys as properties (propertyentry + propertystring). No public source
# states this; it is unverified on a real Jira (README "Copies").
# Each URL's scheme, host and port become https://<host>.applink-disabled.invalid; the path
# stays. Rows already neutralised are left alone, so a second run changes nothing.
APPLINK_UPDATE: dict[str, str] = {
    "confluence": "UPDATE bandana SET bandanavalue = regexp_replace(bandanavalue, "
    "'https?://([^/:<>\"[:space:]]+)(:[0-9]+)?', 'https://\\1.applink-disabled.invalid', 'g') "
    "WHERE (bandanakey LIKE 'applinks.admin.%.rpc.url' "
    "OR bandanakey LIKE 'applinks.admin.%.display.url') "
    "AND bandanavalue NOT LIKE '%.applink-disabled.invalid%';",
    "jira": "UPDATE propertystring SET propertyvalue = regexp_replace(propertyvalue, "
    "'https?://([^/:<>\"[:space:]]+)(:[0-9]+)?', 'https://\\1.applink-disabled.invalid', 'g') "
    "WHERE id IN (SELECT id FROM propertyentry "
    "WHERE property_key LIKE 'applinks.admin.%.rpc.url' "
    "OR property_key LIKE 'applinks.admin.%.display.url') "
    "AND propertyvalue NOT LIKE '%.applink-disabled.invalid%';",
}
# Answers "<links> <link URLs still pointing at a real host>" (a link has two URL rows).
APPLINK_COUNT: dict[str, str] = {
    "confluence": "SELECT count(DISTINCT split_part(bandanakey, '.', 3)) || ' ' || "
    "count(*) FILTER (WHERE bandanavalue ~ 'https?://' "
    "AND bandanavalue NOT LIKE '%.applink-disabled.invalid%') FROM bandana "
    "WHERE bandanakey LIKE 'applinks.admin.%.rpc.url' "
    "OR bandanakey LIKE 'applinks.admin.%.display.url';",
    "jira": "SELECT count(DISTINCT split_part(e.property_key, '.', 3)) || ' ' || "
    "count(*) FILTER (WHERE s.propertyvalue ~ 'https?://' "
    "AND s.propertyvalue NOT LIKE '%.applink-disabled.invalid%') "
    "FROM propertystring s JOIN propertyentry e ON e.id = s.id "
    "WHERE e.property_key LIKE 'applinks.admin.%.rpc.url' "
    "OR e.property_key LIKE 'applinks.admin.%.display.url';",
}


def _family(product: str) -> str:
    return "jira" if product.startswith("jira") else product


def _ident(name: str) -> str:
    if not _IDENT_RE.match(name):
        raise OperationFailed(f"Refusing an unexpected database identifier {name!r}.")
    return f'"{name}"'


def psql(
    conn: HostConnection,
    instance: AtlassianInstance,
    sql: str,
    *,
    database: str,
    variables: dict[str, str] | None = None,
    message: str = "",
) -> str:
    """Run SQL (on stdin, so psql variables are quoted by psql itself) in the db container."""
    argv = compose_argv(
        instance,
        "exec",
        "-T",
        "db",
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        instance.db_user,
        "-d",
        database,
    )
    for key, value in (variables or {}).items():
        argv += ["-v", f"{key}={value}"]
    return conn.run(argv, input=sql, timeout=600, message=message or "Ran SQL").stdout


def point_verify(ctx: OperationContext, backup: Backup) -> None:
    """Refuse a point whose files no longer match their manifest on the backup host."""
    store = store_of(backup)
    with host_connection(store.backup_host, ctx=ctx) as bconn:
        if not bconn.exists(store.point(backup.point_name)):
            raise OperationFailed(
                f"Point {backup.point_name} is no longer on {store.backup_host.name}."
            )
        bad = manifest_check(bconn, store.point(backup.point_name))
    if bad:
        raise OperationFailed(
            f"Point {backup.point_name} is damaged on {store.backup_host.name}: {len(bad)} "
            f"files do not match their checksums ({', '.join(bad[:5])}). Choose another point."
        )
    ctx.step(f"Point {backup.point_name} is intact on {store.backup_host.name}")


@dataclass
class Source:
    """Where the target's app host pulls a point from (its own restricted rsync root)."""

    path: str
    staging: str = ""


def source_prepare(ctx: OperationContext, backup: Backup, target: AtlassianInstance) -> Source:
    """The point as the target app host can read it. Another app host of the same backup host
    cannot read the source's directory, so the point is staged into its own with ``cp -al``
    (hard links: instant, no extra space)."""
    store = store_of(backup)
    target_host = target.host
    if target_host.backup_host_id != store.backup_host.pk:
        raise OperationFailed(
            f"{target_host.name} backs up to "
            f"{target_host.backup_host.name if target_host.backup_host else 'no backup host'}, "
            f"but the point is on {store.backup_host.name}; restore onto an app host of "
            f"{store.backup_host.name}."
        )
    if target_host.name == store.app_host_name:
        return Source(store.rsync_path(f"points/{backup.point_name}"))
    target_store = PointStore(store.backup_host, target_host.name, target.name)
    staging = f"{target_store.area}/staging/{backup.point_name}"
    with host_connection(store.backup_host, ctx=ctx) as bconn:
        bconn.run(
            [
                "sh",
                "-c",
                'set -e; rm -rf "$2"; mkdir -p "$(dirname "$2")"; cp -al "$1" "$2"',
                "sh",
                store.point(backup.point_name),
                staging,
            ],
            message=f"Staged the point for {target_host.name} (hard links)",
        )
    return Source(target_store.rsync_path(f"staging/{backup.point_name}"), staging)


def source_release(ctx: OperationContext, backup: Backup, source: Source) -> None:
    """Remove a staged copy (uncancellable clean-up; its failure is reported, not raised)."""
    if not source.staging:
        return
    try:
        with ctx.uncancellable(), host_connection(store_of(backup).backup_host, ctx=ctx) as bconn:
            bconn.run(
                ["rm", "-rf", "--one-file-system", source.staging],
                message=f"Removed the staged copy of point {backup.point_name}",
            )
    except OperationFenced:
        raise
    except Exception as exc:  # noqa: BLE001 - clean-up must not hide the restore's outcome
        ctx.step(f"Could not remove the staged copy {source.staging}: {exc}", level="warning")


def home_pull(
    ctx: OperationContext,
    conn: HostConnection,
    target: AtlassianInstance,
    backup: Backup,
    source: Source,
    *,
    what: str = "",
) -> None:
    """rsync the point's home over the target's home: --delete, numeric owners, hard links."""
    argv = rsync_base(target.host) + [
        "--delete",
        rsync_remote(target.host, f"{source.path}/home/"),
        f"{instance_dir(target)}/home/",
    ]
    rsync_run(
        ctx,
        conn,
        argv,
        backup_host_name=store_of(backup).backup_host.name,
        message=what or f"Pulled home of point {backup.point_name} back (--delete)",
    )


def dump_pull(
    ctx: OperationContext,
    conn: HostConnection,
    target: AtlassianInstance,
    backup: Backup,
    source: Source,
) -> str:
    dest = f"{instance_dir(target)}/{RESTORE_DUMP_FILE}"
    argv = rsync_base(target.host) + [rsync_remote(target.host, f"{source.path}/{DUMP_FILE}"), dest]
    rsync_run(
        ctx,
        conn,
        argv,
        backup_host_name=store_of(backup).backup_host.name,
        message=f"Pulled the database dump of point {backup.point_name}",
    )
    digest = conn.run(["sha256sum", dest], record=False).stdout.split()[0]
    if backup.dump_sha256 and digest != backup.dump_sha256:
        raise OperationFailed("The pulled database dump does not match its checksum.")
    return dest


def dump_restore(
    conn: HostConnection, instance: AtlassianInstance, dump: str, database: str
) -> None:
    """pg_restore the dump (read on the app host, streamed into the container) into an empty
    ``database``; objects end up owned by the instance's database user."""
    conn.run(
        [
            "sh",
            "-c",
            'f="$1"; shift; exec "$@" < "$f"',
            "sh",
            dump,
            *compose_argv(
                instance,
                "exec",
                "-T",
                "db",
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "-U",
                instance.db_user,
                "-d",
                database,
            ),
        ],
        timeout=4 * 3600,
        message=f"Restored the dump into database {database} (pg_restore)",
    )


def base_url_rewrite(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance
) -> str:
    """Point the restored database at the new instance's URL (so the copy never links to the
    production instance). Returns what the product's table now holds."""
    family = _family(instance.product)
    new_url = instance.base_url
    before = psql(
        conn,
        instance,
        BASE_URL_READ[family],
        database=instance.db_name,
        message="Read the base URL the restored database holds",
    ).strip()
    psql(
        conn,
        instance,
        BASE_URL_UPDATE[family],
        database=instance.db_name,
        variables={"new_url": new_url, "new_url_xml": xml_escape(new_url)},
        message=f"Rewrote the base URL to {new_url}",
    )
    after = psql(
        conn,
        instance,
        BASE_URL_READ[family],
        database=instance.db_name,
        message="Read the base URL back",
    ).strip()
    where = BASE_URL_WHERE[family]
    if not before:
        # A copy without a stored base URL would take whatever URL it is first reached by,
        # and its mails and links would say so; the restore does not pretend it is done.
        raise OperationFailed(
            f"{instance.product}: {where} held no base URL in the restored database, so "
            f"{instance.name} would not link to {new_url} but to wherever it is first reached "
            "(the source if its links are followed). Choose a point taken after the source's "
            "setup, or set its base URL and take a new point."
        )
    if not after or new_url not in xml_unescape(after):
        raise OperationFailed(
            f"{instance.product}: {where} holds {after!r} after the rewrite, not {new_url}; "
            f"{instance.name} would keep linking elsewhere."
        )
    ctx.step(f"Base URL {before} -> {after}")
    return after


def applinks_neutralise(
    ctx: OperationContext, conn: HostConnection, target: AtlassianInstance
) -> int | None:
    """Point the restored database's application links at ``<host>.applink-disabled.invalid``
    so the copy never calls (or is trusted by) the production instances it was linked to.

    Returns how many links were found, or None for a product whose links stay manual."""
    family = _family(target.product)
    if family not in APPLINK_UPDATE:
        # Bitbucket, Bamboo and Crowd: no public source says where they keep their links.
        ctx.step(
            f"{target.get_product_display()} keeps its application links as they were in the "
            "point: remove or repoint them by hand (Administration > Application links) "
            "before anyone uses the copy",
            level="warning",
        )
        return None
    psql(
        conn,
        target,
        APPLINK_UPDATE[family],
        database=target.db_name,
        message="Pointed the application links at .applink-disabled.invalid",
    )
    counts = psql(
        conn,
        target,
        APPLINK_COUNT[family],
        database=target.db_name,
        message="Counted the application links left pointing at a real host",
    )
    found, live = (int(n) for n in counts.split())
    if live:
        raise OperationFailed(
            f"{live} URL(s) of the {found} application links of {target.name} still point at "
            "a real host after the rewrite; the copy would call production."
        )
    ctx.step(
        f"Neutralised {found} application link(s) (now under {APPLINK_SUFFIX.lstrip('.')})"
        if found
        else "The restored database holds no application links"
    )
    return found


def _host_port_recheck(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance
) -> None:
    """The copy's host port was allocated from the panel's records when the restore was asked
    for; a container the records do not know may publish it on the target host meanwhile (the
    create path asks Docker too). Take another free one before the compose file is written."""
    if instance.host is None or instance.host_port is None:
        return
    busy = host_ports_in_use(conn, instance.host)
    if instance.host_port not in busy:
        return
    taken = instance.host_port
    AtlassianInstance.objects.filter(pk=instance.pk).update(host_port=None)
    instance.host_port = None
    try:
        port = instance_host_port_allocate(instance, instance.host, busy=busy)
    except HostPortsExhausted as exc:
        raise OperationFailed(str(exc)) from exc
    ctx.step(
        f"Host port {taken} is already published on {instance.host.name}; "
        f"{instance.name} takes {port} instead"
    )


def deploy_files(ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance) -> str:
    """Write a new instance's compose project (validated with ``docker compose config``)
    without starting anything; returns the compose file's hash."""
    rendered = compose_render(instance)
    ctx.add_secrets(rendered.secrets)
    conn.run(
        ["mkdir", "-p", rendered.home_dir, rendered.db_dir],
        message="Created the instance directories",
    )
    owned_dirs_create(conn, rendered)
    conn.run(["chmod", "0700", rendered.directory])
    conn.upload(
        f"{rendered.directory}/compose.yml",
        rendered.compose_yaml,
        mode=0o644,
        message="Uploaded the compose file",
    )
    conn.upload(
        f"{rendered.directory}/.env",
        rendered.env_file,
        mode=0o600,
        message="Uploaded the .env (secrets, mode 0600)",
    )
    conn.run(
        compose_argv(instance, "config", "--quiet"),
        timeout=60,
        message="Validated the compose file with docker compose config",
    )
    return rendered.compose_hash


# --- in place -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a finished restore reports."""

    seconds: float
    health: str
    base_url: str = ""


def restore_in_place(
    ctx: OperationContext,
    instance: AtlassianInstance,
    backup: Backup,
    *,
    on_safety: Any = None,
    safety_backup: bool = True,
    on_failure: str = "bring_back",
) -> Outcome:
    """Restore ``backup`` over ``instance`` (the caller holds its lock and set RESTORING).

    ``on_failure="leave_stopped"`` (restoring the point taken before a failed upgrade): if
    the restore fails, the instance is left stopped instead of being brought back, since
    its current database was upgraded by the newer version and the deployed (previous)
    version would be started on it; the error says which database holds what."""
    started = time.monotonic()
    if backup.database == PointDatabase.WAL:  # backups.operations restores it with the WAL
        raise RestoreRefused(
            f"Point {backup.point_name} carries no dump: its database is the WAL archive."
        )
    db = instance.db_name
    staged = f"{db}_restore"
    previous = f"{db}_pre_restore"
    for name in (db, staged, previous):
        _ident(name)
    safety, source = _in_place_prepare(
        ctx, instance, backup, on_safety=on_safety, safety_backup=safety_backup
    )
    ctx.progress(2)
    with host_connection(instance.host, ctx=ctx) as conn:
        try:
            # The last point where a cancel leaves everything as it was.
            ctx.check_cancelled()
        except OperationCancelled as exc:
            source_release(ctx, backup, source)
            raise RestoreCancelled(
                f"Restore cancelled on request before the app was stopped; nothing was changed "
                f"on {instance.name}.",
                changed=False,
            ) from exc
        progress = _SwapProgress()
        try:
            _in_place_swap(ctx, conn, instance, backup, source, progress)
        except OperationFenced:
            # The reaper ended the operation: another one may own the instance now.
            raise
        except BaseException as exc:
            # Any failure, a cancel, a soft time limit: bring the instance back.
            source_release(ctx, backup, source)
            error = _rollback(
                ctx,
                conn,
                instance,
                safety=safety,
                swapped=progress.swapped,
                home_touched=progress.home_touched,
                failure=exc,
                leave_stopped=on_failure == "leave_stopped",
            )
            if not isinstance(exc, Exception):
                raise  # e.g. SystemExit: rolled back, now let the worker go
            raise error from exc
        source_release(ctx, backup, source)
        # Past the point of no return: the restored instance runs; tidy up without a cancel
        # cutting the clean-up short.
        with ctx.uncancellable():
            psql(
                conn,
                instance,
                f"DROP DATABASE IF EXISTS {_ident(previous)};\n",
                database="postgres",
                message=f"Dropped the replaced database {previous}",
            )
            conn.run(["rm", "-f", f"{instance_dir(instance)}/{RESTORE_DUMP_FILE}"], record=False)
        ctx.progress(7)
        _healthy, state, _ = instance_probe(conn, instance)
    return Outcome(seconds=time.monotonic() - started, health=state or "unknown")


@dataclass
class _SwapProgress:
    """How far an in-place restore got: what a roll-back has to undo."""

    home_touched: bool = False
    swapped: bool = False


def _db_running_app_stopped(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance, *, message: str
) -> None:
    """Stop the app and make sure the database runs (and accepts connections)."""
    conn.run(
        compose_argv(instance, "stop", "--timeout", "120", "app"), timeout=300, message=message
    )
    if "db" not in running_services(conn, instance):
        conn.run(
            compose_argv(instance, "up", "--detach", "db"),
            timeout=300,
            message="Started the database",
        )
        db_wait_ready(ctx, conn, instance)


def _in_place_swap(
    ctx: OperationContext,
    conn: HostConnection,
    instance: AtlassianInstance,
    backup: Backup,
    source: Source,
    progress: _SwapProgress,
) -> None:
    """Stop the app, restore the dump into a fresh database next to the live one, pull home
    back, swap the databases by renaming and start the instance. ``progress`` records each
    step past which a roll-back has more to undo."""
    db = instance.db_name
    staged, previous = f"{db}_restore", f"{db}_pre_restore"
    _db_running_app_stopped(ctx, conn, instance, message=f"Stopped the app of {instance.name}")
    ctx.progress(3)
    dump = dump_pull(ctx, conn, instance, backup, source)
    psql(
        conn,
        instance,
        f"DROP DATABASE IF EXISTS {_ident(staged)};\n"
        f"DROP DATABASE IF EXISTS {_ident(previous)};\n"
        f"CREATE DATABASE {_ident(staged)} OWNER {_ident(instance.db_user)};\n",
        database="postgres",
        message=f"Created a fresh database {staged}",
    )
    dump_restore(conn, instance, dump, staged)
    ctx.progress(4)
    ctx.check_cancelled()
    progress.home_touched = True
    home_pull(ctx, conn, instance, backup, source)
    ctx.progress(5)
    psql(
        conn,
        instance,
        _swap_sql(db, staged, previous),
        database="postgres",
        message=f"Swapped in the restored database ({db} kept as {previous})",
    )
    progress.swapped = True
    conn.run(
        compose_argv(instance, "up", "--detach"),
        timeout=900,
        message=f"Started {instance.name}",
    )
    ctx.progress(6)
    wait_running(ctx, conn, instance, first=False)


def _in_place_prepare(
    ctx: OperationContext,
    instance: AtlassianInstance,
    backup: Backup,
    *,
    on_safety: Any,
    safety_backup: bool,
) -> tuple[Backup | None, Source]:
    """Everything before an in-place restore touches the instance: check the point, take the
    safety backup, make the point readable from the instance's host. Returns (safety backup,
    source); a refusal or a cancel here says that nothing was changed."""
    try:
        point_verify(ctx, backup)
        ctx.progress(1, 8)
        safety = None
        if safety_backup:
            ctx.step("Taking a safety backup of the current state first")
            # Bitbucket's home and database must come from one moment, so its safety point is
            # cold like its scheduled ones.
            safety = backup_take(
                ctx, instance, kind=BackupKind.SAFETY, mode=default_mode(instance.product)
            )
            if on_safety is not None:
                on_safety(safety)
        else:
            ctx.step(
                "No safety backup (skipped on request): if the restore fails, only the "
                "previous database can be put back",
                level="warning",
            )
        source = source_prepare(ctx, backup, instance)
    except OperationFenced:
        raise
    except OperationCancelled as exc:
        raise RestoreCancelled(
            f"Restore cancelled on request before it started; nothing was changed on "
            f"{instance.name}.",
            changed=False,
        ) from exc
    except (OperationFailed, RemoteError) as exc:
        raise RestoreRefused(f"{exc} Nothing was changed on {instance.name}.") from exc
    return safety, source


def _terminate_sql(*databases: str) -> str:
    for name in databases:
        _ident(name)
    # Safe: every name matched _IDENT_RE (lowercase letters, digits, underscores) above.
    names = ", ".join(f"'{n}'" for n in databases)
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608
        f"WHERE datname IN ({names}) AND pid <> pg_backend_pid();\n"
    )


def _swap_sql(db: str, staged: str, previous: str) -> str:
    return (
        _terminate_sql(db, staged) + f"ALTER DATABASE {_ident(db)} RENAME TO {_ident(previous)};\n"
        f"ALTER DATABASE {_ident(staged)} RENAME TO {_ident(db)};\n"
    )


class RestoreRefused(OperationFailed):
    """The restore stopped before it changed anything (the point or the safety backup)."""


class RestoreRolledBack(OperationFailed):
    """The restore failed and the instance was brought back to its state before it."""


class RestoreCancelled(OperationCancelled):
    """The restore was cancelled; the instance is as before it (``changed``: it was stopped
    and brought back, so it now runs)."""

    def __init__(self, message: str, *, changed: bool = True) -> None:
        super().__init__(message)
        self.changed = changed


def _rollback(
    ctx: OperationContext,
    conn: HostConnection,
    instance: AtlassianInstance,
    *,
    safety: Backup | None,
    swapped: bool,
    home_touched: bool = True,
    failure: BaseException,
    leave_stopped: bool = False,
) -> Exception:
    """Bring the instance back to the state before the restore; returns the error to raise.
    Without a safety backup only the database can be put back. Runs uncancellable; only a lost
    lease (:class:`OperationFenced`) stops it. ``leave_stopped``: stop it instead (see
    :func:`_leave_stopped`)."""
    with ctx.uncancellable():
        if leave_stopped:
            return _leave_stopped(
                ctx, conn, instance, swapped=swapped, home_touched=home_touched, failure=failure
            )
        return _rollback_steps(
            ctx,
            conn,
            instance,
            safety=safety,
            swapped=swapped,
            home_touched=home_touched,
            failure=failure,
        )


def _rollback_database(conn: HostConnection, instance: AtlassianInstance, *, swapped: bool) -> None:
    """Put the previous database back under the instance's name (once swapped), or drop the
    half-restored one."""
    db = instance.db_name
    staged, previous = f"{db}_restore", f"{db}_pre_restore"
    if swapped:
        psql(
            conn,
            instance,
            _terminate_sql(db, previous) + f"DROP DATABASE IF EXISTS {_ident(staged)};\n"
            f"ALTER DATABASE {_ident(db)} RENAME TO {_ident(staged)};\n"
            f"ALTER DATABASE {_ident(previous)} RENAME TO {_ident(db)};\n"
            f"DROP DATABASE {_ident(staged)};\n",
            database="postgres",
            message="Put the previous database back",
        )
    else:
        psql(
            conn,
            instance,
            f"DROP DATABASE IF EXISTS {_ident(staged)};\n",
            database="postgres",
            message="Dropped the half-restored database",
        )


def _rollback_home(
    ctx: OperationContext,
    conn: HostConnection,
    instance: AtlassianInstance,
    *,
    safety: Backup | None,
    home_touched: bool,
) -> None:
    """Pull home back from the safety backup if the restore had begun to overwrite it."""
    if safety is not None and home_touched:
        source = source_prepare(ctx, safety, instance)
        try:
            home_pull(
                ctx,
                conn,
                instance,
                safety,
                source,
                what=f"Pulled home of the safety backup {safety.point_name} back",
            )
        finally:
            source_release(ctx, safety, source)
    elif not home_touched:
        ctx.step("Home was not touched yet; it stays as it was")


def _leave_stopped(
    ctx: OperationContext,
    conn: HostConnection,
    instance: AtlassianInstance,
    *,
    swapped: bool,
    home_touched: bool,
    failure: BaseException,
) -> Exception:
    """A failed restore of the point taken before a failed upgrade: stop everything and say
    where each state is. Bringing the instance "back" would start the deployed (previous)
    version on the database the newer one upgraded, which the products refuse
    (http://confluence.atlassian.com/display/JIRA/Rolling+Back+a+JIRA+Upgrade restores
    database and home instead)."""
    why = failure_words(failure)
    db = instance.db_name
    staged, previous = f"{db}_restore", f"{db}_pre_restore"
    ctx.step(f"Restore failed: {why} Leaving {instance.name} stopped", level="warning")
    problems = []
    try:
        conn.run(
            compose_argv(instance, "stop", "--timeout", "120"),
            timeout=300,
            message=f"Stopped {instance.name}",
        )
        conn.run(["rm", "-f", f"{instance_dir(instance)}/{RESTORE_DUMP_FILE}"], record=False)
    except OperationFenced:
        raise
    except Exception as exc:  # noqa: BLE001 - reported in the error below
        problems.append(f"stopping it failed too ({exc})")
    if not swapped:
        try:
            if "db" not in running_services(conn, instance):
                conn.run(compose_argv(instance, "up", "--detach", "db"), timeout=300)
                db_wait_ready(ctx, conn, instance)
            psql(
                conn,
                instance,
                f"DROP DATABASE IF EXISTS {_ident(staged)};\n",
                database="postgres",
                message="Dropped the half-restored database",
            )
            conn.run(compose_argv(instance, "stop", "--timeout", "60", "db"), timeout=300)
        except OperationFenced:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the error below
            problems.append(f"database {staged} may be left behind ({exc})")
    where = (
        f"database {previous} holds the upgraded state and {db} the restored point"
        if swapped
        else f"database {db} holds the upgraded state"
    )
    home = "home holds the point's files" if home_touched else "home was not touched"
    return OperationFailed(
        f"Restore failed: {why} {instance.name} was left stopped rather than started on the "
        f"upgraded database: {where}; {home}."
        + (f" Also: {'; '.join(problems)}." if problems else "")
    )


def _rollback_steps(
    ctx: OperationContext,
    conn: HostConnection,
    instance: AtlassianInstance,
    *,
    safety: Backup | None,
    swapped: bool,
    home_touched: bool,
    failure: BaseException,
) -> Exception:
    cancelled = isinstance(failure, OperationCancelled)
    why = failure_words(failure)
    where = f"safety backup {safety.point_name}" if safety else "no safety backup"
    ctx.step(
        f"Restore {'cancelled' if cancelled else 'failed'}: {why} Now bringing {instance.name} "
        f"back to its state before the restore ({where})",
        level="warning",
    )
    previous = f"{instance.db_name}_pre_restore"
    try:
        _db_running_app_stopped(ctx, conn, instance, message="Stopped the app")
        _rollback_database(conn, instance, swapped=swapped)
        _rollback_home(ctx, conn, instance, safety=safety, home_touched=home_touched)
        conn.run(["rm", "-f", f"{instance_dir(instance)}/{RESTORE_DUMP_FILE}"], record=False)
        conn.run(
            compose_argv(instance, "up", "--detach"),
            timeout=900,
            message=f"Started {instance.name} again",
        )
        wait_running(ctx, conn, instance, first=False)
    except OperationFenced:
        raise
    except Exception as second:  # noqa: BLE001 - whatever broke the roll-back is reported:
        # it becomes the operation's error, next to the restore's own failure and where the
        # previous state is kept (the safety backup, the previous database), which the runner
        # could not say from the raw exception.
        return OperationFailed(
            f"Restore {'cancelled' if cancelled else 'failed'}: {why} Bringing the instance "
            f"back also failed: {second} "
            + (
                f"Its state before the restore is in safety backup {safety.point_name}"
                if safety
                else "No safety backup was taken"
            )
            + (f" and its previous database in {previous}" if swapped else "")
            + "."
        )
    if cancelled:
        return RestoreCancelled(
            f"Restore cancelled on request; {instance.name} was brought back to its state "
            "before the restore and is running again."
        )
    if safety is None and home_touched:
        return RestoreRolledBack(
            f"Restore failed: {why} {instance.name} runs again on its previous database; "
            "its home holds the point's files (no safety backup was taken)."
        )
    return RestoreRolledBack(
        f"Restore failed: {why} {instance.name} was brought back to its state before the "
        f"restore{f' (safety backup {safety.point_name})' if safety else ''} and is running again."
    )


# --- into a new instance (and drills) -------------------------------------------------------


# How a copy gets its database: from the point's dump (the default) or, for a restore to a
# time, replayed from a base backup and the archived WAL (backups.wal.database_to_time).
DatabaseBuilder = Callable[[OperationContext, HostConnection, AtlassianInstance], None]


def restore_new(
    ctx: OperationContext,
    target: AtlassianInstance,
    backup: Backup,
    *,
    database: DatabaseBuilder | None = None,
    copy: bool = True,
) -> Outcome:
    """Restore ``backup`` into ``target``, a new instance with its own name, hostname and
    database credentials, whose project does not exist yet. Leaves it running. ``database``
    builds the copy's database instead of the point's dump (it leaves the database running
    under the target's own name, user and password). ``copy=False`` is the instance itself
    brought back on another host (an evacuation): its application links stay as they are."""
    started = time.monotonic()
    point_verify(ctx, backup)
    ctx.progress(1, 7)
    source = source_prepare(ctx, backup, target)
    try:
        with host_connection(target.host, ctx=ctx) as conn:
            _host_port_recheck(ctx, conn, target)
            compose_hash = deploy_files(ctx, conn, target)
            ctx.progress(2)
            home_pull(
                ctx,
                conn,
                target,
                backup,
                source,
                what=f"Copied home of point {backup.point_name} into {target.name}",
            )
            # The copied home still names the source's database (the images write their
            # config file on the first start only): point it at the target's, before it starts.
            home_db_config_point(ctx, conn, target)
            if database is not None:
                ctx.progress(3)
                database(ctx, conn, target)
            elif backup.database == PointDatabase.WAL:
                raise OperationFailed(
                    f"Point {backup.point_name} carries no dump: its database is the WAL archive."
                )
            else:
                dump = dump_pull(ctx, conn, target, backup, source)
                ctx.progress(3)
                conn.run(
                    compose_argv(target, "up", "--detach", "db"),
                    timeout=300,
                    message="Started the new database",
                )
                db_wait_ready(ctx, conn, target)
                dump_restore(conn, target, dump, target.db_name)
            ctx.progress(4)
            base_url = base_url_rewrite(ctx, conn, target)
            if copy:
                applinks_neutralise(ctx, conn, target)
            ctx.progress(5)
            conn.run(
                compose_argv(target, "up", "--detach"),
                timeout=900,
                message=f"Started {target.name}",
            )
            wait_running(ctx, conn, target, first=False)
            conn.run(["rm", "-f", f"{instance_dir(target)}/{RESTORE_DUMP_FILE}"], record=False)
            _healthy, state, _ = instance_probe(conn, target)
    finally:
        source_release(ctx, backup, source)
    if target.pk and AtlassianInstance.objects.filter(pk=target.pk).exists():
        AtlassianInstance.objects.filter(pk=target.pk).update(
            deployed_compose_hash=compose_hash,
            health=InstanceHealth.HEALTHY,
            health_changed_at=timezone.now(),
        )
    return Outcome(seconds=time.monotonic() - started, health=state or "unknown", base_url=base_url)


def scratch_remove(ctx: OperationContext, scratch: AtlassianInstance) -> bool:
    """Remove a drill's scratch instance: containers, networks, volumes and its directory.

    Uncancellable (the scratch copy holds customer data); a failure is reported, not raised."""
    try:
        with ctx.uncancellable(), host_connection(scratch.host, ctx=ctx) as conn:
            directory = instance_dir(scratch)
            if conn.exists(f"{directory}/compose.yml"):
                conn.run(
                    compose_argv(
                        scratch, "down", "--volumes", "--remove-orphans", "--timeout", "10"
                    ),
                    timeout=300,
                    message=f"Removed the scratch instance {scratch.name}",
                )
            conn.run(["rm", "-rf", "--one-file-system", directory], message=f"Removed {directory}")
        return True
    except OperationFenced:
        raise
    except Exception as exc:  # noqa: BLE001 - reported; the drill record says not cleaned up
        ctx.step(f"Could not remove the scratch instance {scratch.name}: {exc}", level="warning")
        return False


def scratch_instance(
    source: AtlassianInstance, backup: Backup, host: Host, name: str
) -> AtlassianInstance:
    """An unsaved instance describing a drill's scratch copy (never listed anywhere)."""
    domain = settings.PANEL_BACKUP_DRILL_DOMAIN
    return AtlassianInstance(
        tenant=source.tenant,
        name=name,
        product=backup.product or source.product,
        version=backup.version or source.version,
        hostname=f"{name}.{domain}",
        context_path=source.context_path,
        host=host,
        heap_min_mb=source.heap_min_mb,
        heap_max_mb=source.heap_max_mb,
        tier=source.tier,
        db_name=name.replace("-", "_"),
        db_user=name.replace("-", "_"),
        db_password=secrets.token_urlsafe(24),
        # Not the source's extra environment: a monitoring agent configured there would report
        # the scratch copy as the customer's production instance.
        extra_env=dict(settings.PANEL_BACKUP_DRILL_EXTRA_ENV or {}),
        **copy_marks(source, backup),
    )


def copy_marks(source: AtlassianInstance, backup: Backup) -> dict[str, Any]:
    """The fields that make a new instance a copy of ``source`` from ``backup``: mail off
    (compose adds the JVM flags) and what it is a copy of, from when, for its page and API."""
    return {
        "outbound_disabled": True,
        "copy_of": source,
        "copy_of_name": source.name,
        "copy_point": backup.pk,
        "copy_point_taken_at": backup.taken_at,
    }
