"""Compose rendering: the products' environment, layout, and validation by the real tool."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from provisioning.compose import compose_render
from provisioning.models import License
from tests.support.factories import make_instance


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
    assert set(app["networks"]) == {"private", "edge"}
    assert list(db["networks"]) == ["private"] and "ports" not in db
    assert config["networks"]["private"]["internal"] is True
    # its own network to the proxy, not the shared panel-proxy bridge
    assert config["networks"]["edge"]["name"] == "panel-edge-acme-jira"
    assert "panel-proxy" not in rendered.compose_yaml
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


@pytest.mark.django_db
def test_the_app_answers_to_a_unique_alias_not_a_name_another_instance_could_hold(
    acme, globex, app_host, tmp_path
):
    first = make_instance(acme, "acme-jira", host=app_host)
    second = make_instance(globex, "globex-jira", host=app_host)
    aliases = []
    for inst in (first, second):
        app = _compose_config(tmp_path, compose_render(inst))["services"]["app"]
        assert app["networks"]["edge"]["aliases"] == [f"inst-{inst.pk.hex[:12]}"]
        aliases.append(app["networks"]["edge"]["aliases"][0])
    assert aliases[0] != aliases[1]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tier", "heap", "cpus", "app_mb", "db_mb"),
    [
        ("tier0", 8192, 4.0, 8192 + 2048, 2048),  # non-heap: a quarter of a large heap
        ("tier2", 2048, 2.0, 2048 + 768, 1024),  # non-heap: Jira's floor
        ("tier3", 1024, 1.0, 1024 + 768, 512),
    ],
)
def test_memory_cpu_and_pid_limits_follow_the_heap_and_the_tier(
    acme, app_host, tmp_path, tier, heap, cpus, app_mb, db_mb
):
    app_host.cpu_count = 16
    app_host.save()
    inst = make_instance(
        acme, "acme-jira", host=app_host, heap_min_mb=1024, heap_max_mb=heap, tier=tier
    )
    config = _compose_config(tmp_path, compose_render(inst))
    app, db = config["services"]["app"], config["services"]["db"]
    # compose normalises the limits to bytes and floats
    assert app["mem_limit"] == str(app_mb * 1024**2) and app["memswap_limit"] == app["mem_limit"]
    assert app["cpus"] == cpus and app["pids_limit"] == 2048
    assert db["mem_limit"] == str(db_mb * 1024**2) and db["pids_limit"] == 512
    assert db["cpus"] == min(cpus, 2.0)


@pytest.mark.django_db
def test_limits_never_ask_for_more_cpus_than_the_host_has(acme, app_host, tmp_path):
    app_host.cpu_count = 2
    app_host.save()
    inst = make_instance(acme, "acme-jira", host=app_host, tier="tier0")
    app = _compose_config(tmp_path, compose_render(inst))["services"]["app"]
    assert app["cpus"] == 2.0


@pytest.mark.django_db
def test_bitbucket_and_confluence_get_room_for_git_and_synchrony(acme, app_host, tmp_path):
    code = make_instance(
        acme, "acme-code", host=app_host, product="bitbucket", version="8.19.0", heap_max_mb=2048
    )
    app = _compose_config(tmp_path, compose_render(code))["services"]["app"]
    assert app["pids_limit"] == 8192 and app["mem_limit"] == str((2048 + 1536) * 1024**2)
    wiki = make_instance(
        acme, "acme-wiki", host=app_host, product="confluence", version="8.5.0", heap_max_mb=2048
    )
    app = _compose_config(tmp_path, compose_render(wiki))["services"]["app"]
    assert app["mem_limit"] == str((2048 + 1536) * 1024**2)


@pytest.mark.django_db
def test_containers_keep_only_the_capabilities_the_official_entrypoints_need(
    acme, app_host, tmp_path
):
    inst = make_instance(acme, "acme-jira", host=app_host)
    config = _compose_config(tmp_path, compose_render(inst))
    for name, service in config["services"].items():
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        # chown the home, then su/gosu to the run user
        assert {"CHOWN", "SETUID", "SETGID"} <= set(service["cap_add"]), name
        assert not {"NET_RAW", "NET_ADMIN", "SYS_ADMIN", "MKNOD"} & set(service["cap_add"]), name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("context", "served"), [("", "/crowd"), ("/crowd", "/crowd"), ("/id", "/id")]
)
def test_crowd_gets_its_context_and_no_database_variable(acme, app_host, tmp_path, context, served):
    inst = make_instance(
        acme, "acme-crowd", host=app_host, product="crowd", version="5.3.0", context_path=context
    )
    rendered = compose_render(inst)
    env = _compose_config(tmp_path, rendered)["services"]["app"]["environment"]
    # Crowd's image ignores database variables: its setup wizard writes crowd.cfg.xml
    assert not [name for name in env if name.startswith(("ATL_JDBC_", "ATL_DB_", "JDBC_"))]
    assert env["ATL_TOMCAT_CONTEXTPATH"] == served
    assert env["ATL_PROXY_NAME"] == "acme-crowd.example.com"
    # the database container still gets its password from .env
    assert "PANEL_DB_PASSWORD=pw-acme-crowd-secret" in rendered.env_file


@pytest.mark.django_db
def test_bamboo_keeps_its_database_variables(acme, app_host, tmp_path):
    inst = make_instance(acme, "acme-bamboo", host=app_host, product="bamboo", version="9.6.0")
    env = _compose_config(tmp_path, compose_render(inst))["services"]["app"]["environment"]
    assert env["ATL_JDBC_URL"] == "jdbc:postgresql://db:5432/acme_bamboo"
    assert env["ATL_DB_TYPE"] == "postgresql" and env["ATL_TOMCAT_CONTEXTPATH"] == ""
