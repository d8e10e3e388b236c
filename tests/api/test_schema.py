"""The OpenAPI schema builds with no warnings, and the schema and docs pages are served."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command


def test_the_schema_builds_and_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    for path in (
        "/api/me/",
        "/api/instances/",
        "/api/instances/{id}/upgrade/",
        "/api/operations/{id}/steps/",
        "/api/licenses/",
        "/api/tokens/{id}/revoke/",
    ):
        assert path in schema["paths"], path
    create = schema["paths"]["/api/instances/"]["post"]
    assert "202" in create["responses"]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert schema["paths"]["/api/instances/{id}/"]["get"]["parameters"][0]["schema"] == {
        "type": "string",
        "format": "uuid",
    }


def test_no_schema_component_exposes_a_secret(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    schemas = yaml.safe_load(target.read_text())["components"]["schemas"]
    for name, component in schemas.items():
        props = set(component.get("properties", {}))
        assert not props & {"db_password", "key_hash", "ssh_private_key", "extra_env"}, name
        if name in ("License", "LicenseSummary", "Instance"):
            assert "key" not in props


@pytest.mark.django_db
def test_the_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
