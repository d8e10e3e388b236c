"""The notification models moved to the ``notifications`` app. Only Django's idea of them
changes here: the tables stay, with their rows, and ``notifications`` 0001 takes them over."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_sealed_totp_device")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="NotificationDelivery"),
                migrations.DeleteModel(name="NotificationEvent"),
                migrations.DeleteModel(name="NotificationPreference"),
            ],
            database_operations=[],
        )
    ]
