"""S2: each product's health endpoint, its states and Crowd's context and setup.

Rules: Jira/JSM ``<ctx>/status``: 200 with STARTING|STOPPING|FIRST_RUN|RUNNING, 503 MAINTENANCE
("startup is delayed by a reindexing event"), 500 ERROR
(https://support.atlassian.com/jira/kb/jira-status-endpoint-response-meanings/); Confluence and
Bitbucket ``<ctx>/status`` ``.state``; Bamboo ``<ctx>/rest/api/latest/status`` ``.status``
(https://github.com/atlassian/data-center-helm-charts ``src/main/charts/<product>/templates/
statefulset.yaml``); Crowd: ``ATL_TOMCAT_CONTEXTPATH`` "(default: /crowd)" and no database
variables (README CROWD, https://hub.docker.com/r/atlassian/crowd).
"""

from __future__ import annotations

import pytest

from tests.lab.labkit import http_json
from tests.standin.driver import ALL_PRODUCTS, PRODUCTS, UP, stays, versions

pytestmark = [pytest.mark.lab, pytest.mark.image_rules]


@pytest.mark.parametrize("product", ALL_PRODUCTS)
def test_status_path_and_body_per_product(product, rules_pg, image_under_test):
    spec = PRODUCTS[product]
    app = image_under_test(product, versions(product)[-1])
    app.start(rules_pg.new_database())
    code, state = app.wait_status(*UP)
    assert code == 200
    body = http_json(app.url(spec["status_path"]))[1]
    assert set(body) >= {spec["status_key"]}
    if product == "bamboo":
        # Bamboo has no /status: a probe of the wrong path must show, not pass.
        assert http_json(app.url("/status"))[0] == 404
    else:
        assert "status" not in body or spec["status_key"] == "status"
    app.stop()


def test_crowd_lives_under_crowd_even_with_an_empty_context_variable(image_under_test):
    crowd = image_under_test("crowd", versions("crowd")[-1])
    crowd.start(env={"ATL_TOMCAT_CONTEXTPATH": ""})
    assert crowd.context == "/crowd"
    crowd.wait_status(*UP)
    addr, port = crowd.port()
    assert http_json(f"http://{addr}:{port}/crowd/status")[0] == 200
    assert http_json(f"http://{addr}:{port}/status")[0] == 404
    crowd.stop()


def test_crowd_ignores_database_variables_and_waits_in_its_setup(rules_pg, image_under_test):
    database = rules_pg.new_database()
    crowd = image_under_test("crowd", versions("crowd")[-1])
    env = {
        "ATL_DB_TYPE": "postgresql",
        "ATL_JDBC_URL": database.jdbc_url,
        "ATL_JDBC_USER": database.user,
        "ATL_JDBC_PASSWORD": database.password,
    }
    crowd.start(env=env)
    assert stays(crowd, 3) == {"FIRST_RUN"}
    assert rules_pg.connections(database) == 0
    assert crowd.home_file("shared/crowd.cfg.xml") is None
    crowd.stop()


@pytest.mark.needs_standin_api
def test_crowd_connects_after_its_setup_writes_its_cfg(rules_pg, image_under_test):
    database = rules_pg.new_database()
    crowd = image_under_test("crowd", versions("crowd")[-1])
    crowd.start()
    crowd.wait_status("FIRST_RUN")
    bad = crowd.api("POST", "/setup", {"jdbc_url": "mysql://x", "user": "", "password": 1})
    assert bad[0] == 400 and set(bad[1]["fields"]) == {"jdbc_url", "user", "password"}
    assert crowd.crowd_setup(database)[0] == 201
    crowd.wait_status("RUNNING")
    text = crowd.home_file("shared/crowd.cfg.xml")
    assert text and f'name="hibernate.connection.url">{database.jdbc_url}<' in text
    assert rules_pg.connections(database) > 0
    assert crowd.crowd_setup(database)[0] == 409
    # A restart reads the file: RUNNING again without any setup.
    crowd.start()
    crowd.wait_status("RUNNING")
    crowd.stop()


@pytest.mark.needs_setup
@pytest.mark.parametrize(
    ("product", "during"),
    [
        ("jira-software", (503, "MAINTENANCE")),
        ("jira-servicemanagement", (503, "MAINTENANCE")),
        ("confluence", (200, "STARTING")),
    ],
)
def test_maintenance_is_a_503_with_its_state(product, during, rules_pg, image_under_test):
    old, new = versions(product)[0], versions(product)[-1]
    database = rules_pg.new_database()
    app = image_under_test(product, old)
    app.start(database)
    app.wait_status("RUNNING")
    # The upgrade's reindex (lab knob STANDIN_REINDEX_SECONDS; real Jira reindexes itself).
    app.start(database, {"STANDIN_REINDEX_SECONDS": "4"}, version=new)
    seen = set()
    while (status := app.wait_status("RUNNING", during[1]))[1] != "RUNNING":
        seen.add(status)
    assert during in seen
    app.stop()
