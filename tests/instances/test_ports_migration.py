"""The data migration that gives Bitbucket and Bamboo instances made before host ports their
port: the lowest free ones per host, none for other products or deleted rows."""

from __future__ import annotations

import pytest
from django.db.migrations.state import StateApps

from tests.support.migrations import migrate_to, migrated_back_to, pending_migrations

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("provisioning", "0006_instance_host_port")]
AFTER = [("provisioning", "0007_instance_host_port_allocate")]


def test_existing_bitbucket_and_bamboo_rows_get_the_lowest_free_ports_per_host(settings):
    settings.PANEL_INSTANCE_PORT_RANGE = "21000-21999"
    with migrated_back_to(BEFORE) as apps:
        _check_allocation(apps)
    assert pending_migrations() == []


def _check_allocation(apps: StateApps) -> None:
    tenant = apps.get_model("tenants", "Tenant").objects.create(
        name="Acme", slug="acme", contact_email="ops@acme.example"
    )
    host_model = apps.get_model("provisioning", "Host")
    one = host_model.objects.create(name="app-one", role="app", address="127.0.0.11")
    two = host_model.objects.create(name="app-two", role="app", address="127.0.0.12")
    instance_model = apps.get_model("provisioning", "AtlassianInstance")

    def row(name: str, product: str, host: object, **fields: object) -> None:
        instance_model.objects.create(
            tenant=tenant,
            name=name,
            product=product,
            version="1.0.0",
            hostname=f"{name}.acme.example",
            host=host,
            **fields,
        )

    row("git-a", "bitbucket", one)
    row("kept", "bitbucket", one, host_port=21001)
    row("ci", "bamboo", one)
    row("git-b", "bitbucket", two)
    row("jira", "jira-software", one)
    row("gone", "bitbucket", one, status="deleted")
    row("unplaced", "bitbucket", None)

    migrate_to(AFTER)
    ports = dict(instance_model.objects.values_list("name", "host_port"))
    assert ports == {
        "git-a": 21000,
        "kept": 21001,
        "ci": 21002,
        "git-b": 21000,
        "jira": None,
        "gone": None,
        "unplaced": None,
    }
