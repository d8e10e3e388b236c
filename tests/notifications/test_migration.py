"""Moving the notification models out of the tenants app keeps every row: a database migrated
before the move keeps its preferences, events and deliveries, now read by the new app."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType

from notifications.models import NotificationDelivery, NotificationEvent, NotificationPreference
from tests.support.migrations import migrate_to, migrate_to_latest, pending_migrations

BEFORE = [("tenants", "0005_sealed_totp_device"), ("notifications", None)]
AFTER = [("tenants", "0006_notifications_moved"), ("notifications", "0001_initial")]


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_the_move_are_the_new_apps_rows_after_it():
    old = migrate_to(BEFORE)
    try:
        Tenant = old.get_model("tenants", "Tenant")
        acme = Tenant.objects.create(name="Acme", slug="acme", contact_email="ops@acme.example")
        old.get_model("tenants", "NotificationPreference").objects.create(
            tenant=acme, recipients="ops@acme.example", events=["backup.failed"]
        )
        event = old.get_model("tenants", "NotificationEvent").objects.create(
            event="backup.failed",
            tenant=acme,
            scope=f"tenant:{acme.pk}",
            dedupe_key="k",
            subject="s",
        )
        old.get_model("tenants", "NotificationDelivery").objects.create(
            notification=event, tenant=acme, channel="email", destination="ops@acme.example"
        )
        migrate_to(AFTER)
    finally:
        # AFTER alone leaves provisioning 0006+ (which depend on tenants 0006) unapplied.
        migrate_to_latest()
    # the suite after this test needs every later migration (provisioning 0006 once was not)
    assert pending_migrations() == []

    pref = NotificationPreference.objects.get()
    assert pref.tenant_id == acme.pk and pref.events == ["backup.failed"]
    moved = NotificationEvent.objects.get()
    assert moved.pk == event.pk and moved.dedupe_key == "k"
    assert NotificationDelivery.objects.get().notification_id == event.pk
    # permissions given on the old models stay attached: their content types moved with them
    assert not ContentType.objects.filter(app_label="tenants", model="notificationevent").exists()
    assert ContentType.objects.filter(app_label="notifications", model="notificationevent").exists()
