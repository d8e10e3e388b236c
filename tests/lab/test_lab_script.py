"""The lab script's service start-up waits on the started process itself, and a half-finished
earlier `up` (no hash file) is recovered from, not crashed on (issue: a cold `up` once declared
a healthy BIND dead because it read /proc/<pid>/cmdline before the child had exec'd), and each
lab host waits for its own sshd on its own deadline."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

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


def _fake_docker(tmp_path: Path, monkeypatch, *, has_key: bool) -> Path:
    """A `docker` on PATH that logs its arguments and answers `exec ... test -s <key>` as a host
    with (or without) its host key; `exec -i ... sh -c` prints a fingerprint line."""
    bin_dir, log = tmp_path / "bin", tmp_path / "docker.log"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{log}"\n'
        'case "$*" in\n'
        f'  "exec "*" test -s "*) exit {0 if has_key else 1} ;;\n'
        '  "exec -i "*) cat >/dev/null; echo "256 SHA256:fake-fp root@app9 (ED25519)" ;;\n'
        "  *) exit 2 ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_a_host_whose_sshd_makes_no_host_key_stops_up_with_its_name(tmp_path, monkeypatch, capsys):
    lab = _lab_module()
    log = _fake_docker(tmp_path, monkeypatch, has_key=False)
    spec = {"name": "app9", "container": "panel-lab-app9"}
    started = time.monotonic()
    with pytest.raises(SystemExit):
        lab.prepare_host(spec, "pw", "ssh-ed25519 AAAA admin", host_key_seconds=1)
    waited = time.monotonic() - started
    assert "sshd of app9 made no host key in 1 s" in capsys.readouterr().err
    assert 1 <= waited < 10  # its own deadline, not a fixed loop count
    calls = log.read_text().splitlines()
    assert len(calls) >= 2 and all(c.endswith(f"test -s {lab.HOST_KEY}") for c in calls)
    # Nothing ran after the wait: no password was set on a host without its key.
    assert not [c for c in calls if c.startswith("exec -i")]
    assert lab.HOST_KEY_SECONDS == 60


def test_a_host_with_its_key_is_prepared_and_its_fingerprint_returned(tmp_path, monkeypatch):
    lab = _lab_module()
    log = _fake_docker(tmp_path, monkeypatch, has_key=True)
    spec = {"name": "app9", "container": "panel-lab-app9"}
    assert lab.prepare_host(spec, "pw", "ssh-ed25519 AAAA admin") == "SHA256:fake-fp"
    calls = log.read_text()
    assert calls.startswith(f"exec panel-lab-app9 test -s {lab.HOST_KEY}\n")
    assert "exec -i panel-lab-app9 sh -c" in calls and "chpasswd" in calls


def test_each_host_waits_for_its_sshd_on_its_own_deadline(monkeypatch, capsys):
    lab = _lab_module()
    monkeypatch.setattr(lab, "keyscan", lambda *a, **k: None)
    spec = {"name": "app9", "address": "127.0.0.99", "ssh_port": 2222}
    for _ in range(2):  # the second host gets its full time again
        started = time.monotonic()
        with pytest.raises(SystemExit):
            lab.wait_ssh(spec, "SHA256:x", seconds=0.5)
        assert time.monotonic() - started >= 0.5
    err = capsys.readouterr().err
    assert err.count("sshd of app9 does not answer on 127.0.0.99:2222 within 0.5 s") == 2
