"""A compromised app host against its backup host (lab): with the app host's own backup key,
used from the app host's container exactly as the engine uses it, it can neither read another
app host's backups, nor pull through a symlink it pushed, nor delete, overwrite or forge a
committed point; retention keeps the real points."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from backups.catalogue import retention_apply
from backups.models import Backup, BackupPolicy, BackupStatus
from backups.services import backup_start, policy_for
from backups.store import store_for
from panel.access import access_for_user
from provisioning.hosts import host_backup_ssh_argv, host_connection
from tests.support.backup_lab import backup1, lab_world, sh, wait_ok

pytestmark = [pytest.mark.lab, pytest.mark.django_db]


@pytest.fixture(scope="module")
def lab(django_db_setup, django_db_blocker):
    """This module's own lab world, gone (rows flushed, patches undone) when the module ends."""
    with lab_world(django_db_blocker) as world:
        yield world


SECRET = "other tenant's secret\n"


def as_app_host(world, script: str) -> tuple[int, str]:
    """Run ``script`` in the app host's container with the app host's backup key in $E and
    the backup host as $B (what a root attacker on the app host has)."""
    ssh = shlex.join(host_backup_ssh_argv(world.app_host))
    backup = world.backup_host
    prefix = f"E={shlex.quote(ssh)}; B={shlex.quote(backup.ssh_user + '@' + backup.peer_address)}; "
    done = subprocess.run(
        ["docker", "exec", "panel-lab-app1", "sh", "-c", prefix + script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def points(lab):
    """Two committed points of the world's instance, and a stored point of another app host
    (app2) with a secret in it."""
    lab.fresh_area()
    actor = access_for_user(lab.admin)
    lab.api("files", {"path": "data/mine.txt", "content": "mine v1\n"})
    first = Backup.objects.get(
        pk=wait_ok(backup_start(actor=actor, instance=lab.instance)).result["backup"]
    )
    lab.api("files", {"path": "data/mine.txt", "content": "mine v2\n"})
    second = Backup.objects.get(
        pk=wait_ok(backup_start(actor=actor, instance=lab.instance)).result["backup"]
    )
    other = f"{lab.backup_host.data_root}/hosts/lab-app2/z{lab.suffix}-jira/points/20240101T000000Z"
    backup1(
        "sh",
        "-c",
        f"mkdir -p {other}/home && printf %s {shlex.quote(SECRET)} > {other}/home/secret.txt",
    )
    yield lab, first, second, other
    backup1("rm", "-rf", f"{lab.backup_host.data_root}/hosts/lab-app2/z{lab.suffix}-jira")


def _intact(world, backup: Backup) -> None:
    point = f"{world.area()}/points/{backup.point_name}"
    backup1("sh", "-c", f"cd {point} && sha256sum --check --strict --quiet manifest.sha256")


def test_the_app_host_cannot_read_another_app_hosts_backups(points):
    world, _, _, other = points
    for source in (
        "$B:/../lab-app2/",
        f"$B:{other}/home/secret.txt",
        "$B:../lab-app2/",
        f"$B:/{world.instance.name}/../../lab-app2/",
    ):
        code, out = as_app_host(
            world, f'mkdir -p /tmp/loot && rsync -a -e "$E" {source} /tmp/loot/'
        )
        assert code != 0, out
    code, out = as_app_host(world, "grep -r . /tmp/loot 2>/dev/null; rm -rf /tmp/loot; true")
    assert SECRET.strip() not in out


def test_a_symlink_the_app_host_pushed_leads_nowhere(points):
    world, _, _, other = points
    # The attacker puts a symlink to the other host's points into the instance's home; the
    # next backup stores it (munged), and pulling through it, or with -L, reads nothing.
    sh("ln", "-sfn", other, f"{world.idir}/home/evil")
    try:
        backup = Backup.objects.get(
            pk=wait_ok(
                backup_start(actor=access_for_user(world.admin), instance=world.instance)
            ).result["backup"]
        )
        home = f"/{world.instance.name}/points/{backup.point_name}/home"
        stored = backup1("readlink", f"{world.area()}/points/{backup.point_name}/home/evil")
        assert stored.startswith("/rsyncd-munged/"), stored
        for args in (
            f"$B:{home}/evil/home/secret.txt",
            f"$B:{home}/evil/",
            f"-L $B:{home}/",
            f"--copy-links $B:{home}/",
        ):
            as_app_host(world, f'mkdir -p /tmp/loot && rsync -a -e "$E" {args} /tmp/loot/')
        code, out = as_app_host(world, "grep -r . /tmp/loot 2>/dev/null; rm -rf /tmp/loot; true")
        assert SECRET.strip() not in out
        # Pushing a symlink straight into the incoming area and pulling through it: refused.
        code, out = as_app_host(
            world,
            f'ln -sfn {other} /tmp/evil && rsync -a -e "$E" /tmp/evil '
            f"$B:/{world.instance.name}/incoming/ && "
            f'rsync -a -e "$E" $B:/{world.instance.name}/incoming/evil/ /tmp/loot/',
        )
        # (pulls only ever see the read-only root, where the incoming area is not)
        assert code != 0, out
        code, out = as_app_host(world, "grep -r . /tmp/loot 2>/dev/null; rm -rf /tmp/loot; true")
        assert SECRET.strip() not in out
    finally:
        sh("rm", "-f", f"{world.idir}/home/evil")


def test_the_app_host_cannot_delete_or_rewrite_a_committed_point(points):
    world, first, second, _ = points
    name = world.instance.name
    p1 = f"/{name}/points/{first.point_name}"
    attacks = [
        # delete everything under points/ (through either root)
        f'mkdir -p /tmp/empty && rsync -r --delete -e "$E" /tmp/empty/ $B:/{name}/points/',
        f'rsync -r --delete -e "$E" /tmp/empty/ $B:/{name}/',
        # overwrite the dump and a home file of a committed point
        f'printf evil > /tmp/db.dump && rsync -a -e "$E" /tmp/db.dump $B:{p1}/db.dump',
        # write into the base copy, whose files are hard links of the newest point's
        f"mkdir -p /tmp/h/home/data && printf 'mine v9\\n' > /tmp/h/home/data/mine.txt && "
        f"touch -r /dev/null /tmp/h/home/data/mine.txt && chmod 0777 /tmp/h/home/data/mine.txt && "
        f'rsync -a --inplace -e "$E" /tmp/h/ $B:/{name}/base/',
        f'rsync -a --inplace --checksum -e "$E" /tmp/h/home/ $B:/{name}/base/home/',
    ]
    for attack in attacks:
        as_app_host(world, attack)
    assert sorted(world.points_on_disk()) == sorted([first.point_name, second.point_name])
    for backup in (first, second):
        _intact(world, backup)
    newest = f"{world.area()}/points/{second.point_name}/home/data/mine.txt"
    assert backup1("cat", newest) == "mine v2\n"
    assert backup1("stat", "-c", "%a", newest).strip() != "777"
    assert backup1("cat", f"{world.area()}/points/{first.point_name}/home/data/mine.txt") == (
        "mine v1\n"
    )


def test_a_forged_future_point_does_not_push_real_points_out(points):
    world, first, second, _ = points
    name = world.instance.name
    fake = "20991231T235959Z"
    # From the app host: the forged point lands in its incoming area, not among the points.
    code, out = as_app_host(
        world,
        f"mkdir -p /tmp/f/{fake}/home && echo '{{}}' > /tmp/f/{fake}/point.json && "
        f'rsync -a -e "$E" /tmp/f/ $B:/{name}/points/',
    )
    assert fake not in world.points_on_disk()
    # Even a directory that appears among the points without a catalogue row (say, planted by
    # hand) is neither imported nor counted: retention keeps the real points.
    backup1(
        "sh",
        "-c",
        f"mkdir -p {world.area()}/points/{fake}/home && printf '%s' "
        + shlex.quote(f'{{"point": "{fake}", "instance_id": "{world.instance.pk}"}}')
        + f" > {world.area()}/points/{fake}/point.json",
    )
    policy = policy_for(world.instance)
    BackupPolicy.objects.filter(pk=policy.pk).update(
        keep_hourly=0, keep_daily=1, keep_weekly=0, keep_monthly=0
    )
    store = store_for(world.instance, world.app_host)
    with host_connection(world.backup_host) as bconn:
        policy = policy_for(world.instance)
        kept = retention_apply(None, bconn, instance=world.instance, store=store, policy=policy)
    assert second.point_name in kept and fake not in kept
    assert not Backup.objects.filter(instance=world.instance, point_name=fake).exists()
    assert Backup.objects.get(pk=second.pk).status == BackupStatus.SUCCEEDED
    assert {first.point_name, second.point_name} <= set(world.points_on_disk())
    backup1("rm", "-rf", f"{world.area()}/points/{fake}")


def test_the_key_works_only_from_the_app_hosts_own_address(points):
    world, first, _, _ = points
    key = f"{world.app_host.data_root}/.ssh/backup_ed25519"
    known = f"{world.app_host.data_root}/.ssh/known_hosts_backup"
    target = f"{world.backup_host.ssh_user}@{world.backup_host.peer_address}"
    # The same key and pin, copied to app2's container (another address): refused by from=.
    for path, dest in ((key, "/tmp/stolen_key"), (known, "/tmp/stolen_known")):
        subprocess.run(
            ["docker", "exec", "-i", "panel-lab-app2", "sh", "-c", f"umask 077; cat > {dest}"],
            input=open(path, "rb").read(),
            check=True,
            timeout=30,
        )
    out = sh(
        "docker",
        "exec",
        "panel-lab-app2",
        "sh",
        "-c",
        "rsync --list-only -e 'ssh -i /tmp/stolen_key -o BatchMode=yes -o IdentitiesOnly=yes "
        "-o UserKnownHostsFile=/tmp/stolen_known -o StrictHostKeyChecking=yes -p 22' "
        f"{target}: ; echo rc=$?; rm -f /tmp/stolen_key /tmp/stolen_known",
        check=False,
    )
    # From app1 the same listing is let through.
    code, ok = as_app_host(world, 'rsync --list-only -e "$E" $B: ; echo rc=$?')
    assert "rc=0" in ok, ok
    assert "rc=0" not in out
    line = backup1("sh", "-c", "grep -F 'panel-backup@lab-app1' ~/.ssh/authorized_keys")
    assert line.startswith('restrict,from="') and "panel-backup-rsync" in line
