"""Start and stop a real Celery worker against the test database and the real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_queues() -> list[str]:
    """This run's two queues (panel.test_settings derives both from PANEL_TEST_QUEUE)."""
    from django.conf import settings

    return [settings.PANEL_CELERY_QUEUE_OPERATIONS, settings.PANEL_CELERY_QUEUE_HOUSEKEEPING]


def run_queue_keys() -> list[str]:
    """The Redis keys holding this run's queues: kombu keeps one list per queue and priority
    step (``name`` and ``name\x06\x16<step>``); the shared ``unacked`` hashes are not ours."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    return [
        name if step == 0 else f"{name}{Channel.sep}{step}"
        for name in run_queues()
        for step in PRIORITY_STEPS
    ]


class Worker:
    """A ``celery worker`` subprocess (prefork) on the test database.

    By default it consumes both of this run's queues (operations and housekeeping) with two
    processes; ``queues``/``concurrency``/``name`` make a pool like one of production's.
    """

    def __init__(
        self,
        db_name: str,
        log_path: Path,
        heartbeat_timeout: int = 6,
        broker_url: str | None = None,
        queues: list[str] | None = None,
        concurrency: int = 2,
        name: str = "test",
    ) -> None:
        self.db_name = db_name
        self.log_path = log_path
        self.heartbeat_timeout = heartbeat_timeout
        self.broker_url = broker_url
        self.queues = queues
        self.concurrency = concurrency
        self.name = name
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
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Only what this run's worker writes from now on counts as "ready".
        self._start_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
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
                str(self.concurrency),
                "-Q",
                ",".join(self.queues or run_queues()),
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"{self.name}-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child has its own copy

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited at start; see {self.log_path}")
            if b"ready." in self.log_path.read_bytes()[self._start_offset :]:
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


class WorkerPools:
    """Production's layout in small: one worker on the operations queue and one on the
    housekeeping queue (the reaper, sweepers, dispatchers, notifications), so a test can fill
    every operation slot and still see housekeeping run. Same interface as :class:`Worker`;
    ``kill``/``stop``/``start`` act on both, as a crash or a restart of the node would."""

    def __init__(
        self, db_name: str, log_dir: Path, heartbeat_timeout: int = 6, operation_slots: int = 2
    ) -> None:
        from django.conf import settings

        self.heartbeat_timeout = heartbeat_timeout
        self.operation_slots = operation_slots
        self.operations = Worker(
            db_name,
            # One file per test run: two runs at once (scripts/test) must not read each other's
            # "ready." line.
            log_dir / f"celery-worker-operations-{os.getpid()}.log",
            heartbeat_timeout,
            queues=[settings.PANEL_CELERY_QUEUE_OPERATIONS],
            concurrency=operation_slots,
            name="test-operations",
        )
        self.housekeeping = Worker(
            db_name,
            log_dir / f"celery-worker-housekeeping-{os.getpid()}.log",
            heartbeat_timeout,
            queues=[settings.PANEL_CELERY_QUEUE_HOUSEKEEPING],
            concurrency=1,
            name="test-housekeeping",
        )
        self.workers = [self.operations, self.housekeeping]

    @property
    def log_path(self) -> Path:
        return self.operations.log_path

    @property
    def alive(self) -> bool:
        return all(w.alive for w in self.workers)

    def start(self) -> None:
        starting = [w for w in self.workers if not w.alive]
        for w in starting:
            w.launch()
        for w in starting:
            w.wait_ready()

    def kill(self) -> None:
        for w in self.workers:
            w.kill()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
