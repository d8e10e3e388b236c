"""A copy's compose project: mail off through JVM_SUPPORT_RECOMMENDED_ARGS (issue #13 P4)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from provisioning.compose import RenderedProject, compose_render
from provisioning.models import Host
from tenants.models import Tenant
from tests.support.factories import make_instance

JIRA_FLAGS = (
    "-Datlassian.mail.senddisabled=true -Datlassian.mail.fetchdisabled=true "
    "-Datlassian.mail.popdisabled=true"
)


def _app_env(tmp_path: Path, rendered: RenderedProject) -> dict[str, Any]:
    """The app's environment as docker compose itself resolves it (``.env`` interpolated)."""
    (tmp_path / "compose.yml").write_text(rendered.compose_yaml)
    (tmp_path / ".env").write_text(rendered.env_file)
    out = subprocess.run(
        ["docker", "compose", "-f", "compose.yml", "--env-file", ".env", "config"]
        + ["--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["services"]["app"]["environment"]


@pytest.mark.django_db
def test_a_copy_of_jira_starts_with_sending_and_fetching_mail_off(
    acme: Tenant, app_host: Host, tmp_path: Path
) -> None:
    inst = make_instance(acme, "acme-jira-copy", host=app_host, outbound_disabled=True)
    env = _app_env(tmp_path, compose_render(inst))
    assert env["JVM_SUPPORT_RECOMMENDED_ARGS"] == JIRA_FLAGS


@pytest.mark.django_db
def test_a_copy_of_confluence_also_stops_its_mail_polling(
    acme: Tenant, app_host: Host, tmp_path: Path
) -> None:
    inst = make_instance(
        acme,
        "acme-wiki-copy",
        host=app_host,
        product="confluence",
        version="8.5.0",
        outbound_disabled=True,
    )
    env = _app_env(tmp_path, compose_render(inst))
    assert env["JVM_SUPPORT_RECOMMENDED_ARGS"] == (
        JIRA_FLAGS + " -Dconfluence.disable.mailpolling=true"
    )


@pytest.mark.django_db
def test_the_flags_are_appended_to_the_instances_own_jvm_arguments(
    acme: Tenant, app_host: Host, tmp_path: Path
) -> None:
    inst = make_instance(
        acme,
        "acme-jira-copy",
        host=app_host,
        outbound_disabled=True,
        extra_env={"JVM_SUPPORT_RECOMMENDED_ARGS": "-XX:+UseG1GC -Dagent.key=k-123456"},
    )
    rendered = compose_render(inst)
    env = _app_env(tmp_path, rendered)
    assert env["JVM_SUPPORT_RECOMMENDED_ARGS"] == f"-XX:+UseG1GC -Dagent.key=k-123456 {JIRA_FLAGS}"
    # the instance's own value still travels through .env, never the compose file
    assert "k-123456" not in rendered.compose_yaml and "k-123456" in rendered.env_file


@pytest.mark.django_db
def test_production_keeps_its_mail_and_its_own_jvm_arguments(
    acme: Tenant, app_host: Host, tmp_path: Path
) -> None:
    plain = make_instance(acme, "acme-jira", host=app_host)
    assert "JVM_SUPPORT_RECOMMENDED_ARGS" not in _app_env(tmp_path, compose_render(plain))
    tuned = make_instance(
        acme,
        "acme-jira-tuned",
        host=app_host,
        extra_env={"JVM_SUPPORT_RECOMMENDED_ARGS": "-XX:+UseG1GC"},
    )
    assert _app_env(tmp_path, compose_render(tuned))["JVM_SUPPORT_RECOMMENDED_ARGS"] == (
        "-XX:+UseG1GC"
    )


@pytest.mark.django_db
def test_a_candidate_render_of_a_copy_keeps_the_flags(acme: Tenant, app_host: Host) -> None:
    inst = make_instance(acme, "acme-jira-copy", host=app_host, outbound_disabled=True)
    assert "senddisabled" in compose_render(inst, version="9.17.0").compose_yaml
