"""`scripts/demo` (issue #17) starts quietly: one line per process it starts on its terminal, and
each worker's log begins with its one "ready." line (beat's "Starting..." beside it), no banner;
a 403 is one line there, without a traceback. It stops cleanly: a TERM (as a service manager or
`kill` sends) or an INT (Ctrl-C) to the script stops the panel and both Celery workers with it,
nothing left."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from notifications.management.commands.demo_seed import DEMO_PASSWORD

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


def _wait_for(path: Path, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.5)
    pytest.fail(f"{text!r} not in {path}: {content[-3000:]}")


def _forbidden_as_bob(port: int) -> int:
    """Log in as the demo's viewer and open the create page, which a viewer may not."""
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    form = opener.open(f"{base}/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token
    body = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token.group(1), "username": "bob", "password": DEMO_PASSWORD}
    )
    opener.open(f"{base}/login/", data=body.encode(), timeout=10).read()
    try:
        opener.open(f"{base}/instances/new/", timeout=10)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def _assert_started_quietly(terminal: Path, var: Path, port: int) -> None:
    operations = _wait_for(var / "log" / "celery-operations.log", " ready.", 90)
    housekeeping = _wait_for(var / "log" / "celery.log", " ready.", 90)
    for log in (operations, housekeeping):
        assert log.count(" ready.") == 1
        for chatter in ("[tasks]", "-------------- ", "Connected to", "No hostname was supplied"):
            assert chatter not in log
        assert "AXES" not in log
    assert housekeeping.count("beat: Starting...") == 1
    assert _forbidden_as_bob(port) == 403
    shown = _wait_for(terminal, "Forbidden (Permission denied): /instances/new/", 10)
    lines = shown.splitlines()
    # One line for each process the script starts (the panel and the two workers, beat inside
    # the housekeeping one), none of gunicorn's or the libraries' start-up chatter.
    assert [line for line in lines if line.startswith("Operations worker:")] == [
        f"Operations worker: its log is {var}/log/celery-operations.log"
    ]
    assert len([line for line in lines if line.startswith("Housekeeping worker and beat:")]) == 1
    assert len([line for line in lines if line.startswith("Panel: http://")]) == 1
    for chatter in ("AXES", "Starting gunicorn", "Booting worker", "Listening at", "[INFO]"):
        assert chatter not in shown
    assert shown.count("Forbidden (Permission denied): /instances/new/") == 1
    assert "Traceback" not in shown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_demo_starts_quietly_and_a_signal_stops_it_with_its_workers(tmp_path, sig):
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
        _assert_started_quietly(tmp_path / "demo.log", tmp_path / "var", port)
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
