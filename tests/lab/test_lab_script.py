"""The lab script's service start-up waits on the started process itself, and a half-finished
earlier `up` (no hash file) is recovered from, not crashed on (issue: a cold `up` once declared
a healthy BIND dead because it read /proc/<pid>/cmdline before the child had exec'd)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lab_module():
    loader = importlib.machinery.SourceFileLoader("panel_lab_script", str(ROOT / "scripts/lab"))
    spec = importlib.util.spec_from_loader("panel_lab_script", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_a_missing_or_stale_hash_file_means_restart_not_a_crash(tmp_path):
    lab = _lab_module()
    assert lab._hash_matches(tmp_path / "absent.hash", "abc") is False
    (tmp_path / "x.hash").write_text("old")
    assert lab._hash_matches(tmp_path / "x.hash", "abc") is False
    (tmp_path / "x.hash").write_text("abc")
    assert lab._hash_matches(tmp_path / "x.hash", "abc") is True


def test_spawn_hands_back_the_process_to_wait_on_even_before_it_execs(tmp_path):
    lab = _lab_module()
    pid_file = tmp_path / "svc.pid"
    # A child that is still this interpreter for a moment (as before exec) and then exits.
    proc = lab._spawn(
        [sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path / "svc.log", pid_file
    )
    assert int(pid_file.read_text()) == proc.pid
    assert proc.poll() is None  # running, whatever its command line says right now
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.returncode == 0
