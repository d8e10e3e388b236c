"""The health probe follows each product (path, key, 503/500 bodies) and the rollout's wait
treats MAINTENANCE as progress and a lasting ERROR as a failure; monitoring does not count
MAINTENANCE (or a setup still to be finished) towards DEGRADED."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from panel.operations import OperationFailed
from provisioning import rollout
from provisioning.models import InstanceHealthCheck
from provisioning.monitoring import instance_drift, instance_health_record
from provisioning.remote.ssh import CommandResult
from tests.support.factories import make_instance

# --- the probe script, run for real against a local HTTP server ------------------------------


class _Handler(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, str]] = {}

    def do_GET(self) -> None:
        code, body = self.answers.get(self.path, (404, '{"error": "not found"}'))
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, tuple[int, str]]]]:
    answers: dict[str, tuple[int, str]] = {}
    handler = type("Handler", (_Handler,), {"answers": answers})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    httpd.shutdown()
    httpd.server_close()


class ProbeConnection:
    """Runs the probe's own script locally, with the app's port mapped to the test server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.urls: list[str] = []

    def run(self, argv: list[str], **_: Any) -> CommandResult:
        script, url = argv[-2], argv[-1]
        assert argv[:2] == ["docker", "compose"] and "exec" in argv
        self.urls.append(url)
        path = url.split("/", 3)[3]
        out = subprocess.run(
            [sys.executable, "-c", script, f"{self.base}/{path}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return CommandResult(out.stdout, out.stderr, out.returncode, 1)


@pytest.mark.django_db
def test_a_503_maintenance_answer_gives_its_state_code_and_body(acme, app_host, server):
    base, answers = server
    answers["/status"] = (503, '{"state": "MAINTENANCE"}')
    inst = make_instance(acme, "acme-jira", host=app_host)
    conn = ProbeConnection(base)
    healthy, state, detail = rollout.instance_probe(conn, inst)  # type: ignore[arg-type]
    assert (healthy, state) == (False, "MAINTENANCE")
    assert detail == 'HTTP 503: {"state": "MAINTENANCE"}'
    assert conn.urls == ["http://localhost:8080/status"]


@pytest.mark.django_db
def test_a_500_error_answer_keeps_its_body(acme, app_host, server):
    base, answers = server
    answers["/jira/status"] = (500, '{"state": "ERROR", "reason": "upgraded by a newer version"}')
    inst = make_instance(acme, "acme-jira", host=app_host, context_path="/jira")
    healthy, state, detail = rollout.instance_probe(ProbeConnection(base), inst)  # type: ignore[arg-type]
    assert (healthy, state) == (False, "ERROR")
    assert detail.startswith("HTTP 500: ") and "upgraded by a newer version" in detail


@pytest.mark.django_db
def test_bamboo_is_asked_on_its_rest_path_and_its_status_key_is_read(acme, app_host, server):
    base, answers = server
    answers["/status"] = (404, "{}")  # Bamboo's /status is not its health answer
    answers["/rest/api/latest/status"] = (200, '{"status": "RUNNING"}')
    inst = make_instance(acme, "acme-bamboo", host=app_host, product="bamboo", version="9.6.0")
    conn = ProbeConnection(base)
    assert rollout.instance_probe(conn, inst)[:2] == (True, "RUNNING")  # type: ignore[arg-type]
    assert conn.urls == ["http://localhost:8085/rest/api/latest/status"]


@pytest.mark.django_db
def test_crowd_with_an_empty_context_is_asked_under_crowd(acme, app_host, server):
    base, answers = server
    answers["/crowd/status"] = (200, '{"state": "FIRST_RUN"}')
    inst = make_instance(acme, "acme-crowd", host=app_host, product="crowd", version="5.3.0")
    conn = ProbeConnection(base)
    assert rollout.instance_probe(conn, inst)[:2] == (False, "FIRST_RUN")  # type: ignore[arg-type]
    assert conn.urls == ["http://localhost:8095/crowd/status"]


@pytest.mark.django_db
def test_nothing_listening_is_no_answer_with_the_reason(acme, app_host):
    inst = make_instance(acme, "acme-jira", host=app_host)
    healthy, state, detail = rollout.instance_probe(
        ProbeConnection("http://127.0.0.1:9"),  # type: ignore[arg-type]
        inst,
    )
    assert (healthy, state) == (False, "")
    assert detail.startswith("no answer: URLError") and "refused" in detail


def test_the_state_is_read_from_the_products_key_or_state():
    assert rollout.status_state('{"status": "RUNNING"}', "status") == "RUNNING"
    assert rollout.status_state('{"state": "STARTING"}', "status") == "STARTING"
    assert rollout.status_state("<html>Bad gateway</html>", "state") == ""
    assert rollout.status_state('["RUNNING"]', "state") == ""


# --- wait_running with a scripted app and a virtual clock ------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Ctx:
    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str]] = []

    def step(self, message: str, *, level: str = "info", output: str = "", **_: Any) -> None:
        self.steps.append((level, message, output))

    def check_cancelled(self) -> None:
        pass

    def text(self) -> str:
        return "\n".join(f"{level} {message} {output}" for level, message, output in self.steps)


ANSWERS = {
    "STARTING": (False, "STARTING", '{"state": "STARTING"}'),
    "MAINTENANCE": (False, "MAINTENANCE", 'HTTP 503: {"state": "MAINTENANCE"}'),
    "ERROR": (False, "ERROR", 'HTTP 500: {"state": "ERROR", "why": "schema is newer"}'),
    "FIRST_RUN": (False, "FIRST_RUN", '{"state": "FIRST_RUN"}'),
    "RUNNING": (True, "RUNNING", '{"state": "RUNNING"}'),
}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Callable[..., Clock]:
    """Script the app's answers, one per poll (the last one repeats); one poll per second."""
    settings.PANEL_ROLLOUT_POLL_INTERVAL = 1
    settings.PANEL_ROLLOUT_MAINTENANCE_TIMEOUT = 60
    settings.PANEL_ROLLOUT_ERROR_GRACE = 10
    clock = Clock()
    monkeypatch.setattr(rollout, "time", clock)
    script: list[str] = []

    def probe(conn: Any, instance: Any) -> tuple[bool, str, str]:
        return ANSWERS[script.pop(0) if len(script) > 1 else script[0]]

    monkeypatch.setattr(rollout, "instance_probe", probe)

    def play(*answers: tuple[str, int]) -> Clock:
        for state, times in answers:
            script.extend([state] * times)
        return clock

    return play


def _wait(instance: Any, ctx: Ctx, *, first: bool = False, timeout: float = 10) -> float:
    return rollout.wait_running(ctx, None, instance, first=first, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_a_reindex_longer_than_the_timeout_is_waited_for(acme, app_host, app):
    inst = make_instance(acme, "acme-jira", host=app_host)
    app(("STARTING", 3), ("MAINTENANCE", 40), ("RUNNING", 1))
    ctx = Ctx()
    elapsed = _wait(inst, ctx, timeout=10)
    assert elapsed == 43
    text = ctx.text()
    assert "acme-jira is in MAINTENANCE (a reindex holds its start-up)" in text
    assert "does not count against the 10 s" in text
    assert "answers RUNNING after 43 s (40 s of them in MAINTENANCE)" in text


@pytest.mark.django_db
def test_the_timeout_counts_only_the_time_outside_maintenance(acme, app_host, app):
    inst = make_instance(acme, "acme-jira", host=app_host)
    clock = app(("STARTING", 6), ("MAINTENANCE", 30), ("STARTING", 1))
    started = clock.now
    with pytest.raises(OperationFailed, match="did not answer RUNNING within 10 s"):
        _wait(inst, Ctx(), timeout=10)
    # 6 s starting and 30 s of maintenance, then 5 more seconds starting
    assert clock.now - started == 41


@pytest.mark.django_db
def test_maintenance_beyond_its_own_limit_fails(acme, app_host, app):
    inst = make_instance(acme, "acme-jira", host=app_host)
    clock = app(("MAINTENANCE", 1))
    started = clock.now
    with pytest.raises(OperationFailed, match=r"was in MAINTENANCE for 61 s, longer than the 60 s"):
        _wait(inst, Ctx(), timeout=10)
    assert clock.now - started == 61


@pytest.mark.django_db
def test_an_error_beyond_the_grace_fails_at_once_quoting_the_body(acme, app_host, app):
    inst = make_instance(acme, "acme-jira", host=app_host)
    clock = app(("STARTING", 2), ("ERROR", 1))
    started = clock.now
    ctx = Ctx()
    with pytest.raises(OperationFailed) as failed:
        _wait(inst, ctx, timeout=600)
    assert "answered ERROR for 10 s (the grace is 10 s)" in str(failed.value)
    assert '"why": "schema is newer"' in str(failed.value)
    assert clock.now - started == 12  # long before the 600 s timeout
    assert ("warning", "acme-jira answers ERROR; the rollout fails if it lasts 10 s") in [
        s[:2] for s in ctx.steps
    ]


@pytest.mark.django_db
def test_an_error_shorter_than_the_grace_is_waited_out(acme, app_host, app):
    inst = make_instance(acme, "acme-jira", host=app_host)
    app(("ERROR", 5), ("STARTING", 2), ("ERROR", 5), ("RUNNING", 1))
    assert _wait(inst, Ctx(), timeout=60) == 12


@pytest.mark.django_db
def test_first_run_ends_a_first_start_and_a_start_of_an_app_never_seen_running(acme, app_host, app):
    inst = make_instance(acme, "acme-crowd", host=app_host, product="crowd", version="5.3.0")
    app(("STARTING", 2), ("FIRST_RUN", 1))
    assert _wait(inst, Ctx(), first=True) == 2
    # a restart before anyone finished the setup wizard comes back to FIRST_RUN: that is fine
    assert _wait(inst, Ctx(), first=False) >= 0


@pytest.mark.django_db
def test_a_copy_answering_first_run_has_lost_its_configuration_and_is_not_accepted(
    acme, app_host, app
):
    inst = make_instance(acme, "acme-jira-copy", host=app_host)
    inst.copy_point = uuid.uuid4()
    inst.save(update_fields=["copy_point"])
    app(("FIRST_RUN", 1))
    with pytest.raises(OperationFailed, match=r"last state: FIRST_RUN"):
        _wait(inst, Ctx(), first=False)


@pytest.mark.django_db
def test_first_run_after_the_app_was_seen_running_is_not_accepted(acme, app_host, app):
    inst = make_instance(acme, "acme-crowd", host=app_host, product="crowd", version="5.3.0")
    InstanceHealthCheck.objects.create(instance=inst, ok=True, state="RUNNING")
    app(("FIRST_RUN", 1))
    with pytest.raises(OperationFailed, match=r"within 10 s \(last state: FIRST_RUN\)"):
        _wait(inst, Ctx(), first=False)


# --- monitoring ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_maintenance_is_recorded_but_does_not_make_an_instance_degraded(acme):
    inst = make_instance(acme, "acme-jira", health="healthy")
    for _ in range(4):
        instance_health_record(inst, False, "MAINTENANCE", 'HTTP 503: {"state": "MAINTENANCE"}')
    inst.refresh_from_db()
    assert inst.health == "healthy"
    assert list(inst.health_checks.values_list("state", "ok")) == [("MAINTENANCE", False)] * 4
    # real failures still count, with the maintenance answers in between left out
    instance_health_record(inst, False, "", "no answer: URLError")
    inst.refresh_from_db()
    assert inst.health == "healthy"
    instance_health_record(inst, False, "MAINTENANCE", "HTTP 503")
    instance_health_record(inst, False, "ERROR", "HTTP 500")
    inst.refresh_from_db()
    assert inst.health == "degraded"


@pytest.mark.django_db
def test_first_run_degrades_only_an_app_that_was_once_running(acme):
    crowd = make_instance(acme, "acme-crowd", product="crowd", version="5.3.0", health="healthy")
    for _ in range(3):
        instance_health_record(crowd, False, "FIRST_RUN", '{"state": "FIRST_RUN"}')
    crowd.refresh_from_db()
    assert crowd.health == "healthy"  # its setup wizard waits for the customer
    instance_health_record(crowd, True, "RUNNING", '{"state": "RUNNING"}')
    instance_health_record(crowd, False, "FIRST_RUN", '{"state": "FIRST_RUN"}')
    instance_health_record(crowd, False, "FIRST_RUN", '{"state": "FIRST_RUN"}')
    crowd.refresh_from_db()
    assert crowd.health == "degraded"


class DriftConnection:
    def __init__(self, compose: bytes) -> None:
        self.compose = compose

    def read(self, path: str, missing_ok: bool = False) -> bytes:
        return self.compose

    def run(self, argv: list[str], **_: Any) -> CommandResult:
        return CommandResult("app running\ndb running\n", "", 0, 1)


@pytest.mark.django_db
def test_an_old_crowd_row_without_a_context_is_reported_in_drift_not_moved(acme, app_host):
    compose = b"services: {}\n"
    digest = hashlib.sha256(compose).hexdigest()
    old = make_instance(
        acme,
        "acme-crowd",
        host=app_host,
        product="crowd",
        version="5.3.0",
        deployed_compose_hash=digest,
    )
    problems = instance_drift(DriftConnection(compose), old)  # type: ignore[arg-type]
    assert problems == [
        "Crowd answers at /crowd (its image's default when the context path is empty), but "
        "this instance's base URL is https://acme-crowd.example.com; it was left as it is "
        "because changing it changes the base URL."
    ]
    old.refresh_from_db()
    assert old.context_path == ""
    new = make_instance(
        acme,
        "acme-crowd2",
        host=app_host,
        product="crowd",
        version="5.3.0",
        context_path="/crowd",
        deployed_compose_hash=digest,
    )
    assert instance_drift(DriftConnection(compose), new) == []  # type: ignore[arg-type]
