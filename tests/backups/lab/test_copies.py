"""Copies are mute (issue #13 P4): production pointed at the lab's mail sink delivers its mail
and polls its mailbox (the positive control); a copy restored onto app2 and a drill's scratch
copy keep production's mail servers in their database yet send and fetch nothing, and their
application links point under ``.applink-disabled.invalid``.

The sink is attached to each copy's network before the copy reaches RUNNING, so a copy that
did mail would be seen at the sink too; the stand-in also counts every attempt, reachable or
not (``info.mail``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backups import operations as backup_operations
from backups import restore as backup_restore
from backups.models import Backup, RestoreDrill
from backups.services import backup_start, drill_start, restore_start
from panel.access import access_for_user
from provisioning.models import AtlassianInstance, Host
from tests.support.backup_lab import LabWorld, sh, wait_ok
from tests.support.lab import step_text
from tests.support.mail_sink import ALIAS, POP_PORT, SMTP_PORT, MailSink

pytestmark = [pytest.mark.lab, pytest.mark.django_db]

LINK = "http://wiki.acme.example:8090/wiki"
NEUTRALISED = "https://wiki.acme.example.applink-disabled.invalid/wiki"
POLL_WAIT = 7  # longer than the stand-in's POP poll (STANDIN_MAIL_POLL_SECONDS, default 5 s)


@pytest.fixture(scope="module")
def app2(lab: LabWorld, django_db_blocker: Any) -> Host:
    """The lab's second app host, an app host of the world's backup host (enrolled once; the
    world removes its key and the copies' directories on it)."""
    with django_db_blocker.unblock():
        return lab.app2_host()


@pytest.fixture(scope="module")
def sink(lab: LabWorld) -> Iterator[MailSink]:
    """The mail sink, reachable from production as mail.lab.invalid, and production's own mail
    settings (kept in its database, so every point and copy carries them) pointing at it."""
    sink = MailSink()
    try:
        sink.attach(f"panel-edge-{lab.instance.name}")
        servers = {
            "smtp": {"host": ALIAS, "port": SMTP_PORT},
            "pop": {"host": ALIAS, "port": POP_PORT},
        }
        lab.api("mail", servers, method="PUT")
        lab.api("applinks", {"url": LINK})
        yield sink
    finally:
        try:
            # Later tests of the package copy production too: leave it without mail servers.
            lab.api("mail", {"smtp": None, "pop": None}, method="PUT")
        finally:
            sink.close()


@pytest.fixture
def sink_on_copies(monkeypatch: pytest.MonkeyPatch, sink: MailSink) -> list[str]:
    """Attach the sink to each restored copy's network right after its containers start and
    before it answers RUNNING (when a product sends its first mail). Returns their names."""
    copies: list[str] = []
    wait_running = backup_restore.wait_running

    def attach_then_wait(ctx: Any, conn: Any, target: AtlassianInstance, **kwargs: Any) -> Any:
        sink.attach(f"panel-edge-{target.name}")
        copies.append(target.name)
        return wait_running(ctx, conn, target, **kwargs)

    monkeypatch.setattr(backup_restore, "wait_running", attach_then_wait)
    return copies


def _point(lab: LabWorld) -> Backup:
    op = wait_ok(backup_start(actor=access_for_user(lab.admin), instance=lab.instance))
    return Backup.objects.get(pk=op.result["backup"])


def _addresses(project: str) -> set[str]:
    """Every address the app container of ``project`` has, on any network."""
    cid = sh(
        "docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", "label=com.docker.compose.service=app",
    ).split()[0]  # fmt: skip
    networks = json.loads(sh("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", cid))
    return {n["IPAddress"] for n in networks.values()}


def _mute_report(lab: LabWorld, sink: MailSink, copy: AtlassianInstance) -> dict[str, Any]:
    """Give ``copy`` reasons to mail (a new item) and time to poll, then read what it did."""
    lab.api("items", {"title": "would notify watchers"}, instance=copy)
    time.sleep(POLL_WAIT)
    addresses = _addresses(copy.name)
    return {
        "info": lab.api("info", instance=copy),
        "sent": [m for m in sink.messages() if m["peer"] in addresses]
        + sink.messages(base_url=copy.base_url),
        "polled": [p for p in sink.pop_peers() if p in addresses],
    }


def _assert_mute(report: dict[str, Any]) -> None:
    mail = report["info"]["mail"]
    assert mail["send_disabled"] is True and mail["fetch_disabled"] is True, mail
    assert mail["attempted"] == 0 and mail["fetch_attempts"] == 0, mail
    assert report["sent"] == [] and report["polled"] == []
    # the copy's links were rewritten in its own database; nothing points at the real wiki
    assert report["info"]["applinks"] == [NEUTRALISED]


def test_production_pointed_at_the_sink_delivers_its_mail_and_polls_its_mailbox(
    lab: LabWorld, sink: MailSink
) -> None:
    lab.api("items", {"title": "production notifies"})
    got = sink.wait_message(
        lambda m: m["headers"].get("X-Standin-Base-Url") == lab.instance.base_url,
        what="production's notification",
    )
    assert "item created" in got["subject"]
    time.sleep(POLL_WAIT)
    production = _addresses(lab.instance.name)
    assert any(p in production for p in sink.pop_peers())
    mail = lab.api("info")["mail"]
    assert mail["send_disabled"] is False and mail["attempted"] >= 1 and mail["delivered"] >= 1
    assert mail["fetch_attempts"] >= 1
    assert lab.api("info")["applinks"] == [LINK]


def test_a_copy_restored_onto_app2_sends_and_fetches_nothing_and_its_links_point_nowhere(
    lab: LabWorld, staff: Any, app2: Host, sink: MailSink, sink_on_copies: list[str]
) -> None:
    point = _point(lab)
    name = f"b{lab.suffix}-mute"
    lab.extra_projects.append(name)
    try:
        op = wait_ok(
            restore_start(
                actor=staff,
                backup=point,
                mode="new_instance",
                name=name,
                hostname=f"{name}.staging.example",
                host=app2,
            )
        )
        copy = AtlassianInstance.objects.get(name=name)
        assert copy.host == app2 and sink_on_copies == [name]
        assert "Neutralised 1 application link(s)" in step_text(op)
        # the panel knows it is a copy, and of what, from when
        assert copy.outbound_disabled is True and copy.copy_of == lab.instance
        assert copy.copy_of_name == lab.instance.name and copy.copy_point == point.pk
        assert copy.copy_point_taken_at == point.taken_at
        # the copy still holds production's mail servers: only the JVM flags keep it quiet
        assert lab.api("mail", instance=copy)["servers"]["smtp"]["host"] == ALIAS
        report = _mute_report(lab, sink, copy)
        _assert_mute(report)
        # production, unchanged, still mails the same sink and keeps its real link
        lab.api("items", {"title": "production still notifies"})
        sink.wait_message(
            lambda m: "production still notifies" in m["subject"], what="production's mail"
        )
        assert lab.api("info")["applinks"] == [LINK]
    finally:
        sink.detach(f"panel-edge-{name}")


def test_a_drill_sends_and_fetches_nothing_and_its_links_point_nowhere(
    lab: LabWorld,
    staff: Any,
    sink: MailSink,
    sink_on_copies: list[str],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.PANEL_BACKUP_DRILL_EXTRA_ENV = {
        "STANDIN_STARTUP_SECONDS": "2",
        "STANDIN_MAIL_POLL_SECONDS": "1",
    }
    reports: list[dict[str, Any]] = []
    scratch_remove = backup_operations.scratch_remove

    def report_then_remove(ctx: Any, scratch: AtlassianInstance) -> bool:
        # The scratch copy is removed when the drill ends: look at it just before (and remove
        # it whatever the look finds).
        try:
            reports.append(
                {"marked": scratch.outbound_disabled, "of": scratch.copy_of_name}
                | _mute_report(lab, sink, scratch)
            )
        finally:
            sink.detach(f"panel-edge-{scratch.name}")
        return scratch_remove(ctx, scratch)

    monkeypatch.setattr(backup_operations, "scratch_remove", report_then_remove)
    point = _point(lab)
    op = wait_ok(drill_start(actor=staff, instance=lab.instance))
    drill = RestoreDrill.objects.get(operation=op)
    assert drill.point_name == point.point_name and drill.status == RestoreDrill.Status.PASSED
    assert sink_on_copies == [drill.scratch_name] and len(reports) == 1
    assert reports[0]["marked"] is True and reports[0]["of"] == lab.instance.name
    _assert_mute(reports[0])
    assert drill.cleaned_up
