"""Logs stay quiet for ordinary events (issue #17): a 403 or a 404 is one line without a
traceback, a failure of the panel's own keeps its traceback, and a process starting up does not
announce every library on the way (one line per process: see test_demo_script.py).

The lines are read from the panel's own configured console handler (settings.LOGGING), the one
gunicorn's terminal shows, not from pytest's capture, which has no filters."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse

from panel.sanitize import SanitizeFilter


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the panel's console handler writes, while the test runs."""
    handler = next(
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, SanitizeFilter) for f in h.filters)
    )
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def test_a_forbidden_page_logs_one_line_without_a_traceback(console, bob):
    client = Client()
    client.force_login(bob)  # a viewer: creating an instance is refused with PermissionDenied
    response = client.get(reverse("provisioning:instance_create"))
    assert response.status_code == 403
    assert console.getvalue() == "Forbidden (Permission denied): /instances/new/\n"


def test_another_tenants_instance_logs_one_not_found_line(console, charlie, acme_jira):
    client = Client()
    client.force_login(charlie)
    url = reverse("provisioning:instance_detail", args=[acme_jira.pk])
    assert client.get(url).status_code == 404
    assert console.getvalue() == f"Not Found: {url}\n"


def test_a_server_error_keeps_its_traceback(console):
    try:
        raise RuntimeError("the panel broke")
    except RuntimeError:
        logging.getLogger("django.request").error(
            "Internal Server Error: /x/", exc_info=True, extra={"status_code": 500}
        )
    lines = console.getvalue().splitlines()
    assert lines[0] == "Internal Server Error: /x/"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: the panel broke"


def test_start_up_announcements_of_libraries_are_not_logged(console):
    # django-axes says its version and rule at INFO in every process that starts Django.
    logging.getLogger("axes.apps").info("AXES: BEGIN version 8.3.1, blocking by combination")
    # kombu says the embedded filesystem broker's URL names no host, in every worker process.
    logging.getLogger("kombu.connection").warning(
        "No hostname was supplied. Reverting to default 'localhost'"
    )
    # celery says "Connected to <broker>" before its own "ready." line.
    logging.getLogger("celery.worker.consumer.connection").info("Connected to filesystem://")
    assert console.getvalue() == ""
    # Their other warnings still get through.
    logging.getLogger("kombu.connection").warning("Secure redis scheme specified (rediss)")
    assert console.getvalue() == "Secure redis scheme specified (rediss)\n"
