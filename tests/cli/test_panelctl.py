"""panelctl, the command-line client, run as a subprocess (its console script) against the live
test server: a real HTTP client, a real token, and the real worker for operations."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction

from panel.access import access_for_user
from panel.operations import operation_start
from tests.support.factories import make_operation

ROOT = Path(__file__).resolve().parents[2]
PANELCTL = Path(sys.executable).parent / "panelctl"


def run(*args, env=None, home, timeout=60):
    """``panelctl args…`` with its own config file under ``home``; returns the finished process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PANELCTL_", "DJANGO_"))}
    environ.update(HOME=str(home), PANELCTL_CONFIG=str(home / "panelctl.json"), **(env or {}))
    return subprocess.run(
        [str(PANELCTL), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=home,  # not the project: the client must not need the panel's code
        timeout=timeout,
    )


@pytest.fixture
def as_alice(live_server, transactional_db, alice, acme, make_token, tmp_path):
    """``as_alice(args…)``: panelctl with Alice's write token for Acme in the environment."""
    env = {"PANELCTL_URL": live_server.url, "PANELCTL_TOKEN": make_token(alice, tenant=acme)}

    def call(*args, **kwargs):
        return run(*args, env=env, home=tmp_path, **kwargs)

    return call


def diagnostic(user, tenant, **params):
    """A diagnostic operation of ``tenant`` (tests/support/operations.py), run by the worker."""
    with transaction.atomic():  # enqueued on commit, as a request does
        return operation_start(
            kind="diagnostic",
            actor=access_for_user(user),
            tenant=tenant,
            lock_key=f"cli:{params}",
            params={"sleep": 0.3, **params},
        )


def test_the_console_script_is_installed_and_imports_no_part_of_the_panel(tmp_path):
    assert PANELCTL.exists(), "pip install -e . (scripts/bootstrap-venv) installs panelctl"
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, panelctl.cli; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    loaded = {name.split(".")[0] for name in json.loads(probe.stdout.replace("'", '"'))}
    forbidden = {"django", "rest_framework", "panel", "tenants", "provisioning", "backups"}
    assert not loaded & forbidden


def test_login_checks_the_token_and_saves_it_readable_by_its_owner_only(
    live_server, transactional_db, alice, acme, make_token, tmp_path
):
    token = make_token(alice, tenant=acme)
    done = run("login", "--url", live_server.url, "--token", token, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "alice" in done.stdout
    saved = tmp_path / "panelctl.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"url": live_server.url, "token": token}
    # later commands use the saved login
    whoami = run("whoami", "--json", home=tmp_path)
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["username"] == "alice"


def test_login_refuses_a_wrong_token_and_saves_nothing(live_server, transactional_db, tmp_path):
    done = run("login", "--url", live_server.url, "--token", "pnl_nope", home=tmp_path)
    assert done.returncode == 3
    assert "HTTP 401" in done.stderr
    assert not (tmp_path / "panelctl.json").exists()


def test_without_a_login_it_says_how_to_log_in(tmp_path):
    done = run("instances", "list", home=tmp_path)
    assert done.returncode == 2
    assert "panelctl login" in done.stderr


def test_the_served_schema_has_every_route_it_uses(as_alice):
    done = as_alice("schema-check", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["routes"]["operations_steps_retrieve"] == "GET /api/operations/{id}/steps/"


def test_it_lists_the_tenants_instances_as_json_and_as_a_table(as_alice, acme_jira, globex_wiki):
    done = as_alice("instances", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(i["id"], i["name"]) for i in listed] == [(str(acme_jira.id), "acme-jira")]
    table = as_alice("instances", "list")
    assert "acme-jira" in table.stdout and "globex-wiki" not in table.stdout


def test_a_bad_create_prints_the_field_messages_and_exits_non_zero(as_alice):
    done = as_alice(
        "instances",
        "create",
        "--name",
        "acme-new",
        "--product",
        "wordpad",
        "--version",
        "9.12.0",
        "--hostname",
        "new.acme.example",
    )
    assert done.returncode == 3
    assert "HTTP 400" in done.stderr
    assert "product:" in done.stderr and "wordpad" in done.stderr
    as_json = as_alice(
        "instances", "create", "--name", "x", "--product", "wordpad", "--version", "1",
        "--hostname", "x.example", "--json",
    )  # fmt: skip
    error = json.loads(as_json.stdout)["error"]
    assert error["status"] == 400 and "product" in error["body"]


def test_another_tenants_instance_is_not_found(as_alice, globex_wiki):
    done = as_alice("instances", "show", str(globex_wiki.id))
    assert done.returncode == 3
    assert "HTTP 404" in done.stderr
    by_name = as_alice("instances", "show", "globex-wiki")
    assert by_name.returncode == 3 and "no instance named 'globex-wiki'" in by_name.stderr


def test_following_an_operation_prints_its_steps_and_exits_0_when_it_succeeds(
    as_alice, worker, alice, acme
):
    op = diagnostic(alice, acme, steps=3)
    done = as_alice("operations", "follow", str(op.id), "--interval", "0.2", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    messages = [line.split(maxsplit=2)[2] for line in lines if " step " in line]
    assert messages == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert "$ echo 1  (exit 0" in done.stdout
    assert lines[-1] == f"Operation {op.id} (diagnostic) succeeded"


def test_following_a_failing_operation_exits_1_with_its_reason(as_alice, worker, alice, acme):
    op = diagnostic(alice, acme, steps=1, fail="the disk is full on app-one")
    done = as_alice("operations", "follow", str(op.id), "--interval", "0.2", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    final = json.loads(done.stdout)
    assert final["status"] == "failed" and "the disk is full" in final["error"]


def test_another_tenants_operation_cannot_be_followed(as_alice, worker, charlie, globex):
    op = diagnostic(charlie, globex, steps=1)
    done = as_alice("operations", "follow", str(op.id), "--interval", "0.2")
    assert done.returncode == 3 and "HTTP 404" in done.stderr


def test_a_backup_refused_while_another_operation_runs_names_it(as_alice, acme_jira):
    running = make_operation(acme_jira, kind="instance.restart", status="running")
    done = as_alice("backups", "start", "acme-jira", "--wait")
    assert done.returncode == 3
    assert "HTTP 409" in done.stderr and str(running.id) in done.stderr
