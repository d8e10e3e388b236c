"""Fill an empty panel with demo data and print the logins: two tenants with users for each
role, two hosts, instances with their licenses, health history, backup points and a drill, and
the operations and audit events that made them, each asked for by the person who would have.

It lives in the highest app whose rows it creates (backups, over provisioning and tenants), not
in ``panel``: the project package imports no domain app.

The demo has no machines. Its hosts are stand-ins whose addresses end in ``.invalid``, names
that never resolve (RFC 6761), so nothing the panel sends them reaches anyone. After writing
their history (provisioned, instances rolled out, checked every minute, backed up on schedule)
the seed asks them exactly as the periodic checks do: the host health probe, then the instance
health check until a running instance counts as degraded. Nothing answers, so the panel records
the hosts unreachable and their running instances degraded, in the checks' own words, the state
the demo's workers keep finding (as for a real host that went away). ``scripts/demo --lab`` adds
the lab's real hosts beside them.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction
from django.utils import timezone

from backups.catalogue import instances_backup_state_refresh
from backups.models import (
    Backup,
    BackupKind,
    BackupMode,
    BackupOperationKind,
    BackupPolicy,
    BackupStatus,
    RestoreDrill,
)
from backups.policies import next_run_after, policy_for, policy_retention
from backups.retention import Point, point_name, retention_plan
from certificates import proxy
from certificates.models import Certificate, DnsRecord, ProxySite
from certificates.services.dns_records import dns_publish
from certificates.services.issuance import certificate_for_instance, certificate_placeholder_ensure
from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP
from panel.operations import OperationContext
from provisioning.compose import compose_render, instance_limits, project_name
from provisioning.hosts import host_health_probe
from provisioning.licenses import license_decode, license_encode_for_tests
from provisioning.models import (
    AtlassianInstance,
    Host,
    InstanceHealth,
    InstanceHealthCheck,
    InstanceStatus,
    InstanceUsage,
    License,
    Operation,
    OperationKind,
    OperationStatus,
    OperationStep,
)
from provisioning.monitoring import DEGRADED_AFTER, instances_health_check
from provisioning.remote import keypair_generate
from provisioning.rollout import NEW_INSTANCE_LEFT, status_url
from provisioning.services import host_lock_key, instance_lock_key
from tenants.models import AuditEvent, Membership, Tenant
from tenants.tiers import objectives_for

DEMO_PASSWORD = "demo-panel-2026"  # noqa: S105 - the demo's published login

USERS = [
    # username, groups, memberships [(tenant slug, role)]
    ("alice", [], [("acme", "admin")]),
    ("bob", [], [("acme", "viewer")]),
    ("charlie", [], [("globex", "admin")]),
    ("sam", [SUPPORT_GROUP], []),
    ("pat", [PLATFORM_ADMIN_GROUP], []),
]

# RFC 6761: names under .invalid never resolve, so a check fails at once and reaches nobody.
DEMO_DOMAIN = "demo.invalid"
APP_HOST, BACKUP_HOST = "demo-app1", "demo-backup1"
# Where the audit log says people clicked from (documentation addresses, RFC 5737).
CLIENT_IPS = {"alice": "198.51.100.10", "charlie": "198.51.100.20", "sam": "203.0.113.5"}
CLIENT_IPS["pat"] = "203.0.113.7"
HOST_ENROLLED = timedelta(days=30)
# The last time the stand-ins answered: the seed's checks are the first to find them gone.
GONE_FOR = timedelta(minutes=1)
CHECK_EVERY = timedelta(minutes=1)
ROLLOUT = timedelta(minutes=4)


@dataclass(frozen=True)
class Spec:
    """One demo instance: who created it how long ago, and how it ended up."""

    tenant: str
    name: str
    product: str
    version: str
    hostname: str
    by: str
    age: timedelta | None  # since its create was asked for; None: newer than its first backup
    context_path: str = ""
    outcome: str = "running"  # "running", "stopped" (by its creator, ``stopped`` ago), "failed"
    stopped: timedelta | None = None
    license_days: int | None = 90  # days until the license expires; None: no license
    restarted_by: str = ""  # a support restart, six days ago
    drilled: bool = False  # a restore drill of its newest point passed, eight hours ago


SPECS = (
    Spec(
        "acme",
        "acme-jira",
        "jira-software",
        "9.12.0",
        "jira.acme.example",
        "alice",
        timedelta(days=21),
        license_days=25,
        drilled=True,
    ),
    Spec(
        "acme",
        "acme-wiki",
        "confluence",
        "8.5.0",
        "wiki.acme.example",
        "alice",
        timedelta(days=14),
        license_days=200,
    ),
    Spec(
        "acme",
        "acme-code",
        "bitbucket",
        "8.19.0",
        "code.acme.example",
        "alice",
        timedelta(days=10),
        outcome="stopped",
        stopped=timedelta(days=3),
    ),
    Spec(
        "globex",
        "globex-jira",
        "jira-servicemanagement",
        "5.12.0",
        "help.globex.example",
        "charlie",
        timedelta(days=18),
        context_path="/jira",
        restarted_by="sam",
    ),
    Spec(
        "globex",
        "globex-wiki",
        "confluence",
        "8.9.0",
        "wiki.globex.example",
        "charlie",
        timedelta(days=2),
        outcome="failed",
        license_days=None,
    ),
    Spec(
        "globex",
        "globex-docs",
        "confluence",
        "8.9.0",
        "docs.globex.example",
        "charlie",
        None,
    ),
)


class _StepLines:
    """Takes the lines a publish helper logs, for the create operation's seeded log."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def step(self, message: str, *, level: str = "info", **_: Any) -> None:
        self.lines.append((message, level))

    def add_secrets(self, values: Any) -> None:
        """Nothing is logged from here but the lines themselves."""


@contextmanager
def _connection_tries_quiet() -> Iterator[None]:
    """The remote layer logs each failed connection try; the seed reports one line per host."""
    ssh_log = logging.getLogger("provisioning.remote.ssh")
    level = ssh_log.level
    ssh_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ssh_log.setLevel(level)


class Command(BaseCommand):
    help = "Create demo tenants, users, hosts, instances and their history (once)."

    def handle(self, *args: object, **options: object) -> None:
        # The demo's users have a published password and one is a superuser: never on a panel
        # configured for production (a secret key of its own), whatever DEBUG says.
        if not (settings.PANEL_EMBEDDED_DEFAULTS or settings.TESTING):
            raise CommandError(
                "demo_seed only runs on the embedded defaults (no PANEL_SECRET_KEY): it "
                "creates users with a published password."
            )
        self.users = self._people()
        names = [spec.name for spec in SPECS]
        if not AtlassianInstance.objects.filter(name__in=names).exists():
            self._world()
        app = Host.objects.filter(name=APP_HOST).first()
        if app is not None:
            self._hosts_check(app)
        self.stdout.write(self.style.SUCCESS("Demo data ready. Log in at the panel with:"))
        self.stdout.write(f"  customer (Acme admin):  alice / {DEMO_PASSWORD}")
        self.stdout.write(f"  customer (Acme viewer): bob / {DEMO_PASSWORD}")
        self.stdout.write(f"  customer (Globex):      charlie / {DEMO_PASSWORD}")
        self.stdout.write(f"  support staff:          sam / {DEMO_PASSWORD}")
        self.stdout.write(f"  platform admin:         pat / {DEMO_PASSWORD}")

    # --- people ---------------------------------------------------------------------------

    @transaction.atomic
    def _people(self) -> dict[str, User]:
        acme, _ = Tenant.objects.get_or_create(
            slug="acme",
            defaults={
                "name": "Acme Corp",
                "contact_email": "ops@acme.example",
                "default_tier": "tier1",
            },
        )
        globex, _ = Tenant.objects.get_or_create(
            slug="globex",
            defaults={
                "name": "Globex",
                "contact_email": "it@globex.example",
                "default_tier": "tier2",
            },
        )
        self.tenants = {"acme": acme, "globex": globex}
        users = {}
        hashed = ""  # one hash for all: the password is the same and published anyway
        for username, groups, memberships in USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created:
                hashed = hashed or make_password(DEMO_PASSWORD)
                user.password = hashed
                user.save(update_fields=["password"])
            if groups:
                # Staff use the Django admin too: platform admins fully, support read-only.
                user.is_staff = True
                user.is_superuser = PLATFORM_ADMIN_GROUP in groups
                user.save(update_fields=["is_staff", "is_superuser"])
            for name in groups:
                user.groups.add(Group.objects.get_or_create(name=name)[0])
            for slug, role in memberships:
                Membership.objects.get_or_create(
                    user=user, tenant=self.tenants[slug], defaults={"role": role}
                )
            users[username] = user
        return users

    # --- the world: hosts, instances and their history ------------------------------------

    @transaction.atomic
    def _world(self) -> None:
        self.now = timezone.now()
        self.seen = self.now - GONE_FOR
        self.rng = random.Random(2026)
        enrolled = self.now - HOST_ENROLLED
        backup = self._host(name=BACKUP_HOST, role=Host.Role.BACKUP, at=enrolled)
        app = self._host(
            name=APP_HOST, role=Host.Role.APP, at=enrolled + timedelta(hours=1), backup=backup
        )
        for spec in SPECS:
            self._instance(spec, app)

    def _audit(
        self,
        *,
        by: User | None,
        action: str,
        target: models.Model,
        at: datetime,
        tenant: Tenant | None = None,
        changes: dict[str, Any] | None = None,
    ) -> None:
        if tenant is None:
            tenant = target if isinstance(target, Tenant) else getattr(target, "tenant", None)
        AuditEvent.objects.create(
            created_at=at,
            actor=by,
            actor_label=by.get_username() if by else "system",
            tenant=tenant,
            source="ui" if by else "task",
            source_ip=CLIENT_IPS.get(by.get_username()) if by else None,
            action=action,
            target_type=target._meta.label_lower,
            target_id=str(target.pk),
            target_label=str(target)[:200],
            changes=changes or {},
        )

    def _operation(
        self,
        *,
        kind: str,
        by: User | None,
        at: datetime,
        took: timedelta,
        steps: Sequence[str | tuple[str, str]],
        instance: AtlassianInstance | None = None,
        host: Host | None = None,
        error: str = "",
        params: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        lock_key: str | None = None,
    ) -> Operation:
        """A finished operation as the runner leaves it: requested at ``at`` by ``by`` (None:
        the scheduler), its steps spread over ``took``, audited as its request was."""
        started, finished = at + timedelta(seconds=1), at + timedelta(seconds=1) + took
        total = max(1, len(steps) - 1)
        op = Operation.objects.create(
            kind=kind,
            tenant=instance.tenant if instance else None,
            instance=instance,
            host=host,
            requested_by=by,
            status=OperationStatus.FAILED if error else OperationStatus.SUCCEEDED,
            error=error,
            params=params or {},
            result=result or {},
            lock_key=lock_key,
            created_at=at,
            enqueued_at=at,
            started_at=started,
            heartbeat_at=finished,
            finished_at=finished,
            progress_current=total - 1 if error else total,
            progress_total=total,
            attempts=1,
        )
        lines = [(s, "info") if isinstance(s, str) else s for s in steps]
        if error:
            lines.append((error, "error"))  # the runner's last line of a failed operation
        OperationStep.objects.bulk_create(
            OperationStep(
                operation=op,
                created_at=started + took * (i / max(1, len(lines) - 1)),
                level=level,
                message=message,
            )
            for i, (message, level) in enumerate(lines)
        )
        self._audit(
            by=by,
            action=f"operation.request.{kind}",
            target=instance or host or op,
            tenant=op.tenant,
            at=at,
            changes={"operation": str(op.id), "params": params or {}},
        )
        return op

    def _host(self, *, name: str, role: str, at: datetime, backup: Host | None = None) -> Host:
        """A host enrolled and provisioned by pat, as the Hosts page does it, last seen just
        before the seed ran."""
        pat = self.users["pat"]
        panel_key = keypair_generate(f"panel@{name}")
        own_key = keypair_generate("")  # stands in for the host's own SSH key
        fingerprint = own_key.fingerprint
        address = f"{name}.{DEMO_DOMAIN}"
        data_root = "/srv/atlassian" if role == Host.Role.APP else "/srv/backups"
        disk_total = (2000 if role == Host.Role.BACKUP else 500) * 1024**3
        facts: dict[str, Any] = {
            "arch": "x86_64",
            "kernel": "6.1.0-28-amd64",
            "os": "Debian GNU/Linux 12 (bookworm)",
            "os_id": "debian",
            "os_family": "debian",
            "cpu_count": 16 if role == Host.Role.APP else 4,
            "memory_mb": 64302 if role == Host.Role.APP else 7940,
            "disk_total_bytes": disk_total,
            "disk_free_bytes": int(disk_total * 0.62),
            "rsync_version": "3.2.7",
            "provisioned": True,
            "provisioned_at": (at + timedelta(minutes=12)).isoformat(),
            "last_provision_at": (at + timedelta(minutes=12)).isoformat(),
        }
        if role == Host.Role.APP:
            facts.update(docker_version="27.3.1", docker_api_version="1.47")
            facts.update(compose_version="2.29.7", rrsync="/usr/bin/rrsync")
            facts["backup_key_fingerprint"] = keypair_generate("").fingerprint
            if backup is not None:
                facts["backup_target"] = f"{backup.name}:{backup.data_root}/hosts/{name}"
        host = Host.objects.create(
            name=name,
            role=role,
            address=address,
            data_root=data_root,
            backup_host=backup,
            host_key_fingerprint=fingerprint,
            seen_host_key_fingerprint=fingerprint,
            host_key=own_key.public_openssh,
            seen_host_key=own_key.public_openssh,
            ssh_private_key=panel_key.private_openssh,
            ssh_public_key=panel_key.public_openssh,
            status=Host.Status.READY,
            facts=facts,
            cpu_count=facts["cpu_count"],
            memory_mb=facts["memory_mb"],
            disk_total_bytes=facts["disk_total_bytes"],
            disk_free_bytes=facts["disk_free_bytes"],
            last_seen_at=self.seen,
            last_health_at=self.seen,
        )
        Host.objects.filter(pk=host.pk).update(created_at=at)
        label = f"{name} (root@{address}:22)"
        self._audit(
            by=pat,
            action="host.enrol",
            target=host,
            at=at,
            changes={
                "name": name,
                "role": role,
                "address": address,
                "ssh_port": 22,
                "ssh_user": "root",
                "data_root": data_root,
                "private_address": "",
                "backup_host": backup.name if backup else None,
                "fingerprint_given": None,
                "one_time_password_given": True,
                "panel_key": panel_key.fingerprint,
            },
        )
        self._operation(
            kind=OperationKind.HOST_CONNECT,
            by=pat,
            at=at,
            took=timedelta(seconds=2),
            host=host,
            params={"purpose": "enrol"},
            lock_key=host_lock_key(host),
            steps=[
                f"{name} presented host key ssh-ed25519 {fingerprint}",
                (
                    f"Waiting for an administrator to confirm host key {fingerprint} (compare "
                    "it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host).",
                    "warning",
                ),
            ],
            result={"trusted": False, "seen_host_key_fingerprint": fingerprint},
        )
        trusted = at + timedelta(minutes=4)
        self._audit(
            by=pat,
            action="host.trust_key",
            target=host,
            at=trusted,
            changes={"fingerprint": fingerprint, "previous": None},
        )
        self._operation(
            kind=OperationKind.HOST_CONNECT,
            by=pat,
            at=trusted,
            took=timedelta(seconds=4),
            host=host,
            params={"purpose": "trust"},
            lock_key=host_lock_key(host),
            steps=[
                f"{name} presented host key ssh-ed25519 {fingerprint}",
                f"Pinned host key {fingerprint} (it matches the confirmed fingerprint)",
                f"Connected to {label}; host key {fingerprint} matches the pinned key",
                "Install the panel's public key in authorized_keys",
                "The panel's key was installed; the password is forgotten",
                "Log in with the panel's key",
            ],
            result={"trusted": True, "host_key_fingerprint": fingerprint, "key_installed": True},
        )
        tools = (
            ["Docker Engine 27.3.1 answers over SSH (API 1.47)", "Docker Compose 2.29.7"]
            if role == Host.Role.APP
            else ["rsync 3.2.7 and rrsync are installed"]
        )
        self._operation(
            kind=OperationKind.HOST_PROVISION,
            by=pat,
            at=trusted + timedelta(minutes=2),
            took=timedelta(minutes=6),
            host=host,
            lock_key=host_lock_key(host),
            steps=[
                f"Connected to {label}; host key {fingerprint} matches the pinned key",
                f"{name} runs Debian GNU/Linux 12 (bookworm) on x86_64, kernel 6.1.0-28-amd64",
                *tools,
                f"Disk usage of {data_root}",
                f"Provisioned {name}: 5 change(s)",
            ],
            result={"message": f"Provisioned {name}: 5 change(s)"},
        )
        return host

    def _instance(self, spec: Spec, app: Host) -> None:
        tenant = self.tenants[spec.tenant]
        by = self.users[spec.by]
        instance = AtlassianInstance.objects.create(
            tenant=tenant,
            name=spec.name,
            product=spec.product,
            version=spec.version,
            hostname=spec.hostname,
            context_path=spec.context_path,
            tier=tenant.default_tier,
            host=app,
            host_port=20000 if spec.product == "bitbucket" else None,
            db_name=spec.name.replace("-", "_"),
            db_user=spec.name.replace("-", "_"),
            db_password=secrets.token_urlsafe(24),
        )
        instance.host = app
        created = self._created_at(spec, instance)
        running_since = created + ROLLOUT
        self._audit(
            by=by,
            action="instance.create",
            target=instance,
            at=created,
            changes={
                "product": spec.product,
                "version": spec.version,
                "hostname": spec.hostname,
                "context_path": spec.context_path,
                "heap": [instance.heap_min_mb, instance.heap_max_mb],
                "host": None,
            },
        )
        if spec.license_days is not None:
            self._license(instance, by, created + timedelta(minutes=1), spec.license_days)
        self._create_operation(instance, by, created, failed=spec.outcome == "failed")
        fields: dict[str, Any] = {
            "created_at": created,
            "updated_at": running_since,
            "status_changed_at": running_since,
        }
        if spec.outcome == "failed":
            op = Operation.objects.get(instance=instance, kind=OperationKind.INSTANCE_CREATE)
            fields.update(status=InstanceStatus.FAILED, status_reason=op.error)
            fields.update(status_changed_at=op.finished_at, updated_at=op.finished_at)
            AtlassianInstance.objects.filter(pk=instance.pk).update(**fields)
            return
        fields.update(
            status=InstanceStatus.RUNNING,
            health=InstanceHealth.HEALTHY,
            health_changed_at=running_since,
            deployed_compose_hash=compose_render(instance).compose_hash,
            drift="",
            drift_checked_at=self.now - timedelta(minutes=6),
        )
        checked_until = self.seen
        if spec.restarted_by:
            self._restart(instance, self.users[spec.restarted_by], self.now - timedelta(days=6))
        if spec.outcome == "stopped" and spec.stopped is not None:
            stopped_at = self.now - spec.stopped
            self._stop(instance, by, stopped_at)
            checked_until = stopped_at
            fields.update(status=InstanceStatus.STOPPED, health=InstanceHealth.UNKNOWN)
            fields.update(status_changed_at=stopped_at, health_changed_at=stopped_at)
            fields.update(updated_at=stopped_at)
        AtlassianInstance.objects.filter(pk=instance.pk).update(**fields)
        instance.refresh_from_db()
        self._health_history(instance, running_since, checked_until)
        self._backups(instance, app, running_since, stopped_at=checked_until)
        if spec.drilled:
            self._drill(instance, app, self.now - timedelta(hours=8))

    def _created_at(self, spec: Spec, instance: AtlassianInstance) -> datetime:
        """When the create was asked for; a new instance (``age`` None) comes up after its
        policy's last scheduled slot, so its first backup is still ahead (none yet)."""
        if spec.age is not None:
            return self.now - spec.age
        policy = policy_for(instance)  # the dispatcher makes it once the instance runs
        last_slot = next_run_after(policy, self.now - policy.interval)
        while last_slot > self.now:
            last_slot -= policy.interval
        up = min(self.now, max(last_slot + timedelta(seconds=30), self.now - timedelta(hours=1)))
        return up - ROLLOUT

    def _license(self, instance: AtlassianInstance, by: User, at: datetime, days: int) -> None:
        expiry = (at + timedelta(days=days)).date()
        key = license_encode_for_tests(
            {
                "SEN": f"SEN-{zlib.crc32(instance.name.encode()) % 10_000_000}",
                "Organisation": instance.tenant.name,
                "LicenseTypeName": "COMMERCIAL",
                "NumberOfUsers": "500",
                "LicenseExpiryDate": expiry.isoformat(),
                "MaintenanceExpiryDate": expiry.isoformat(),
                "Evaluation": "false",
            }
        )
        decoded = license_decode(key)
        assert decoded is not None  # made by the encoder above
        lic = License.objects.create(
            instance=instance,
            product=instance.product,
            key=key,
            decode_status=License.DecodeStatus.DECODED,
            **decoded.as_fields(),
        )
        License.objects.filter(pk=lic.pk).update(created_at=at)
        self._audit(
            by=by,
            action="license.add",
            target=lic,
            tenant=instance.tenant,
            at=at,
            changes={"instance": instance.name, "decode_status": "decoded", "sen": lic.sen},
        )

    def _connected(self, host: Host) -> str:
        return (
            f"Connected to {host.name} (root@{host.address}:22); host key "
            f"{host.host_key_fingerprint} matches the pinned key"
        )

    def _create_operation(
        self, instance: AtlassianInstance, by: User, at: datetime, *, failed: bool
    ) -> None:
        assert instance.host is not None  # placed above
        host = instance.host
        timeout = settings.PANEL_ROLLOUT_TIMEOUT
        steps: list[str | tuple[str, str]] = [
            f"Choosing an app host with {instance.heap_max_mb + 512} MB free memory",
            f"Placing {instance.name} on host {host.name}",
        ]
        if instance.host_port:
            steps.append(f"Host port {instance.host_port} on {host.name}: {instance.published_url}")
        steps += [
            self._connected(host),
            "Created the instance directories",
            "Uploaded the new compose file",
            "Uploaded the new .env (secrets, mode 0600)",
            "Validated the compose file with docker compose config",
            f"docker compose up -d ({project_name(instance)})",
            f"Waiting up to {timeout:g} s for {status_url(instance)} to answer RUNNING "
            f"(MAINTENANCE is waited for separately, up to "
            f"{settings.PANEL_ROLLOUT_MAINTENANCE_TIMEOUT:g} s)",
            f"{instance.name} is STARTING",
        ]
        if failed:
            # The words the runner writes when a first rollout does not come up.
            error = (
                f"{instance.name} did not answer RUNNING within {timeout:g} s (last state: "
                f"STARTING). {NEW_INSTANCE_LEFT}"
            )
            self._operation(
                kind=OperationKind.INSTANCE_CREATE,
                by=by,
                at=at,
                took=timedelta(seconds=timeout + 40),
                instance=instance,
                lock_key=instance_lock_key(instance),
                steps=steps,
                error=error,
            )
            return
        steps.append(f"{instance.name} answers RUNNING after {ROLLOUT.seconds - 70} s")
        steps += self._publish(instance, at + ROLLOUT - timedelta(seconds=20))
        self._operation(
            kind=OperationKind.INSTANCE_CREATE,
            by=by,
            at=at,
            took=ROLLOUT - timedelta(seconds=2),
            instance=instance,
            lock_key=instance_lock_key(instance),
            steps=steps,
            result={
                "compose_hash": compose_render(instance).compose_hash,
                "version": instance.version,
                "host": host.name,
            },
        )

    def _publish(self, instance: AtlassianInstance, at: datetime) -> list[tuple[str, str]]:
        """What the create's publish hook makes without reaching anyone: the DNS record the
        customer must create (no zone is managed), the self-signed placeholder certificate
        (no ACME CA is configured) and the proxy site serving it. Returns its log lines."""
        log = _StepLines()
        log.step(f"Publishing https://{instance.hostname}{instance.context_path}")
        dns_publish(cast(OperationContext, log), instance)
        cert = certificate_placeholder_ensure(certificate_for_instance(instance))
        config = proxy.site_render(instance, cert)
        ProxySite.objects.update_or_create(
            instance=instance,
            defaults={
                "host": instance.host,
                "certificate": cert,
                "status": ProxySite.Status.DEPLOYED,
                "config": config,
                "config_hash": proxy.config_hash(config),
                "deployed_at": at,
            },
        )
        DnsRecord.objects.filter(instance=instance).update(created_at=at)
        Certificate.objects.filter(pk=cert.pk).update(created_at=at)
        log.step(
            f"Proxy serves https://{instance.hostname}{instance.context_path} with a "
            f"placeholder certificate {cert.serial[:16]}"
        )
        if not settings.PANEL_ACME_DIRECTORY:
            log.step(
                "No ACME CA is configured: the proxy serves a self-signed placeholder.",
                level="warning",
            )
        return log.lines

    def _restart(self, instance: AtlassianInstance, by: User, at: datetime) -> None:
        assert instance.host is not None
        self._operation(
            kind=OperationKind.INSTANCE_RESTART,
            by=by,
            at=at,
            took=timedelta(minutes=3),
            instance=instance,
            lock_key=instance_lock_key(instance),
            steps=[
                self._connected(instance.host),
                f"Restarted {instance.name}",
                f"Waiting up to {settings.PANEL_ROLLOUT_TIMEOUT:g} s for "
                f"{status_url(instance)} to answer RUNNING",
                f"{instance.name} answers RUNNING after 151 s",
            ],
            result={"seconds_to_running": 151.0},
        )

    def _stop(self, instance: AtlassianInstance, by: User, at: datetime) -> None:
        assert instance.host is not None
        self._operation(
            kind=OperationKind.INSTANCE_STOP,
            by=by,
            at=at,
            took=timedelta(seconds=40),
            instance=instance,
            lock_key=instance_lock_key(instance),
            steps=[
                self._connected(instance.host),
                f"Stopped app of {instance.name}",
                f"Stopped db of {instance.name}",
            ],
        )

    def _health_history(
        self, instance: AtlassianInstance, since: datetime, until: datetime
    ) -> None:
        """A passed check (and a resource sample) each minute of the last 24 hours it ran."""
        start = max(since, self.now - timedelta(hours=24))
        if start >= until:
            return
        limits = instance_limits(instance)
        heap = instance.heap_max_mb * 1024**2
        home = {"jira-software": 6, "jira-servicemanagement": 4, "confluence": 9}.get(
            instance.product, 12
        )
        checks, samples = [], []
        at = start + timedelta(seconds=17)
        disk_at = at
        while at <= until:
            ms = int(self.rng.gauss(180, 40)) + (250 if at.hour in (9, 10, 14) else 0)
            checks.append(
                InstanceHealthCheck(
                    instance=instance,
                    checked_at=at,
                    ok=True,
                    state="RUNNING",
                    detail='{"state":"RUNNING"}',
                    response_ms=max(40, ms),
                )
            )
            if at - disk_at >= timedelta(minutes=15):
                disk_at = at
            samples.append(
                InstanceUsage(
                    instance=instance,
                    sampled_at=at,
                    app_cpu_percent=round(max(0.5, self.rng.gauss(22, 9)), 2),
                    app_memory_bytes=int(heap * self.rng.uniform(0.55, 0.8)),
                    app_memory_limit_bytes=limits.app_memory_mb * 1024**2,
                    db_cpu_percent=round(max(0.1, self.rng.gauss(3, 1.5)), 2),
                    db_memory_bytes=int(self.rng.uniform(180, 320) * 1024**2),
                    db_memory_limit_bytes=limits.db_memory_mb * 1024**2,
                    home_bytes=home * 1024**3,
                    db_disk_bytes=int(home * 0.3 * 1024**3),
                    disk_sampled_at=disk_at,
                )
            )
            at += CHECK_EVERY
        InstanceHealthCheck.objects.bulk_create(checks, batch_size=500)
        InstanceUsage.objects.bulk_create(samples, batch_size=500)

    def _backups(
        self, instance: AtlassianInstance, app: Host, since: datetime, *, stopped_at: datetime
    ) -> None:
        """The points its policy took on schedule since it ran, as retention left them, each
        with the scheduler's operation."""
        assert app.backup_host is not None
        policy = policy_for(instance)
        durations = {BackupMode.HOT: timedelta(minutes=3), BackupMode.COLD: timedelta(minutes=5)}
        took = durations.get(BackupMode(policy.mode), timedelta(minutes=4))
        slots, due = [], next_run_after(policy, since)
        while due + took <= self.seen:
            slots.append(due)
            due = next_run_after(policy, due)
        if not slots:
            return
        taken = {point_name(s + timedelta(seconds=35)): s for s in slots}
        plan = retention_plan(
            [Point(name=name, taken_at=s + timedelta(seconds=35)) for name, s in taken.items()],
            policy_retention(policy),
            now=self.seen,
            extra_days=settings.PANEL_BACKUP_EXTRA_KEEP_DAYS,
        )
        size = {"bitbucket": 14, "confluence": 11, "jira-software": 8}.get(instance.product, 5)
        base = size * 1024**3
        for name, due in sorted(taken.items(), key=lambda kv: kv[1]):
            if name not in plan.keep:
                continue
            age = (due - since) / timedelta(days=1)
            logical = int(base + age * 45 * 1024**2)
            cold = policy.mode == BackupMode.COLD
            running = due < stopped_at
            op = self._operation(
                kind=BackupOperationKind.BACKUP_CREATE,
                by=None,
                at=due + timedelta(seconds=20),
                took=took,
                instance=instance,
                lock_key=instance_lock_key(instance),
                params={
                    "kind": BackupKind.SCHEDULED,
                    "mode": policy.mode,
                    "backup_host": str(app.backup_host_id),
                    "app_host": str(app.pk),
                },
                steps=[
                    self._connected(app),
                    *([f"Stopped {instance.name} for a cold backup"] if cold and running else []),
                    f"Dumped database {instance.db_name}",
                    *([f"Started {instance.name} again"] if cold and running else []),
                    f"Copied the home to {app.backup_host.name}",
                    f"Point {name} verified and retained ({plan.keep[name]})",
                ],
                result={"point": name},
            )
            finished = op.finished_at or due
            Backup.objects.create(
                instance=instance,
                operation=op,
                backup_host=app.backup_host,
                app_host=app,
                kind=BackupKind.SCHEDULED,
                mode=policy.mode,
                status=BackupStatus.SUCCEEDED,
                point_name=name,
                label=plan.keep[name],
                taken_at=due + timedelta(seconds=35),
                product=instance.product,
                version=instance.version,
                started_at=op.started_at,
                finished_at=finished,
                duration_seconds=took.total_seconds(),
                downtime_seconds=95.0 if cold and running else 0.0,
                bytes_transferred=int(logical * 0.02) + 60 * 1024**2,
                logical_bytes=logical,
                disk_bytes=int(logical * 0.03),
                file_count=40_000 + int(age * 300),
                dump_bytes=int(logical * 0.08),
                dump_sha256=hashlib.sha256(f"{name}:dump".encode()).hexdigest(),
                manifest_sha256=hashlib.sha256(f"{name}:manifest".encode()).hexdigest(),
                verified_at=finished,
            )
        instances_backup_state_refresh(instance_ids=[instance.pk])
        stored = Backup.objects.filter(instance=instance).aggregate(s=models.Sum("disk_bytes"))
        BackupPolicy.objects.filter(pk=policy.pk).update(
            last_dispatched_at=slots[-1], stored_bytes=stored["s"]
        )

    def _drill(self, instance: AtlassianInstance, app: Host, at: datetime) -> None:
        """A scheduled restore drill of its newest point then, passed well within the RTO."""
        point = (
            Backup.objects.filter(instance=instance, taken_at__lte=at).order_by("-taken_at").first()
        )
        if point is None:
            return
        scratch = f"drill-{hashlib.sha256(instance.name.encode()).hexdigest()[:8]}"
        rto = timedelta(minutes=14, seconds=32)
        op = self._operation(
            kind=BackupOperationKind.BACKUP_DRILL,
            by=None,
            at=at,
            took=rto + timedelta(minutes=2),
            instance=instance,
            lock_key=f"drill:{instance.pk}",
            params={"backup": str(point.pk), "scratch": scratch},
            steps=[
                f"Restoring point {point.point_name} of {instance.name} into scratch instance "
                f"{scratch} on {app.name}",
                self._connected(app),
                f"{scratch} answers RUNNING after {int(rto.total_seconds()) - 240} s",
                f"Drill passed in {rto.seconds // 60} min (RTO objective "
                f"{objectives_for(instance.tier).rto.total_seconds() / 3600:g} h)",
                f"Removed the scratch instance {scratch}",
            ],
            result={"rto_seconds": rto.total_seconds()},
        )
        RestoreDrill.objects.create(
            instance=instance,
            backup=point,
            point_name=point.point_name,
            operation=op,
            tier=instance.tier,
            scratch_name=scratch,
            scratch_host=app,
            status=RestoreDrill.Status.PASSED,
            started_at=op.started_at or at,
            finished_at=op.finished_at,
            rto_seconds=rto.total_seconds(),
            rto_objective_seconds=objectives_for(instance.tier).rto.total_seconds(),
            within_rto=True,
            cleaned_up=True,
        )

    # --- what the stand-ins answer now ----------------------------------------------------

    def _hosts_check(self, app: Host) -> None:
        """Ask the hosts as the periodic checks do and record what they find, so the demo
        starts in the state its workers will keep it in."""
        with _connection_tries_quiet():
            for host in Host.objects.filter(name__in=[APP_HOST, BACKUP_HOST]).select_related(
                "backup_host"
            ):
                host_health_probe(host)
            for _ in range(DEGRADED_AFTER):
                instances_health_check(host_ids=[app.pk])
        for host in Host.objects.filter(name__in=[APP_HOST, BACKUP_HOST]).order_by("role"):
            self.stdout.write(f"Host {host.name}: {host.get_status_display().lower()}")
        self.stdout.write(
            f"  The demo's hosts are stand-ins (*.{DEMO_DOMAIN}, names that never resolve): "
            "the panel finds them unreachable and their running instances degraded, as it "
            "would a real host that went away. `scripts/demo --lab` adds real hosts."
        )
