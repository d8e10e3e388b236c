"""Compose rendering: the products' environment, layout, and validation by the real tool."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from provisioning.compose import compose_render
from provisioning.models import License
from tests.conftest import make_instance


def _compose_config(tmp_path, rendered) -> dict:
    (tmp_path / "compose.yml").write_text(rendered.compose_yaml)
    (tmp_path / ".env").write_text(rendered.env_file)
    out = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            "compose.yml",
            "--env-file",
            ".env",
            "config",
            "--format",
            "json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    import json

    return json.loads(out.stdout)


@pytest.mark.django_db
def test_jira_gets_the_atl_environment_a_private_db_and_its_home_bind_mount(
    acme, app_host, tmp_path, settings
):
    settings.PANEL_IMAGE_PREFIX = "atlassian/"  # the real images
    inst = make_instance(
        acme, "acme-jira", host=app_host, context_path="/jira", heap_min_mb=1024, heap_max_mb=3072
    )
    rendered = compose_render(inst)
    config = _compose_config(tmp_path, rendered)
    app, db = config["services"]["app"], config["services"]["db"]
    env = app["environment"]
    assert env["ATL_PROXY_NAME"] == "acme-jira.example.com"
    assert env["ATL_PROXY_PORT"] == "443" and env["ATL_TOMCAT_SCHEME"] == "https"
    assert env["ATL_TOMCAT_SECURE"] == "true" and env["ATL_TOMCAT_CONTEXTPATH"] == "/jira"
    assert env["ATL_JDBC_URL"] == "jdbc:postgresql://db:5432/acme_jira"
    assert env["ATL_JDBC_PASSWORD"] == "pw-acme-jira-secret"  # interpolated from .env
    assert env["JVM_MINIMUM_MEMORY"] == "1024m" and env["JVM_MAXIMUM_MEMORY"] == "3072m"
    assert app["image"] == "atlassian/jira-software:9.12.0"
    assert app["volumes"][0]["source"] == "/srv/atlassian/instances/acme-jira/home"
    assert app["volumes"][0]["target"] == "/var/atlassian/application-data/jira"
    assert app["stop_grace_period"] == "2m0s" and app["restart"] == "unless-stopped"
    assert (
        app["labels"]["panel.tenant"] == "acme" and app["labels"]["panel.instance"] == "acme-jira"
    )
    assert set(app["networks"]) == {"private", "proxy"}
    assert list(db["networks"]) == ["private"] and "ports" not in db
    assert config["networks"]["private"]["internal"] is True
    assert config["networks"]["proxy"]["name"] == "panel-proxy"
    assert "C" in db["environment"]["POSTGRES_INITDB_ARGS"]


@pytest.mark.django_db
def test_the_compose_file_itself_holds_no_secret(acme, app_host):
    inst = make_instance(
        acme, "acme-jira", host=app_host, extra_env={"NEW_RELIC_LICENSE_KEY": "nr-123456"}
    )
    rendered = compose_render(inst)
    assert "pw-acme-jira-secret" not in rendered.compose_yaml
    assert "nr-123456" not in rendered.compose_yaml
    assert "pw-acme-jira-secret" in rendered.env_file and "nr-123456" in rendered.env_file
    env = yaml.safe_load(rendered.compose_yaml)["services"]["app"]["environment"]
    assert env["NEW_RELIC_LICENSE_KEY"].startswith("${PANEL_EXTRA_")


@pytest.mark.django_db
def test_bitbucket_gets_server_and_jdbc_variables(acme, app_host, tmp_path):
    inst = make_instance(acme, "acme-code", host=app_host, product="bitbucket", version="8.19.0")
    env = _compose_config(tmp_path, compose_render(inst))["services"]["app"]["environment"]
    assert env["SERVER_PROXY_NAME"] == "acme-code.example.com"
    assert env["SERVER_SCHEME"] == "https" and env["SERVER_SECURE"] == "true"
    assert env["JDBC_URL"] == "jdbc:postgresql://db:5432/acme_code"
    assert "ATL_PROXY_NAME" not in env


@pytest.mark.django_db
def test_confluence_takes_its_license_from_the_environment(acme, app_host, tmp_path):
    inst = make_instance(acme, "acme-wiki", host=app_host, product="confluence", version="8.5.0")
    License.objects.create(instance=inst, product="confluence", key="AAAB-conf-key-xyz")
    rendered = compose_render(inst)
    env = _compose_config(tmp_path, rendered)["services"]["app"]["environment"]
    assert env["ATL_LICENSE_KEY"] == "AAAB-conf-key-xyz"
    assert "AAAB-conf-key-xyz" not in rendered.compose_yaml


@pytest.mark.django_db
def test_rendering_another_version_leaves_the_instance_untouched(acme, app_host):
    inst = make_instance(acme, "acme-jira", host=app_host)
    candidate = compose_render(inst, version="9.17.0")
    assert "jira-software:9.17.0" in candidate.compose_yaml
    assert inst.version == "9.12.0"
    assert candidate.compose_hash != compose_render(inst).compose_hash
