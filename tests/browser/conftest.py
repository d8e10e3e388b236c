"""End-to-end tests in a real browser: Playwright drives Debian's Chromium (headless) against
pytest-django's live server, with the real Celery worker, real Redis and PostgreSQL, and the
lab's SSH hosts (fixtures of the ``tests.support.lab`` plugin; no no-broker patch here).
Every test saves screenshots under ``test-artifacts/screenshots/`` and fails on any console
error, uncaught page error, failed request or server error answer.

``PANEL_DOCS_SCREENSHOTS=1`` also writes the README's screenshots to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from panel.access import access_for_user
from provisioning.hosts import host_provision
from provisioning.models import Host
from tests.support.factories import PASSWORD
from tests.support.lab import run_operation, step_text
from tests.support.otp import staff_otp_device, totp_now
from tests.support.receivers import SmtpServer, WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("PANEL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-background-networking",  # no reaching for the closed network
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.worker)


# --- the worker and its peers ---------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def _restart_with(worker: Any, wanted: dict[str, str]) -> None:
    """(Re)start ``worker`` with ``wanted`` in its environment, leaving ours as it was (the
    in-process settings must not pick these up)."""
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        worker.stop()
        worker.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class BrowserWorker:
    """The session's real worker and the environment the browser flows need it to have."""

    worker: Any
    env: dict[str, str]

    def ensure_running(self) -> None:
        if not self.worker.alive:
            _restart_with(self.worker, self.env)


@pytest.fixture(scope="session")
def browser_worker(celery_worker_proc, live_server, browser_smtp) -> BrowserWorker:
    """The session's real worker (on the test settings: the lab's images, fast rollouts),
    restarted once so its notification links point at the live server, its webhooks may call
    127.0.0.1, its retries are quick and its mail goes to our SMTP server."""
    env = {
        "PANEL_BASE_URL": live_server.url,
        "PANEL_WEBHOOK_ALLOW_PRIVATE": "1",
        "PANEL_NOTIFICATION_RETRY_DELAYS": "1,2",
        "PANEL_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "PANEL_EMAIL_HOST": "127.0.0.1",
        "PANEL_EMAIL_PORT": str(browser_smtp.port),
        "PANEL_EMAIL_FROM": "panel@panel.test",
    }
    _restart_with(celery_worker_proc, env)
    return BrowserWorker(celery_worker_proc, env)


@pytest.fixture
def live(browser_worker, live_server, transactional_db, settings, browser_smtp) -> str:
    """The live server's URL; the in-process settings match the worker's."""
    browser_worker.ensure_running()
    settings.PANEL_BASE_URL = live_server.url
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", browser_smtp.port
    settings.DEFAULT_FROM_EMAIL = "panel@panel.test"
    settings.PANEL_WEBHOOK_ALLOW_PRIVATE = True
    settings.PANEL_STAFF_REQUIRE_2FA = True  # staff log in with a second factor, as in production
    browser_smtp.clear()
    return live_server.url


# --- the browser ----------------------------------------------------------------------------


@dataclass
class PageProblems:
    """What went wrong in the page: console errors, page errors, failed requests."""

    problems: list[str] = field(default_factory=list)
    # HTTP statuses a test expects (e.g. 400 for a form with errors).
    allowed_statuses: set[int] = field(default_factory=set)

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            text = message.text
            # Chromium reports every 4xx answer in the console too; statuses are judged below.
            if self._allowed_status_text(text):
                return
            self.problems.append(f"console error: {text} ({message.location.get('url', '')})")

    def _allowed_status_text(self, text: str) -> bool:
        match = re.search(r"status of (\d{3})", text)
        return bool(match) and int(match.group(1)) in self.allowed_statuses

    def on_page_error(self, error: Any) -> None:
        self.problems.append(f"page error: {error}")

    def on_request_failed(self, request: Any) -> None:
        failure = request.failure or ""
        # A poll cut short by navigating away is the browser's doing, not a failure.
        if "ERR_ABORTED" in failure:
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def on_response(self, response: Any) -> None:
        if response.status >= 400 and response.status not in self.allowed_statuses:
            self.problems.append(
                f"HTTP {response.status}: {response.request.method} {response.url}"
            )


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(
    live: str, page_problems: PageProblems, monkeypatch: pytest.MonkeyPatch, request
) -> Iterator[Page]:
    """A fresh Chromium page on the live server; the test fails on any page problem."""
    # Playwright's sync API runs an asyncio loop in this thread; the ORM calls the tests make
    # meanwhile are still plain synchronous code (https://playwright.dev/python/docs/library).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(
            base_url=live, viewport={"width": 1280, "height": 900}, locale="en-GB"
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("console", page_problems.on_console)
        page.on("pageerror", page_problems.on_page_error)
        page.on("requestfailed", page_problems.on_request_failed)
        page.on("response", page_problems.on_response)
        try:
            yield page
        finally:
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and failed.failed:
                shot(page, request.node.name, "failure", check_width=False)
            context.close()
            browser.close()
            # While Playwright's loop runs, Django keeps this thread's connections per asyncio
            # context (asgiref Local): close them here, or they outlive the test database.
            connections.close_all()
    assert page_problems.problems == [], "\n".join(page_problems.problems)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def shot(
    page: Page, test_name: str, name: str, *, docs: str = "", check_width: bool = True
) -> Path:
    """Save a screenshot as a test artifact (and, with PANEL_DOCS_SCREENSHOTS=1, as the
    README's ``docs/screenshots/<docs>.png``). A page wider than the window fails the test."""
    if check_width:
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page.url} is {overflow}px wider than the window"
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', test_name)}--{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("PANEL_DOCS_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / f"{docs}.png")
    return path


@pytest.fixture
def screenshot(page: Page, request) -> Callable[..., Path]:
    """``screenshot("step-name", docs="dashboard")`` saves the page as a test artifact."""

    def take(name: str, **kwargs: Any) -> Path:
        return shot(page, request.node.name, name, **kwargs)

    return take


@pytest.fixture
def login(page: Page) -> Callable[..., None]:
    """``login(user)`` logs in through the login page; staff also pass the two-factor step
    with a code from their (test) authenticator."""

    def log_in(user: Any, password: str = PASSWORD) -> None:
        staff = access_for_user(user).is_staff_role
        secret = staff_otp_device(user) if staff else None
        page.goto("/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(password)
        page.locator("#login-submit").click()
        if staff:
            expect(page).to_have_url(re.compile(r"/login/verify/"))
            page.get_by_label("Authentication code").fill(totp_now(secret))
            page.locator("#otp-submit").click()
        expect(page.locator("#current-user")).to_contain_text(user.username)

    return log_in


# --- the lab --------------------------------------------------------------------------------


@pytest.fixture
def lab_app_host(enrol_lab_host, pat) -> Host:
    """Lab host app1, enrolled and provisioned through the panel's services, run in this process
    (the same steps as ``ready_app_host``, kept off the broker so the worker does not race)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("panel.operations.operation_enqueue", lambda op_id: None)
        host = enrol_lab_host("app1")
        op = run_operation(host_provision(actor=access_for_user(pat), host=host))
    assert op.status == "succeeded", step_text(op)
    host.refresh_from_db()
    assert host.status == Host.Status.READY
    return host
