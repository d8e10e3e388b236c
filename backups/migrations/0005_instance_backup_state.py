"""Each instance's catalogue summary (newest retained point, number of rows), materialised for
the dashboard and the API lists (issue #16), filled here from the catalogue; from then on
``backups.catalogue.instances_backup_state_refresh`` keeps it current."""

from typing import Any

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from django.db.models import Count, Max, Q


def backup_state_fill(apps: Any, schema_editor: Any) -> None:
    instance_model = apps.get_model("provisioning", "AtlassianInstance")
    state_model = apps.get_model("backups", "InstanceBackupState")
    now = django.utils.timezone.now()
    counted = (
        instance_model.objects.annotate(
            n=Count("backups"),
            last_good=Max("backups__taken_at", filter=Q(backups__status="succeeded")),
        )
        .filter(n__gt=0)
        .values_list("pk", "n", "last_good")
    )
    state_model.objects.bulk_create(
        [
            state_model(instance_id=pk, rows=n, last_good_at=last_good, refreshed_at=now)
            for pk, n, last_good in counted.iterator(chunk_size=2000)
        ],
        batch_size=2000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0004_policy_last_run_seconds"),
        ("provisioning", "0009_evacuation"),
    ]

    operations = [
        migrations.CreateModel(
            name="InstanceBackupState",
            fields=[
                (
                    "instance",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="backup_state",
                        serialize=False,
                        to="provisioning.atlassianinstance",
                    ),
                ),
                ("last_good_at", models.DateTimeField(blank=True, null=True)),
                ("rows", models.PositiveIntegerField(default=0)),
                ("refreshed_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RunPython(backup_state_fill, migrations.RunPython.noop),
    ]
