"""Off-site copies against a real S3 endpoint (moto_server on 127.0.0.1): each point's dump and
home archive land encrypted (AES256), and the copies of points retention ages out go too."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backups import offsite
from backups.models import Backup, BackupKind, BackupOperationKind, BackupPolicy
from backups.point import point_store
from backups.services import policy_for
from backups.take import backup_record_start
from panel.operations import OperationContext
from provisioning.hosts import host_connection
from provisioning.models import AtlassianInstance, Operation
from tests.support.backup_lab import sh

pytestmark = [pytest.mark.lab, pytest.mark.django_db]

BUCKET = "panel-offsite-test"


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto_server process on a free loopback port, for this module only."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)  # our own local process
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3(settings, moto_endpoint):
    settings.PANEL_BACKUP_S3_ENDPOINT_URL = moto_endpoint
    settings.PANEL_BACKUP_S3_BUCKET = BUCKET
    settings.PANEL_BACKUP_S3_ACCESS_KEY_ID = "testing"
    settings.PANEL_BACKUP_S3_SECRET_ACCESS_KEY = "testing"
    settings.PANEL_BACKUP_S3_REGION = "us-east-1"
    client = offsite.offsite_client()
    client.create_bucket(Bucket=BUCKET)
    return client


def test_off_site_copies_are_encrypted_and_follow_retention(lab, s3):
    inst = AtlassianInstance.objects.create(
        tenant=lab.tenant,
        name=f"b{lab.suffix}-off",
        product="jira-software",
        version="9.12.0",
        hostname=f"b{lab.suffix}-off.lab.example",
        host=lab.app_host,
        status="stopped",
        tier="tier3",
        db_name="off",
        db_user="off",
        db_password="off-password",
    )
    lab.extra_projects.append(inst.name)
    lab.fresh_area(inst)
    idir = f"{lab.app_host.data_root}/instances/{inst.name}"
    sh("rm", "-rf", idir)
    os.makedirs(f"{idir}/home/data")
    policy = policy_for(inst)
    BackupPolicy.objects.filter(pk=policy.pk).update(
        offsite_enabled=True, keep_daily=2, keep_weekly=0, keep_monthly=0
    )
    op = Operation.objects.create(
        kind=BackupOperationKind.BACKUP_CREATE, tenant=lab.tenant, instance=inst, status="running"
    )
    ctx = OperationContext(op)
    start = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    dumps = {}
    with host_connection(lab.app_host) as app, host_connection(lab.backup_host) as bconn:
        for day in range(3):
            Path(f"{idir}/home/data/day.txt").write_text(f"day {day}\n")
            dump = f"PGDMP off-site dump {day}\n".encode()
            Path(f"{idir}/db.dump").write_bytes(dump)
            backup = backup_record_start(
                inst, kind=BackupKind.SCHEDULED, mode="hot", taken_at=start + timedelta(days=day)
            )
            point_store(
                ctx,
                instance=inst,
                backup=backup,
                app=app,
                bconn=bconn,
                dump_sha256=hashlib.sha256(dump).hexdigest(),
                dump_bytes=len(dump),
            )
            offsite.offsite_copy(ctx, backup)
            dumps[backup.point_name] = dump
    kept = lab.points_on_disk(inst)
    assert len(kept) == 2
    prefix = offsite.instance_prefix(inst)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"])
    # the aged-out first point's copies are gone with it; the kept ones are all there
    assert sorted({k[len(prefix) :].split("/")[0] for k in keys}) == kept
    for name in kept:
        dump_key = f"{prefix}{name}/db.dump"
        head = s3.head_object(Bucket=BUCKET, Key=dump_key)
        assert head["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket=BUCKET, Key=dump_key)["Body"].read() == dumps[name]
        archive = next(k for k in keys if k.startswith(f"{prefix}{name}/home.tar"))
        assert s3.head_object(Bucket=BUCKET, Key=archive)["ServerSideEncryption"] == "AES256"
        raw = s3.get_object(Bucket=BUCKET, Key=archive)["Body"].read()
        if archive.endswith(".zst"):
            raw = subprocess.run(["zstd", "-dc"], input=raw, capture_output=True, check=True).stdout
        else:
            import gzip

            raw = gzip.decompress(raw)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            names = tar.getnames()
            assert "home/data/day.txt" in names and "manifest.sha256" in names
    statuses = dict(
        Backup.objects.filter(instance=inst).values_list("point_name", "offsite_status")
    )
    assert sorted(n for n, s in statuses.items() if s == "copied") == kept
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert any(r["ID"] == offsite.LIFECYCLE_RULE_ID and r["Expiration"]["Days"] > 0 for r in rules)


def test_an_off_site_copy_whose_archive_step_fails_is_marked_failed_not_copied(lab, s3):
    from tests.support.backup_lab import backup1

    inst = AtlassianInstance.objects.create(
        tenant=lab.tenant,
        name=f"b{lab.suffix}-pf",
        product="jira-software",
        version="9.12.0",
        hostname=f"b{lab.suffix}-pf.lab.example",
        host=lab.app_host,
        status="stopped",
        tier="tier3",
        db_name="pf",
        db_user="pf",
        db_password="pf-password",
    )
    lab.extra_projects.append(inst.name)
    lab.fresh_area(inst)
    idir = f"{lab.app_host.data_root}/instances/{inst.name}"
    sh("rm", "-rf", idir)
    os.makedirs(f"{idir}/home/data")
    Path(f"{idir}/home/data/a.txt").write_text("a\n")
    dump = b"PGDMP pipefail dump\n"
    Path(f"{idir}/db.dump").write_bytes(dump)
    op = Operation.objects.create(
        kind=BackupOperationKind.BACKUP_CREATE, tenant=lab.tenant, instance=inst, status="running"
    )
    ctx = OperationContext(op)
    with host_connection(lab.app_host) as app, host_connection(lab.backup_host) as bconn:
        backup = backup_record_start(inst, kind=BackupKind.SCHEDULED, mode="hot")
        point_store(
            ctx,
            instance=inst,
            backup=backup,
            app=app,
            bconn=bconn,
            dump_sha256=hashlib.sha256(dump).hexdigest(),
            dump_bytes=len(dump),
        )
    # tar fails (a member is gone) while the compressor after it succeeds
    backup1("rm", "-f", f"{lab.area(inst)}/points/{backup.point_name}/point.json")
    offsite.offsite_copy(ctx, backup)
    backup.refresh_from_db()
    assert backup.offsite_status == "failed"
    prefix = f"{offsite.instance_prefix(inst)}{backup.point_name}/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    assert not any("home.tar" in o["Key"] for o in listed)
    # with the member back, the copy succeeds and every object's size was checked
    backup1("sh", "-c", f"echo '{{}}' > {lab.area(inst)}/points/{backup.point_name}/point.json")
    offsite.offsite_copy(ctx, backup)
    backup.refresh_from_db()
    assert backup.offsite_status == "copied"
    assert "size verified" in "\n".join(s.message for s in op.steps.all())
