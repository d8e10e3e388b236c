"""The cold point's freeze of the home (backups.take._FREEZE_SCRIPT) run for real here: the
same sh and rsync the app hosts run, on a directory laid out like an instance's. (Through the
lab: tests/backups/lab/test_point_in_time.py, the cold point of the archive.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from backups.take import _FREEZE_SCRIPT, POINT_STAGING


def _freeze(idir: Path) -> str:
    done = subprocess.run(
        ["sh", "-c", _FREEZE_SCRIPT, "sh", str(idir), POINT_STAGING],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_the_freeze_copies_what_changed_even_within_the_same_second_and_drops_what_went(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    page = home / "data" / "page.txt"
    page.write_text("version one")
    (home / "gone.txt").write_text("soon deleted")
    (home / "data" / "link").symlink_to("page.txt")

    assert "frozen" in _freeze(tmp_path).splitlines()
    frozen = tmp_path / POINT_STAGING / "home"
    assert (frozen / "data" / "page.txt").read_text() == "version one"
    assert os.readlink(frozen / "data" / "link") == "page.txt"

    # Rewritten in place with the same size, its mtime in the same second as before (only the
    # nanoseconds differ): rsync's default quick check (size and whole seconds) would keep the
    # stale copy.
    before = page.stat().st_mtime_ns
    page.write_text("version two")
    os.utime(page, ns=(before + 1000, before + 1000))
    assert page.stat().st_mtime_ns // 10**9 == before // 10**9
    (home / "gone.txt").unlink()

    _freeze(tmp_path)
    assert (frozen / "data" / "page.txt").read_text() == "version two"
    assert not (frozen / "gone.txt").exists()
    assert (frozen / "data" / "page.txt").stat().st_mtime_ns == before + 1000
