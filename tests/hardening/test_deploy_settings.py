"""Production settings pass Django's deployment checks; the API rate-limits with a clear 429."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "panel.settings",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
    "PANEL_CACHE_URL": "redis://127.0.0.1:6379/14",
    "PANEL_ALLOWED_HOSTS": "panel.example.com",
    "PANEL_SECURE_COOKIES": "true",
    "PANEL_HSTS_SECONDS": "31536000",
    "PANEL_SSL_REDIRECT": "true",
    "PANEL_BEHIND_TLS_PROXY": "true",
}


def test_manage_py_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANEL_", "DATABASE_"))}
    env.update(PRODUCTION_ENV)
    env["PANEL_SECRET_KEY"] = secrets.token_urlsafe(64)
    env["PANEL_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    env["PANEL_VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_a_token_over_its_rate_gets_429_with_retry_after(alice, acme, api, make_token, settings):
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "3/min", "ip": "1000/min"},
    }
    from rest_framework.throttling import SimpleRateThrottle

    SimpleRateThrottle.THROTTLE_RATES = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    try:
        client = api(token=make_token(alice, tenant=acme))
        codes = [client.get("/api/instances/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/api/instances/")
        assert int(limited["Retry-After"]) > 0
        assert "throttled" in limited.json()["detail"].lower()
        # another token of the same user has its own budget
        other = api(token=make_token(alice, tenant=acme))
        assert other.get("/api/instances/").status_code == 200
    finally:
        from rest_framework.settings import api_settings

        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        cache.clear()


@pytest.mark.django_db
def test_an_address_over_its_rate_gets_429_whoever_calls(
    alice, bob, acme, api, make_token, settings
):
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    SimpleRateThrottle.THROTTLE_RATES = {"token": "1000/min", "ip": "2/min"}
    try:
        a = api(token=make_token(alice, tenant=acme))
        b = api(token=make_token(bob, tenant=acme))
        assert a.get("/api/me/").status_code == 200
        assert b.get("/api/me/").status_code == 200
        assert a.get("/api/me/").status_code == 429
        assert api().get("/api/me/").status_code == 429  # anonymous too
        guessed = api(token="pnl_deadbeef_guessing")
        assert guessed.get("/api/me/").status_code == 429  # so token guessing is limited
    finally:
        from rest_framework.settings import api_settings

        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        cache.clear()
