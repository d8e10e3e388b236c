"""The dispatcher's deadline order works on SQLite too: the demo (``scripts/demo``) runs on it,
and Django cannot multiply an integer by a duration there ("Invalid arguments for operator
*"), which crashed the demo's housekeeping worker on every tick.

Runs in a child process on the demo's own database settings (no ``DATABASE_URL``), after the
demo's migrate and seed, so it meets the real SQLite backend rather than the test PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json
from datetime import timedelta
import django
django.setup()
from django.db import connection
from django.utils import timezone
from backups.models import BackupPolicy
from backups.policies import run_deadline
from backups.services import _due_runs
from provisioning.models import Host
later = timezone.now() + timedelta(days=8)
backup_hosts = list(Host.objects.filter(role="backup").values_list("pk", flat=True))
runs = _due_runs(later, backup_hosts=backup_hosts, busy_app_hosts=[], tried=[], limit=50)
policies = {p.pk: p for p in BackupPolicy.objects.all()}
print(json.dumps({
    "vendor": connection.vendor,
    "runs": [
        [r.deadline.isoformat(), run_deadline(policies[r.policy_id], r.due).isoformat()]
        for r in runs
    ],
    "policies": len(policies),
}))
"""


def test_the_deadline_order_runs_on_the_demos_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANEL_", "DJANGO_"))}
    env.pop("DATABASE_URL", None)
    env.update(PANEL_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="panel.settings")
    for command in (["migrate", "--noinput"], ["demo_seed"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["vendor"] == "sqlite"
    runs = found["runs"]
    # Every demo policy is due a week later, each run once, earliest deadline first, and the
    # deadline SQL computed is the one the Python rule gives.
    assert len(runs) == found["policies"] > 0
    deadlines = [deadline for deadline, _ in runs]
    assert deadlines == sorted(deadlines)
    assert all(sql == python for sql, python in runs)
