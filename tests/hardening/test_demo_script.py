"""`scripts/demo` stops cleanly (issue #17): a TERM (as a service manager or `kill` sends) or an
INT (Ctrl-C) to the script stops the panel and both Celery workers with it, nothing left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent, the script, is what reaps it).
    state = (
        Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
        if Path(f"/proc/{pid}").exists()
        else "Z"
    )
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_demo_stops_the_panel_and_its_workers(tmp_path, sig):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANEL_", "DJANGO_"))}
    env.update(PANEL_PORT=str(port), PANEL_VAR_DIR=str(tmp_path / "var"))
    env.pop("DATABASE_URL", None)
    log = open(tmp_path / "demo.log", "wb")
    demo = subprocess.Popen(
        [str(ROOT / "scripts" / "demo")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # As from a terminal: scripts/test runs this process in the background, where SIGINT
        # is ignored, and a shell cannot trap a signal ignored when it started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2):
                    break
            except OSError:
                if demo.poll() is not None or time.monotonic() > deadline:
                    pytest.fail((tmp_path / "demo.log").read_text()[-3000:])
                time.sleep(0.5)
        children = _children(demo.pid)
        assert len(children) >= 3, children  # the panel and the two workers
        demo.send_signal(sig)
        code = demo.wait(timeout=60)
        assert code == 128 + sig
        gone = time.monotonic() + 30
        while any(_alive(p) for p in children) and time.monotonic() < gone:
            time.sleep(0.5)
        assert [p for p in children if _alive(p)] == []
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2)
    finally:
        if demo.poll() is None:
            demo.kill()
        for p in _children(demo.pid):
            os.kill(p, signal.SIGKILL)
        log.close()
