"""The backup key's forced command (run by sh, as sshd runs it) picks rrsync's mode and root
from the command the app host sent: pulls read-only from its points, WAL into its WAL area
without rrsync's lock, everything else write-only into its incoming area under the lock.
(Through real SSH and rrsync: tests/hardening/test_backup_boundary.py and
tests/backups/lab/test_point_in_time.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from provisioning.hosts.backup_access import BACKUP_FORCED_SCRIPT


@pytest.fixture
def forced(tmp_path: Path):
    script = tmp_path / "panel-backup-rsync"
    script.write_text(BACKUP_FORCED_SCRIPT)
    fake = tmp_path / "rrsync"
    # A stand-in for rrsync that prints how it was called and the command it would check.
    fake.write_text('#!/bin/sh\necho "$@"\necho "$SSH_ORIGINAL_COMMAND"\n')
    fake.chmod(0o755)

    def run(command: str, *roots: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(script), str(fake), *roots],
            env={**os.environ, "SSH_ORIGINAL_COMMAND": command},
            capture_output=True,
            text=True,
            check=False,
        )

    return run


ROOTS = ("/srv/b/hosts/app1", "/srv/b/incoming/app1", "/srv/b/wal-incoming/app1")


def test_a_pull_reads_the_points_only(forced):
    done = forced("rsync --server --sender -logDtpre.iLsfxCIvu . /jira/points/x/", *ROOTS)
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "-ro -munge /srv/b/hosts/app1"


def test_wal_goes_to_its_own_area_without_the_lock_and_never_overwrites(forced):
    for dest in ("/wal/jira/", "/wal-partial/jira/"):
        done = forced(f"rsync --server -logDtpre.iLsfxCIvu . {dest}", *ROOTS)
        args, command = done.stdout.splitlines()
        assert args == "-wo -munge -no-lock /srv/b/wal-incoming/app1"
        assert command.startswith("rsync --server --ignore-existing ")


def test_points_are_pushed_into_the_incoming_area_under_the_lock(forced):
    done = forced("rsync --server -logDtpre.iLsfxCIvu . /jira/incoming-1/", *ROOTS)
    args, command = done.stdout.splitlines()
    assert args == "-wo -munge /srv/b/incoming/app1"  # rrsync's single-run lock applies
    assert command.startswith("rsync --server --ignore-existing ")


def test_a_key_installed_before_the_wal_area_refuses_wal_instead_of_misplacing_it(forced):
    done = forced("rsync --server -logDtpre.iLsfxCIvu . /wal/jira/", *ROOTS[:2])
    assert done.returncode == 1 and "provision the app host again" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("command", ["sh -c id", "sh -c id /wal/jira/"])
def test_anything_but_rsync_is_refused(forced, command):
    done = forced(command, *ROOTS)
    assert done.returncode == 1 and "only rsync" in done.stderr and done.stdout == ""


@pytest.mark.parametrize("option", ["--delete", "--delete-during", "--backup-dir=x", "--backup"])
def test_the_wal_area_refuses_pushes_that_would_delete_or_move_archived_wal(forced, option):
    done = forced(f"rsync --server -logDtpre.iLsfxCIvu {option} . /wal/jira/", *ROOTS)
    assert done.returncode == 1 and "no --delete" in done.stderr and done.stdout == ""
