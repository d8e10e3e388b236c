"""The script that stages a restore's base and WAL on the backup host (backups.wal.STAGE_SCRIPT),
run for real with sh, awk, xargs and cp against local directories: only the WAL from the base's
first segment on is staged (any timeline), with the history files and the newest partial."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

from backups.wal import STAGE_SCRIPT


def _archive(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    base = tmp_path / "base"
    base.mkdir()
    (base / "base.tar.gz").write_bytes(b"base")
    wal = tmp_path / "wal"
    wal.mkdir()
    partial = tmp_path / "partial"
    partial.mkdir()
    return base, wal, partial, tmp_path / "staging"


def _stage(staging: Path, base: Path, wal: Path, partial: Path, start: str) -> list[str]:
    done = subprocess.run(
        ["sh", "-c", STAGE_SCRIPT, "sh", str(staging), str(base), str(wal), str(partial), start],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    names = sorted(os.listdir(staging / "wal"))
    assert int(done.stdout.strip().splitlines()[-1]) == len(names)
    return names


def test_only_the_wal_from_the_bases_first_segment_on_is_staged(tmp_path):
    base, wal, partial, staging = _archive(tmp_path)
    names = [
        "000000010000000000000009",  # before the base: never read by its replay
        "00000001000000000000000A",
        "00000001000000010000000B",  # a higher log number
        "00000002000000000000000C",  # a later timeline, after the base's position
        "000000020000000000000008",  # a later timeline, but before the base's position
        "00000002.history",
    ]
    for name in names:
        (wal / name).write_bytes(name.encode())
    (wal / ".00000001000000000000000D.XyZ123").write_bytes(b"a push under way")
    (partial / "00000002000000000000000D.partial.1.gz").write_bytes(gzip.compress(b"newest"))
    staged = _stage(staging, base, wal, partial, "00000001000000000000000A")
    assert staged == [
        "00000001000000000000000A",
        "00000001000000010000000B",
        "00000002.history",
        "00000002000000000000000C",
        "00000002000000000000000D",
    ]
    assert (staging / "wal" / "00000002000000000000000D").read_bytes() == b"newest"
    # hard links, not copies: the archive's own files
    assert os.path.samefile(
        staging / "wal" / "00000001000000000000000A", wal / "00000001000000000000000A"
    )
    assert (staging / "base.tar.gz").read_bytes() == b"base"


def test_a_base_of_unknown_first_segment_stages_the_whole_archive(tmp_path):
    base, wal, partial, staging = _archive(tmp_path)
    for name in ("000000010000000000000001", "000000010000000000000002"):
        (wal / name).write_bytes(b"x")
    assert _stage(staging, base, wal, partial, "") == [
        "000000010000000000000001",
        "000000010000000000000002",
    ]


def test_a_missing_archive_fails_with_its_reason(tmp_path):
    base, wal, partial, staging = _archive(tmp_path)
    wal.rmdir()
    done = subprocess.run(
        ["sh", "-c", STAGE_SCRIPT, "sh", str(staging), str(base), str(wal), str(partial), ""],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "is missing" in done.stderr
