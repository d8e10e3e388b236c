"""Instance logs (issue #17): bounded, sanitized, scoped; the lab reads real ones in
tests/instances/test_instances_lab.py. Here the remote read is replaced by a recorded answer."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest

from provisioning import logs as logs_module
from provisioning.remote import HostUnreachable
from provisioning.remote.ssh import CommandResult
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


class _Conn:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.argv: list[str] = []

    def run(self, argv: list[str], **kwargs: Any) -> CommandResult:
        self.argv = argv
        return CommandResult(stdout=self.stdout, stderr="", exit_code=0, duration_ms=1)


@pytest.fixture
def placed(acme, app_host):
    return make_instance(acme, "acme-jira", host=app_host)


@pytest.fixture
def remote(monkeypatch):
    """``remote(stdout)`` makes the next reads answer ``stdout``; returns the connection."""

    def install(stdout: str = "", *, fail: bool = False) -> _Conn:
        conn = _Conn(stdout)

        @contextmanager
        def connect(host: Any, **kwargs: Any):
            if fail:
                raise HostUnreachable("Cannot reach app-one at 127.0.0.11:2222 over SSH")
            yield conn

        monkeypatch.setattr(logs_module, "host_connection", connect)
        return conn

    return install


def test_the_newest_lines_come_without_compose_prefixes_and_without_secrets(placed, remote):
    conn = remote(
        "acme-jira-app-1  | 2026-12-03T07:00:00Z standin: starting\n"
        f"acme-jira-app-1  | 2026-12-03T07:00:01Z jdbc password={placed.db_password}\n"
    )
    read = logs_module.instance_logs(placed, service="app", lines=50)
    assert "standin: starting" in read.text and "acme-jira-app-1" not in read.text
    assert placed.db_password not in read.text
    assert conn.argv[-3:] == ["--tail", "50", "app"]
    assert "--project-name" in conn.argv and "acme-jira" in conn.argv


def test_a_huge_log_keeps_only_its_newest_part(placed, remote):
    remote("\n".join(f"line {i} " + "x" * 100 for i in range(5000)))
    read = logs_module.instance_logs(placed, lines=1000)
    assert read.truncated and len(read.text.encode()) <= logs_module.LOG_BYTES_MAX
    assert read.text.rstrip().endswith("line 4999 " + "x" * 100)


def test_the_page_refuses_a_bad_service_and_bad_line_counts(browser, alice, placed, remote):
    remote("ok")
    url = f"/instances/{placed.pk}/logs/"
    assert browser(alice).get(url, {"service": "proxy"}).status_code == 400
    for lines in ("0", "5000", "many"):
        response = browser(alice).get(url, {"lines": lines})
        assert response.status_code == 400 and "lines" in response.content.decode()
    assert browser(alice).get(url).status_code == 200


def test_another_tenants_instance_answers_404_on_the_page_and_the_api(
    browser, api, charlie, placed, remote
):
    remote("secret stuff")
    assert browser(charlie).get(f"/instances/{placed.pk}/logs/").status_code == 404
    assert api(charlie).get(f"/api/instances/{placed.pk}/logs/").status_code == 404


def test_the_api_answers_the_lines_400_with_the_field_and_says_when_the_host_is_away(
    api, alice, placed, remote
):
    remote("acme-jira-db-1 | ready")
    answer = api(alice).get(f"/api/instances/{placed.pk}/logs/", {"service": "db"})
    assert answer.status_code == 200
    assert answer.json()["text"] == "ready" and answer.json()["service"] == "db"
    bad = api(alice).get(f"/api/instances/{placed.pk}/logs/", {"lines": "-3"})
    assert bad.status_code == 400 and "lines" in bad.json()
    remote(fail=True)
    away = api(alice).get(f"/api/instances/{placed.pk}/logs/").json()
    assert away["available"] is False and away["text"] == ""
    assert "cannot be read now" in away["error"]


def test_an_instance_on_no_host_says_it_has_no_logs(browser, alice, acme):
    unplaced = make_instance(acme, "acme-new", status="pending")
    page = browser(alice).get(f"/instances/{unplaced.pk}/logs/").content.decode()
    assert "has no logs" in page


@pytest.fixture
def connects(monkeypatch) -> tuple[list[str], dict[str, bool]]:
    """Counts SSH connections the log reads open; ``state["fail"]`` makes the host not answer."""
    calls: list[str] = []
    state = {"fail": False}

    @contextmanager
    def connect(host: Any, **kwargs: Any):
        calls.append(host.name)
        if state["fail"]:
            raise HostUnreachable("Cannot reach app-one at 127.0.0.11:2222 over SSH")
        yield _Conn("acme-jira-app-1  | line\n")

    monkeypatch.setattr(logs_module, "host_connection", connect)
    return calls, state


def test_followers_of_one_instance_share_one_read_every_few_seconds(placed, connects, monkeypatch):
    calls, _ = connects
    first = logs_module.instance_logs(placed, service="app", lines=50)
    for _ in range(20):  # twenty followers, or one client in a loop
        assert logs_module.instance_logs(placed, service="app", lines=50).text == first.text
    assert calls == ["app-one"]
    logs_module.instance_logs(placed, service="db", lines=50)  # another container: its own read
    assert calls == ["app-one", "app-one"]
    monkeypatch.setattr(logs_module, "LOGS_FRESH_SECONDS", 0)  # kept no time at all
    logs_module.instance_logs(placed, service="app", lines=10)
    logs_module.instance_logs(placed, service="app", lines=10)
    assert len(calls) == 4


def test_a_host_that_does_not_answer_is_asked_once_not_on_every_poll(placed, connects):
    calls, state = connects
    state["fail"] = True
    for _ in range(5):
        with pytest.raises(logs_module.LogsUnavailable, match="cannot be read now"):
            logs_module.instance_logs(placed, service="app", lines=20)
    assert calls == ["app-one"]
