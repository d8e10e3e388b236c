"""Hardening that needs no lab: the Content-Security-Policy header, secrets kept out of
logged tracebacks, and demo data never seeded into a production panel (review L8, L9)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from panel.sanitize import SanitizeFilter, secrets_pop, secrets_push

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/api/me/", "/api/docs/"])
def test_every_answer_carries_a_policy_without_inline_scripts(client, path):
    response = client.get(path)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy.split(";")[1]
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


@pytest.mark.django_db
def test_the_api_docs_load_their_start_up_script_from_a_url(client):
    page = client.get("/api/docs/").content.decode()
    inline = [s for s in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S) if s[1].strip()]
    assert inline == [], "an inline script would be blocked by the policy"
    script = re.search(r'<script src="([^"]*\?script[^"]*)"', page)
    assert script is not None
    answer = client.get(script.group(1).replace("&amp;", "&"))
    assert answer.status_code == 200 and b"SwaggerUIBundle" in answer.content


def _log_exception(secret: str) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SanitizeFilter())
    logger = logging.getLogger("tests.sanitize")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            url = f"postgres://panel:{secret}@db/panel"
            raise RuntimeError(f"rsync failed: {url} password={secret}")
        except RuntimeError:
            logger.exception("the step failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_secrets_in_a_logged_traceback_are_redacted():
    text = _log_exception("hunter2-very-secret")
    assert "the step failed" in text and "Traceback" in text and "RuntimeError" in text
    assert "hunter2-very-secret" not in text
    assert "[redacted]" in text


def test_secrets_of_the_running_code_are_redacted_in_tracebacks_too():
    token = secrets_push(["db-pass-4711-xyz"])
    try:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(SanitizeFilter())
        logger = logging.getLogger("tests.sanitize.active")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            raise ValueError("connect with db-pass-4711-xyz refused")
        except ValueError:
            logger.error("failed", exc_info=True, stack_info=True)
        logger.removeHandler(handler)
    finally:
        secrets_pop(token)
    assert "db-pass-4711-xyz" not in stream.getvalue()
    assert "ValueError" in stream.getvalue()


@pytest.mark.django_db
def test_demo_seed_refuses_a_panel_configured_for_production(settings):
    settings.PANEL_EMBEDDED_DEFAULTS = False
    settings.TESTING = False
    with pytest.raises(CommandError, match="embedded defaults"):
        call_command("demo_seed")
    from django.contrib.auth.models import User

    assert not User.objects.filter(username="pat").exists()


def test_demo_seed_refuses_with_the_production_environment():
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PANEL_", "DJANGO_", "DATABASE"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="panel.settings",
        PANEL_SECRET_KEY="a-production-secret-key-of-its-own-0123456789",
        PANEL_VAR_DIR=str(ROOT / "test-artifacts" / "demo-guard-var"),
        # Nothing listens here: the command must refuse before it touches a database.
        DATABASE_URL="postgres://panel@127.0.0.1:1/panel",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "demo_seed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "embedded defaults" in result.stderr
