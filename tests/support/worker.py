"""Start and stop a real Celery worker against the test database and the real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A ``celery worker`` subprocess (prefork, 2 processes) on the test database."""

    def __init__(self, db_name: str, log_path: Path, heartbeat_timeout: int = 6,
                 broker_url: str | None = None) -> None:
        self.db_name = db_name
        self.log_path = log_path
        self.heartbeat_timeout = heartbeat_timeout
        self.broker_url = broker_url
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            # The test settings (lab images, short rollout timeouts), but a worker process
            # keeps the separate step connection, as in production.
            DJANGO_SETTINGS_MODULE="panel.test_settings",
            PANEL_OPERATION_LOG_SEPARATE="1",
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{self.db_name}",
            CELERY_BROKER_URL=self.broker_url
            or os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"),
            PANEL_OPERATION_MODULES="tests.support.operations",
            PANEL_OPERATION_HEARTBEAT_TIMEOUT=str(self.heartbeat_timeout),
            PANEL_TESTING="1",
            PYTHONPATH=str(ROOT),
        )
        return env

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "panel",
                "worker",
                "-l",
                "INFO",
                "-c",
                "2",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited at start; see {self.log_path}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.3)
        raise RuntimeError(f"celery worker did not become ready in 60 s; see {self.log_path}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children), as a crash would."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
