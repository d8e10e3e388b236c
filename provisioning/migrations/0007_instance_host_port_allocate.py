"""Existing Bitbucket and Bamboo instances get their host port (the lowest free ones of
PANEL_INSTANCE_PORT_RANGE on their host, as provisioning.ports allocates them). Nothing is
published yet: their compose file gains the port on their next rollout, and the drift check
shows the difference until then."""

from typing import Any

from django.conf import settings
from django.db import migrations

PUBLISHING = ("bitbucket", "bamboo")


def host_ports_allocate(apps: Any, schema_editor: Any) -> None:
    instance_model = apps.get_model("provisioning", "AtlassianInstance")
    # Parsed here rather than with provisioning.ports, so later changes to the app's code
    # cannot change what this migration does.
    first, last = (int(p) for p in settings.PANEL_INSTANCE_PORT_RANGE.split("-"))
    live = instance_model.objects.exclude(status="deleted").filter(host__isnull=False)
    taken: dict = {}
    for host_id, port in live.filter(host_port__isnull=False).values_list("host_id", "host_port"):
        taken.setdefault(host_id, set()).add(port)
    for instance in live.filter(product__in=PUBLISHING, host_port__isnull=True).order_by(
        "created_at"
    ):
        used = taken.setdefault(instance.host_id, set())
        port = next((p for p in range(first, last + 1) if p not in used), None)
        if port is None:
            raise RuntimeError(
                f"No free port in {first}-{last} (PANEL_INSTANCE_PORT_RANGE) on the host of "
                f"{instance.name}: widen the range and migrate again."
            )
        used.add(port)
        instance_model.objects.filter(pk=instance.pk).update(host_port=port)


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0006_instance_host_port"),
    ]

    operations = [
        migrations.RunPython(host_ports_allocate, migrations.RunPython.noop),
    ]
