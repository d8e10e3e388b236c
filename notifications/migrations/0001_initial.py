"""The notification models, taken over from the tenants app with their tables and rows.

The tables keep their names (``tenants_notification*``), so nothing is created or copied: the
models only enter Django's state here. Existing content types are renamed to this app, so
permissions given to groups (support's view rights) stay attached.
"""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import notifications.models
import panel.crypto

MODELS = ["notificationevent", "notificationdelivery", "notificationpreference"]


def content_types_take_over(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    taken = set(
        ContentType.objects.filter(app_label="notifications", model__in=MODELS).values_list(
            "model", flat=True
        )
    )
    ContentType.objects.filter(app_label="tenants", model__in=set(MODELS) - taken).update(
        app_label="notifications"
    )


def content_types_give_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="notifications", model__in=MODELS).update(
        app_label="tenants"
    )


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0006_notifications_moved"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="NotificationEvent",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("event", models.CharField(max_length=40)),
                        ("scope", models.CharField(max_length=60)),
                        ("dedupe_key", models.CharField(max_length=200)),
                        ("object_type", models.CharField(blank=True, max_length=80)),
                        ("object_id", models.CharField(blank=True, max_length=64)),
                        ("subject", models.CharField(max_length=200)),
                        ("body", models.TextField(blank=True)),
                        ("url", models.URLField(blank=True, max_length=500)),
                        ("times_notified", models.PositiveIntegerField(default=1)),
                        ("first_notified_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("last_notified_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                        ("tenant", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.tenant")),
                    ],
                    options={
                        "db_table": "tenants_notificationevent",
                        "ordering": ["-last_notified_at"],
                        "constraints": [
                            models.UniqueConstraint(fields=("event", "scope", "dedupe_key"), name="notification_event_unique_key"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="NotificationDelivery",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("channel", models.CharField(choices=[("email", "Email"), ("webhook", "Webhook")], max_length=10)),
                        ("destination", models.TextField()),
                        ("payload", models.TextField(blank=True)),
                        ("status", models.CharField(choices=[("pending", "Pending"), ("sending", "Sending"), ("retrying", "Retrying"), ("delivered", "Delivered"), ("failed", "Failed")], default="pending", max_length=10)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("next_attempt_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("last_attempt_at", models.DateTimeField(blank=True, null=True)),
                        ("response_code", models.PositiveIntegerField(blank=True, null=True)),
                        ("last_error", models.TextField(blank=True)),
                        ("delivered_at", models.DateTimeField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("notification", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="deliveries", to="notifications.notificationevent")),
                        ("tenant", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.tenant")),
                    ],
                    options={
                        "db_table": "tenants_notificationdelivery",
                        "ordering": ["-created_at"],
                        "indexes": [
                            models.Index(fields=["status", "next_attempt_at"], name="tenants_not_status_104a2b_idx"),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="NotificationPreference",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("platform", models.BooleanField(default=False)),
                        ("email_enabled", models.BooleanField(default=True)),
                        ("recipients", models.TextField(blank=True)),
                        ("events", models.JSONField(blank=True, default=notifications.models._all_tenant_events)),
                        ("webhook_enabled", models.BooleanField(default=False)),
                        ("webhook_url", models.URLField(blank=True, max_length=500)),
                        ("webhook_secret", panel.crypto.EncryptedTextField(blank=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("tenant", models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="notification_preference", to="tenants.tenant")),
                    ],
                    options={
                        "db_table": "tenants_notificationpreference",
                        "constraints": [
                            models.UniqueConstraint(condition=models.Q(("platform", True)), fields=("platform",), name="notification_preference_one_platform_row"),
                            models.CheckConstraint(condition=models.Q(models.Q(("platform", True), ("tenant__isnull", True)), models.Q(("platform", False), ("tenant__isnull", False)), _connector="OR"), name="notification_preference_tenant_xor_platform"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_take_over, content_types_give_back),
    ]
