"""Bitbucket's home and database from the same moment (plan S6).

Bitbucket keeps repositories in its home and the rows that describe them (pull requests,
commits it indexed) in its database; a backup needs "consistent snapshots" of both
(https://confluence.atlassian.com/display/BITBUCKETSERVER091/Data+recovery+and+backups), which
is why DIY Backup locks the product first
(https://confluence.atlassian.com/bitbucketserver091/bitbucket-diy-backup-1443039252.html).
The real product does not report a torn copy; it misbehaves later. This module is a **stand-in
device** that makes the tear checkable:

* Each push (``POST items`` or ``POST files``, and one every ``STANDIN_PUSH_INTERVAL`` seconds
  when that is set) increments ``standin_counter`` in the database **first**, then the number in
  ``shared/data/standin-counter`` in the home. Each side counts on from its own value, so a
  home and a database from different moments stay apart forever, as real repositories and
  their rows would.
* ``info.consistency`` = ``{home, db, ok}``; a mismatch is logged; ``/status`` stays RUNNING,
  as the real product would.

A hot backup (dump first, home copy after) of a Bitbucket under pushes restores with
``home > db``; a cold one restores with ``ok``.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import os
import sys
import threading

COUNTER_FILE = "shared/data/standin-counter"


def log(msg: str) -> None:
    ts = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sys.stdout.write(f"{ts} standin: {msg}\n")
    sys.stdout.flush()


class Counter:
    """The change counter of one Bitbucket process (home file and database row)."""

    def __init__(self, app) -> None:
        self.app = app
        self.path = os.path.join(app.cfg.home, COUNTER_FILE)
        raw = os.environ.get("STANDIN_PUSH_INTERVAL", "").strip()
        self.interval = float(raw) if raw else 0.0
        # One push at a time, and never half of one: info reads under it, and the exit waits
        # for it (a stop between the database and the home write would tear a cold backup).
        self.lock = threading.Lock()
        self.closed = False
        self.last_reported: tuple | None = None
        self.pushes = 0
        self.error: str | None = None
        self.started = False
        atexit.register(self.close)

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def schema_ensure(self) -> None:
        def work(cur) -> None:
            cur.execute(
                """CREATE TABLE IF NOT EXISTS standin_counter (
                id integer PRIMARY KEY CHECK (id = 1), value bigint NOT NULL)"""
            )

        self.app.db.run(work)

    def db_value(self) -> int:
        def work(cur) -> int:
            cur.execute("SELECT to_regclass('standin_counter') IS NOT NULL")
            if not cur.fetchone()[0]:
                return 0
            cur.execute("SELECT value FROM standin_counter WHERE id = 1")
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return self.app.db.run(work)

    def home_value(self) -> int:
        try:
            with open(self.path) as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0

    def push(self, why: str) -> None:
        """One change: the database, then the home."""
        with self.lock:
            if self.closed:
                return

            def work(cur) -> int:
                cur.execute(
                    """INSERT INTO standin_counter (id, value) VALUES (1, 1)
                    ON CONFLICT (id) DO UPDATE SET value = standin_counter.value + 1
                    RETURNING value"""
                )
                return int(cur.fetchone()[0])

            db = self.app.db.run(work)
            home = self.home_value() + 1
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{home}\n")
            os.replace(tmp, self.path)
            self.pushes += 1
        self._report(home, db, why)

    def state(self) -> dict:
        with self.lock:
            home, db = self.home_value(), self.db_value()
        self._report(home, db, "check")
        return {"home": home, "db": db, "ok": home == db}

    def _report(self, home: int, db: int, why: str) -> None:
        # Log each new mismatch once (not on every push that carries it along).
        key = (home - db,)
        if home != db and key != self.last_reported:
            log(
                f"consistency: home and database are from different moments "
                f"(home counter {home}, database counter {db}; {why})"
            )
        self.last_reported = key if home != db else None

    def _pusher(self) -> None:
        while not self.app.stop.wait(self.interval):
            try:
                self.push("automatic push")
                self.error = None
            except Exception as exc:  # noqa: BLE001 - a lost database must not end the thread
                self.error = f"{type(exc).__name__}: {exc}"
                log(f"consistency: automatic push failed: {self.error}")

    def on_running(self) -> None:
        if self.started:
            return
        self.started = True
        try:
            self.schema_ensure()
            self.state()  # logs a mismatch found at start (a torn restore)
        except Exception as exc:  # noqa: BLE001 - never undo the start; push() reports again
            self.error = f"{type(exc).__name__}: {exc}"
            log(f"consistency: cannot check the counter at start: {self.error}")
        if self.interval > 0:
            threading.Thread(target=self._pusher, name="pusher", daemon=True).start()


# ------------------------------------------------------------------------------------------
# The interface standin.py calls
# ------------------------------------------------------------------------------------------


def attach(app) -> None:
    app.counter = Counter(app) if app.cfg.product == "bitbucket" else None


def on_running(app) -> None:
    if app.counter is not None:
        app.counter.on_running()


def on_change(app, kind: str, detail: str = "") -> None:
    if app.counter is not None and kind in ("items", "files"):
        app.counter.push(f"push: {kind}")


def route(app, method: str, path: str, body) -> tuple[int, object] | None:
    return None


def info(app) -> dict:
    if app.counter is None:
        return {}
    if not app.ready:
        return {"consistency": None}
    try:
        return {"consistency": app.counter.state()}
    except Exception as exc:  # noqa: BLE001 - info never fails on one section
        return {"consistency": None, "consistency_error": f"{type(exc).__name__}: {exc}"}
