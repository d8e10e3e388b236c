"""DnsRecord.owned: which records the panel created at the provider (and may replace or delete).

Records published in a zone before this migration were written by the panel (an UPSERT), so
they are marked owned: deleting their instance removes them, as it did before.
"""

from django.db import migrations, models


def mark_published_owned(apps, schema_editor):
    DnsRecord = apps.get_model("certificates", "DnsRecord")
    DnsRecord.objects.filter(zone__isnull=False, status="published").update(owned=True)


class Migration(migrations.Migration):
    dependencies = [
        ("certificates", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="dnsrecord",
            name="owned",
            field=models.BooleanField(
                default=False,
                help_text="The panel created this record at the provider (and may change or "
                "delete it).",
            ),
        ),
        migrations.RunPython(mark_published_owned, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="dnsrecord",
            constraint=models.UniqueConstraint(
                condition=models.Q(("owned", True)),
                fields=("zone", "name", "rtype"),
                name="dns_record_one_owner",
            ),
        ),
    ]
