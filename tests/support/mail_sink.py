"""The lab's mail sink for tests: the stand-in image run with ``STANDIN_ROLE=mail-sink``
(``lab/standin/sink.py``): SMTP on 25, POP3 on 110, and ``GET /messages`` on 8025.

A product reaches it by name once it is attached to the product's network::

    def test_it(mail_sink):
        mail_sink.attach("panel-rules-1234")             # alias mail.lab.invalid there
        ...  # point the product's SMTP/POP settings at mail.lab.invalid:25 / :110
        assert mail_sink.messages(product="jira-software")

``mail_sink`` is a fixture (one sink per test, removed afterwards); a module or package that
wants a longer-lived one uses :class:`MailSink` in a fixture of its own scope and calls
``close()``. Loaded as a pytest plugin from the root ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.lab.labkit import TEST_LABEL, LabNotUp, docker, load_state, published, wait_for

ALIAS = "mail.lab.invalid"  # .invalid never resolves outside the lab (RFC 6761 6.4)
SMTP_PORT = 25
POP_PORT = 110
HTTP_PORT = 8025


def sink_image() -> str:
    """A lab stand-in image (any product: the role, not the product, makes it a sink)."""
    state = load_state()
    versions = [v for v in state["products"]["jira-software"] if "-" not in v]
    return f"{state['image_prefix']}jira-software:{versions[0]}"


class MailSink:
    """One running sink container; ``attach`` it to every network whose products should
    reach it as ``mail.lab.invalid``."""

    def __init__(self, image: str | None = None) -> None:
        self.container = f"panel-lab-mailsink-{secrets.token_hex(4)}"
        self.networks: list[str] = []
        docker(
            "run",
            "-d",
            "--name",
            self.container,
            "--label",
            "panel-lab=1",
            "--label",
            TEST_LABEL,
            "-e",
            "STANDIN_ROLE=mail-sink",
            "-p",
            f"127.0.0.1::{HTTP_PORT}",
            image or sink_image(),
        )
        addr, port = published(self.container, HTTP_PORT)
        self.url = f"http://{addr}:{port}"
        wait_for(lambda: self._get("/status")["state"] == "RUNNING", timeout=30, what="mail sink")

    # -- networks ----------------------------------------------------------------------
    def attach(self, network: str, alias: str = ALIAS) -> None:
        """Join ``network`` under ``alias``, so its containers reach SMTP/POP by that name."""
        docker("network", "connect", "--alias", alias, network, self.container)
        self.networks.append(network)

    def detach(self, network: str) -> None:
        docker("network", "disconnect", "-f", network, self.container, check=False)
        if network in self.networks:
            self.networks.remove(network)

    def address_on(self, network: str) -> str:
        """The sink's IP address on ``network`` (for a product that is given an address)."""
        out = docker(
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks}}",
            self.container,
        ).stdout
        return json.loads(out)[network]["IPAddress"]

    # -- what it received --------------------------------------------------------------
    def _get(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, method=method)  # noqa: S310 - lab
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - lab
            return json.loads(response.read())

    def messages(self, **headers: str) -> list[dict[str, Any]]:
        """Messages received, oldest first; ``product=``/``host=``/``base_url=`` keep those
        whose ``X-Standin-Product``/``-Host``/``-Base-Url`` header matches."""
        names = {"product": "Product", "host": "Host", "base_url": "Base-Url"}
        wanted = {f"X-Standin-{names[k]}": v for k, v in headers.items()}
        return [
            m
            for m in self._get("/messages")["messages"]
            if all(m["headers"].get(h) == v for h, v in wanted.items())
        ]

    def pop_peers(self) -> list[str]:
        """The client address of every POP connection, oldest first."""
        return [p["peer"] for p in self._get("/messages")["pop"]["peers"]]

    def clear(self) -> None:
        """Forget every message and POP connection received so far."""
        self._get("/messages", method="DELETE")

    def wait_message(
        self, match: Callable[[dict[str, Any]], bool], *, timeout: float = 30, what: str = ""
    ) -> dict[str, Any]:
        """Wait for a message that ``match`` accepts; return it."""
        return wait_for(
            lambda: next((m for m in self.messages() if match(m)), None),
            timeout=timeout,
            what=what or "a message at the mail sink",
        )

    def close(self) -> None:
        docker("rm", "-f", "-v", self.container, check=False)


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    """A mail sink for one test; attach it to the networks the test's products are on."""
    try:
        sink = MailSink()
    except LabNotUp as exc:
        pytest.fail(str(exc), pytrace=False)
    yield sink
    sink.close()
