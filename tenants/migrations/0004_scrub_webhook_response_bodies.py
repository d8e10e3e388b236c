"""Failed webhook deliveries once stored up to 300 bytes of the receiver's answer in
``last_error`` (shown to tenant admins): keep only the status code."""

from django.db import migrations


def scrub(apps, schema_editor):
    Delivery = apps.get_model("tenants", "NotificationDelivery")
    rows = Delivery.objects.filter(channel="webhook", last_error__startswith="The receiver answered HTTP ")
    for delivery in rows.iterator():
        if delivery.response_code:
            delivery.last_error = f"The receiver answered HTTP {delivery.response_code}."
        else:
            delivery.last_error = "The receiver refused the delivery."
        delivery.save(update_fields=["last_error"])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_notifications")]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop)]
