"""Off-site copies of backup points in S3-compatible object storage (the only boto3 user for
object storage).

For each point the backup host packs ``home`` and the manifests into a compressed tar next to
the point; the panel streams it (and ``db.dump``) from the backup host over SFTP straight into
a multipart upload, so nothing is staged on the panel's disk. Every object is written with
server-side encryption (``AES256``). Lifecycle follows retention: when retention ages a point
out locally, its objects are deleted too, and a bucket lifecycle rule expires anything older
than ``PANEL_BACKUP_S3_MAX_AGE_DAYS`` as a backstop.

Settings: ``PANEL_BACKUP_S3_BUCKET`` (off-site is off without it),
``PANEL_BACKUP_S3_ENDPOINT_URL``, ``PANEL_BACKUP_S3_REGION``, ``PANEL_BACKUP_S3_ACCESS_KEY_ID``,
``PANEL_BACKUP_S3_SECRET_ACCESS_KEY``,
``PANEL_BACKUP_S3_PREFIX`` (default ``panel-backups``), ``PANEL_BACKUP_S3_MAX_AGE_DAYS`` (400).
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from backups.models import Backup, BackupStatus
from backups.store import DUMP_FILE, store_of
from panel.notices import notify, notify_resolved
from panel.operations import OperationContext
from provisioning.hosts import host_connection
from provisioning.models import AtlassianInstance
from provisioning.remote import HostConnection, RemoteError

log = logging.getLogger(__name__)

SSE = {"ServerSideEncryption": "AES256"}
LIFECYCLE_RULE_ID = "panel-backups-backstop"
# What object storage raises: the service's answers (ClientError), the client's own failures
# (no endpoint, no credentials: BotoCoreError) and boto3's transfer errors (Boto3Error).
STORAGE_ERRORS = (BotoCoreError, ClientError, Boto3Error)
# The notice staff get when aged-out copies stay in the bucket (declared by the backups app,
# as backups.services.BACKUP_FAILED).
PRUNE_FAILED_EVENT = "backup.failed"


def offsite_configured() -> bool:
    """Whether off-site copies have somewhere to go (a bucket is configured)."""
    return bool(settings.PANEL_BACKUP_S3_BUCKET)


def offsite_client() -> Any:
    """An S3 client for the configured endpoint, with boto's standard retries."""
    return boto3.client(
        "s3",
        endpoint_url=settings.PANEL_BACKUP_S3_ENDPOINT_URL or None,
        region_name=settings.PANEL_BACKUP_S3_REGION,
        aws_access_key_id=settings.PANEL_BACKUP_S3_ACCESS_KEY_ID or None,
        aws_secret_access_key=settings.PANEL_BACKUP_S3_SECRET_ACCESS_KEY or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def _base_prefix() -> str:
    return str(settings.PANEL_BACKUP_S3_PREFIX).strip("/")


def instance_prefix(instance: AtlassianInstance) -> str:
    """Where the copies of ``instance``'s points live in the bucket."""
    return f"{_base_prefix()}/{instance.tenant.slug}/{instance.name}/"


def _ensure_lifecycle(client: Any, bucket: str) -> None:
    days = int(settings.PANEL_BACKUP_S3_MAX_AGE_DAYS)
    base = _base_prefix()
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": LIFECYCLE_RULE_ID,
                    "Status": "Enabled",
                    "Filter": {"Prefix": f"{base}/"},
                    "Expiration": {"Days": days},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
                }
            ]
        },
    )


def offsite_copy(ctx: OperationContext, backup: Backup) -> None:
    """Upload one committed point (archive + dump), encrypted at rest. A failure is recorded
    on the point and logged as a warning: the local point is good either way."""
    if not offsite_configured():
        ctx.step(
            "Off-site copy is enabled for this instance but no bucket is configured "
            "(PANEL_BACKUP_S3_BUCKET)",
            level="warning",
        )
        Backup.objects.filter(pk=backup.pk).update(offsite_status="not_configured")
        return
    backup = Backup.objects.select_related("instance__tenant", "backup_host", "app_host").get(
        pk=backup.pk
    )
    store = store_of(backup)
    point_dir = store.point(backup.point_name)
    bucket = settings.PANEL_BACKUP_S3_BUCKET
    prefix = f"{instance_prefix(backup.instance)}{backup.point_name}/"
    archive = f"{store.area}/offsite-{backup.point_name}.tar"
    try:
        client = offsite_client()
        _ensure_lifecycle(client, bucket)
        with host_connection(store.backup_host, ctx=ctx) as bconn:
            ext = _point_pack(bconn, point_dir, archive)
            uploads = [
                (f"{archive}.{ext}", f"{prefix}home.tar.{ext}"),
                (f"{point_dir}/{DUMP_FILE}", f"{prefix}{DUMP_FILE}"),
                (f"{point_dir}/manifest.sha256", f"{prefix}manifest.sha256"),
            ]
            try:
                for path, key in uploads:
                    _object_upload(ctx, bconn, client, bucket=bucket, path=path, key=key)
            finally:
                bconn.run(["rm", "-f", f"{archive}.{ext}"], record=False)
    except (RemoteError, OSError, *STORAGE_ERRORS) as exc:
        ctx.step(f"Off-site copy failed: {exc}", level="warning")
        Backup.objects.filter(pk=backup.pk).update(offsite_status="failed")
        return
    except Exception as exc:  # the SFTP stream raises paramiko's own errors
        # (SSHException when the channel drops), which the remote layer does not wrap. The
        # point is committed and good either way, so the copy is marked failed, not the
        # backup; the traceback is logged so that a bug in this code still shows.
        log.exception("off-site copy of %s failed", backup.point_name)
        ctx.step(f"Off-site copy failed: {exc}", level="warning")
        Backup.objects.filter(pk=backup.pk).update(offsite_status="failed")
        return
    Backup.objects.filter(pk=backup.pk).update(offsite_status="copied", offsite_key=prefix)


def _point_pack(bconn: HostConnection, point_dir: str, archive: str) -> str:
    """Pack the point's home and manifests into ``archive.<ext>`` next to it on the backup
    host (zstd where there is one, else gzip), tested before upload; returns the extension."""
    # bash for pipefail: a tar that fails half-way must fail the copy, not leave a truncated
    # archive that compresses fine; the archive is tested before upload.
    packed = bconn.run(
        [
            "bash",
            "-c",
            'set -euo pipefail; umask 077; cd "$1"; '
            'if command -v zstd >/dev/null; then z="zstd -q -T0"; ext=zst; '
            'else z="gzip -c"; ext=gz; fi; '
            "tar --numeric-owner -cf - home manifest.sha256 manifest.stat point.json "
            '| $z > "$2.$ext"; '
            'if [ "$ext" = zst ]; then zstd -q -t "$2.$ext"; else gzip -t "$2.$ext"; fi; '
            'echo "$ext"',
            "sh",
            point_dir,
            archive,
        ],
        timeout=4 * 3600,
        message="Packed the point for the off-site copy",
    )
    return packed.stdout.strip().splitlines()[-1]


def _object_upload(
    ctx: OperationContext,
    bconn: HostConnection,
    client: Any,
    *,
    bucket: str,
    path: str,
    key: str,
) -> None:
    """Stream ``path`` from the backup host (SFTP) into ``key``, encrypted at rest, and check
    the stored size."""
    size = bconn.sftp().stat(path).st_size
    with bconn.sftp().open(path, "rb") as fh:
        fh.prefetch()
        client.upload_fileobj(fh, bucket, key, ExtraArgs=dict(SSE))
    stored = client.head_object(Bucket=bucket, Key=key)
    if stored.get("ContentLength") != size:
        raise OSError(
            f"{key} holds {stored.get('ContentLength')} bytes in the bucket, {size} were sent"
        )
    ctx.step(
        f"Uploaded {key} to s3://{bucket} (server-side encrypted, AES256; "
        f"{size} bytes, size verified)"
    )


def offsite_prune(
    ctx: OperationContext | None, *, instance: AtlassianInstance, keep: list[str]
) -> list[str]:
    """Delete the objects of points that retention no longer keeps; returns their names."""
    bucket = settings.PANEL_BACKUP_S3_BUCKET
    client = offsite_client()
    prefix = instance_prefix(instance)
    doomed: dict[str, list[str]] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            point = obj["Key"][len(prefix) :].split("/", 1)[0]
            if point not in keep:
                doomed.setdefault(point, []).append(obj["Key"])
    keys = [k for ks in doomed.values() for k in ks]
    for i in range(0, len(keys), 1000):
        client.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
        )
    if doomed:
        Backup.objects.filter(instance=instance, point_name__in=list(doomed)).exclude(
            status=BackupStatus.SUCCEEDED
        ).update(offsite_status="deleted")
        if ctx is not None:
            ctx.step(f"Off-site: deleted the copies of {len(doomed)} aged-out point(s)")
    log.info("off-site prune of %s at %s: %s", instance.name, timezone.now(), sorted(doomed))
    return sorted(doomed)


def offsite_follow_retention(
    ctx: OperationContext | None, *, instance: AtlassianInstance, keep: list[str]
) -> None:
    """Delete the off-site copies of the points retention just aged out (``keep``: the points
    still kept). The local retention stands either way; when the bucket cannot be pruned, the
    copies stay there past the retention the tenant was promised, so staff are told (once,
    until a prune succeeds) and the next prune tries again. Errors that are not the storage's
    propagate to the runner."""
    dedupe_key = f"offsite-prune:{instance.pk}"
    try:
        offsite_prune(ctx, instance=instance, keep=keep)
    except STORAGE_ERRORS as exc:
        log.error("off-site prune of %s failed: %s", instance.name, exc)
        if ctx is not None:
            ctx.step(f"Off-site: could not delete aged-out copies yet: {exc}", level="warning")
        notify(
            event=PRUNE_FAILED_EVENT,
            tenant=None,
            obj=instance,
            dedupe_key=dedupe_key,
            subject=f"Aged-out off-site copies of {instance.name} could not be deleted",
            body=(
                f"Retention aged points of {instance.name} out on its backup host, but their "
                f"copies in s3://{settings.PANEL_BACKUP_S3_BUCKET}/{instance_prefix(instance)} "
                f"could not be deleted: {exc}\n\nThey stay in the bucket until a later backup "
                "prunes it again (or its lifecycle rule expires them)."
            ),
            url=reverse("backups:instance_backups", args=[instance.pk]),
        )
        return
    notify_resolved(event=PRUNE_FAILED_EVENT, tenant=None, dedupe_key=dedupe_key)
