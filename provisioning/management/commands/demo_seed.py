"""Fill an empty panel with demo data: two tenants, users for each role, instances, licenses
and a few finished operations, and print the logins.

It lives in the highest app whose rows it creates (provisioning, over tenants), not in
``panel``: the project package imports no domain app.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP
from provisioning.licenses import license_encode_for_tests
from provisioning.models import AtlassianInstance, License, Operation, OperationStep
from provisioning.services import instance_lock_key
from tenants.models import Membership, Tenant

DEMO_PASSWORD = "demo-panel-2026"  # noqa: S105 - the demo's published login

USERS = [
    # username, groups, memberships [(tenant slug, role)]
    ("alice", [], [("acme", "admin")]),
    ("bob", [], [("acme", "viewer")]),
    ("charlie", [], [("globex", "admin")]),
    ("sam", [SUPPORT_GROUP], []),
    ("pat", [PLATFORM_ADMIN_GROUP], []),
]


class Command(BaseCommand):
    help = "Create demo tenants, users, instances, licenses and operations (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        # The demo's users have a published password and one is a superuser: never on a panel
        # configured for production (a secret key of its own), whatever DEBUG says.
        if not (settings.PANEL_EMBEDDED_DEFAULTS or settings.TESTING):
            raise CommandError(
                "demo_seed only runs on the embedded defaults (no PANEL_SECRET_KEY): it "
                "creates users with a published password."
            )
        self._seed()

    @transaction.atomic
    def _seed(self) -> None:
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
        tenants = {"acme": acme, "globex": globex}
        for username, groups, memberships in USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            if groups:
                # Staff use the Django admin too: platform admins fully, support read-only.
                user.is_staff = True
                user.is_superuser = PLATFORM_ADMIN_GROUP in groups
                user.save(update_fields=["is_staff", "is_superuser"])
            for name in groups:
                user.groups.add(Group.objects.get_or_create(name=name)[0])
            for slug, role in memberships:
                Membership.objects.get_or_create(
                    user=user, tenant=tenants[slug], defaults={"role": role}
                )
        today = timezone.now().date()
        specs = [
            (acme, "acme-jira", "jira-software", "9.12.0", "jira.acme.example", "", "running"),
            (acme, "acme-wiki", "confluence", "8.5.0", "wiki.acme.example", "", "running"),
            (acme, "acme-code", "bitbucket", "8.19.0", "code.acme.example", "", "stopped"),
            (
                globex,
                "globex-jira",
                "jira-servicemanagement",
                "5.12.0",
                "help.globex.example",
                "/jira",
                "running",
            ),
            (globex, "globex-wiki", "confluence", "8.9.0", "wiki.globex.example", "", "failed"),
        ]
        alice = User.objects.get(username="alice")
        for tenant, name, product, version, hostname, ctx, status in specs:
            inst, created = AtlassianInstance.objects.get_or_create(
                name=name,
                defaults={
                    "tenant": tenant,
                    "product": product,
                    "version": version,
                    "hostname": hostname,
                    "context_path": ctx,
                    "status": status,
                    "tier": tenant.default_tier,
                    "db_name": name.replace("-", "_"),
                    "db_user": name.replace("-", "_"),
                    "db_password": secrets.token_urlsafe(24),
                    "health": "healthy" if status == "running" else "unknown",
                },
            )
            if not created:
                continue
            expiry = today + timedelta(days={"acme-jira": 25, "acme-wiki": 200}.get(name, 90))
            key = license_encode_for_tests(
                {
                    "SEN": f"SEN-{abs(hash(name)) % 10_000_000}",
                    "Organisation": tenant.name,
                    "LicenseTypeName": "COMMERCIAL",
                    "NumberOfUsers": "500",
                    "LicenseExpiryDate": expiry.isoformat(),
                    "MaintenanceExpiryDate": expiry.isoformat(),
                    "Evaluation": "false",
                }
            )
            from provisioning.licenses import license_decode

            facts = license_decode(key).as_fields()
            License.objects.create(
                instance=inst, product=product, key=key, decode_status="decoded", **facts
            )
            start = timezone.now() - timedelta(hours=3)
            op = Operation.objects.create(
                kind="instance.create",
                tenant=tenant,
                instance=inst,
                requested_by=alice,
                status="succeeded" if status != "failed" else "failed",
                error=""
                if status != "failed"
                else "Instance did not reach RUNNING within 300 s; "
                "rolled back to the previous version.",
                created_at=start,
                started_at=start,
                finished_at=start + timedelta(minutes=4),
                progress_current=5,
                progress_total=5,
                lock_key=instance_lock_key(inst),
            )
            for i, message in enumerate(
                [
                    "Choosing an app host",
                    "Rendering docker-compose.yml",
                    "Uploading compose file",
                    "docker compose up -d",
                    "Waiting for /status to answer RUNNING",
                ]
            ):
                OperationStep.objects.create(
                    operation=op, message=message, created_at=start + timedelta(seconds=30 * i)
                )
        self.stdout.write(self.style.SUCCESS("Demo data ready. Log in at the panel with:"))
        self.stdout.write(f"  customer (Acme admin):  alice / {DEMO_PASSWORD}")
        self.stdout.write(f"  customer (Acme viewer): bob / {DEMO_PASSWORD}")
        self.stdout.write(f"  customer (Globex):      charlie / {DEMO_PASSWORD}")
        self.stdout.write(f"  support staff:          sam / {DEMO_PASSWORD}")
        self.stdout.write(f"  platform admin:         pat / {DEMO_PASSWORD}")
