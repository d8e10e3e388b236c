"""The production stack description is valid for the real docker compose."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_describes_web_worker_beat_postgres_and_redis_with_health_checks():
    out = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    config = json.loads(out.stdout)
    services = config["services"]
    assert {"web", "worker", "beat", "db", "redis", "migrate"} <= set(services)
    for name in ("web", "worker", "db", "redis"):
        assert "healthcheck" in services[name], name
    assert services["web"]["command"][0] == "gunicorn"
    assert services["web"]["ports"][0]["host_ip"] == "127.0.0.1"
    assert {"db-data", "redis-data"} <= set(config["volumes"])
    # secrets come from files, never inline values
    env = services["web"]["environment"]
    assert "PANEL_SECRET_KEY" not in env and env["PANEL_SECRET_KEY_FILE"].startswith(
        "/run/secrets/"
    )
