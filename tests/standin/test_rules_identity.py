"""S7: home owner uids and listening ports, as every image's README documents them ("Shared
directory and user IDs": 2001 Jira/JSM, 2002 Confluence, 2003 Bitbucket, 2004 Crowd, 2005
Bamboo; ports 8080; 8090+8091; 7990+7999; 8085+54663, ATL_BROKER_URI default
``nio://0.0.0.0:54663`` in README BAMBOO; 8095), e.g.
https://hub.docker.com/r/atlassian/jira-software. Runs on the real images too."""

from __future__ import annotations

import socket

import pytest

from tests.lab.labkit import docker, wait_for
from tests.standin.driver import ALL_PRODUCTS, PRODUCTS, versions

pytestmark = [pytest.mark.lab, pytest.mark.image_rules]


def _uids(container: str) -> set[int]:
    out = docker(
        "exec",
        container,
        "sh",
        "-c",
        "for f in /proc/[0-9]*/status; do "
        "sed -n 's/^Uid:[[:space:]]*\\([0-9]*\\).*/\\1/p' $f; done",
    ).stdout
    return {int(x) for x in out.split()}


def _accepts(addr: str, port: int) -> bool:
    with socket.create_connection((addr, port), timeout=2):
        return True


@pytest.mark.parametrize("product", ALL_PRODUCTS)
def test_home_owner_and_ports(product, rules_pg, image_under_test):
    spec = PRODUCTS[product]
    app = image_under_test(product, versions(product)[-1])
    app.start(rules_pg.new_database())
    app.wait_status("RUNNING", "FIRST_RUN", timeout=120)
    assert app.home_owner() == (spec["uid"], spec["uid"])
    # The product runs as its own user (PID 1 may be an init running as root on real images).
    assert spec["uid"] in _uids(app.container)
    for port in spec["ports"]:
        addr, host_port = app.port(port)
        wait_for(
            lambda a=addr, p=host_port: _accepts(a, p), timeout=30, what=f"{product} port {port}"
        )
