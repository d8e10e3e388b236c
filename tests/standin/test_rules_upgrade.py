"""S3: upgrades are one-way.

Rules: Jira's "Build Version check verifies that the version of the data stored in the database
can be used by the version of Jira that is about to run. If the check fails, Jira will fail to
start", one cause being "You upgraded Jira, and then tried to downgrade"
(https://confluence.atlassian.com/jirakb/startup-check-jira-build-version-867185576.html);
Confluence "will not start up because the build number in the home directory [...] is newer"
(https://support.atlassian.com/confluence/kb/after-downgrading-confluence-will-no-longer-run/);
rolling back means restoring the database and the home
(http://confluence.atlassian.com/display/JIRA/Rolling+Back+a+JIRA+Upgrade). On the stand-ins the
database carries the version in ``standin_schema``; the lab's ``X-failing`` tags mark it with X
and then fail, as a failed upgrade leaves an upgraded schema behind.
"""

from __future__ import annotations

import pytest

from tests.standin.driver import ALL_PRODUCTS, failing_tag, is_standin, versions, wait_log

pytestmark = [pytest.mark.lab, pytest.mark.image_rules]

DOWNGRADE_LINE = "database was upgraded by a newer version {new}; this is {old}"


def up(app, database) -> None:
    """Start ``app`` on ``database`` and wait for RUNNING (Crowd: after its setup)."""
    if app.product == "crowd":
        app.start()
        if app.wait_status("RUNNING", "FIRST_RUN")[1] == "FIRST_RUN":
            assert app.crowd_setup(database)[0] == 201
    else:
        app.start(database)
    app.wait_status("RUNNING")


@pytest.mark.needs_setup
@pytest.mark.parametrize(
    "product", ["jira-software", "jira-servicemanagement", "confluence", "bitbucket"]
)
def test_an_older_version_refuses_a_database_a_newer_one_upgraded(
    product, rules_pg, image_under_test
):
    old, new = versions(product)[0], versions(product)[-1]
    database = rules_pg.new_database()
    app = image_under_test(product, old)
    up(app, database)
    app.start(database, version=new)  # the upgrade
    app.wait_status("RUNNING")
    if is_standin():
        assert rules_pg.schema_version(database) == new
        wait_log(app, f"upgrading the database from {old} to {new}")
    app.stop()

    # The old image on the upgraded database (a fresh home, so only the database decides).
    downgrade = image_under_test(product, old)
    downgrade.start(database)
    assert downgrade.wait_status("ERROR") == (500, "ERROR")
    if is_standin():
        wait_log(downgrade, DOWNGRADE_LINE.format(new=new, old=old))
    downgrade.stop()


@pytest.mark.needs_setup
def test_an_older_confluence_refuses_a_home_a_newer_one_upgraded(rules_pg, image_under_test):
    old, new = versions("confluence")[0], versions("confluence")[-1]
    database = rules_pg.new_database()
    app = image_under_test("confluence", old)
    up(app, database)
    app.start(database, version=new)
    app.wait_status("RUNNING")
    app.start(database, version=old)  # same home: its build number is newer
    assert app.wait_status("ERROR") == (500, "ERROR")
    if is_standin():
        wait_log(app, "the build number in the home directory .* is newer")
    app.stop()


@pytest.mark.needs_standin_api  # the -failing tags are the lab's
@pytest.mark.parametrize("product", ALL_PRODUCTS)
def test_a_failing_tag_marks_the_schema_before_it_fails(product, rules_pg, image_under_test):
    old, failing = versions(product)[-1], failing_tag(product)
    assert failing, f"the lab builds no -failing tag of {product}"
    marked = failing.split("-", 1)[0]
    database = rules_pg.new_database()
    app = image_under_test(product, old)
    up(app, database)
    assert rules_pg.schema_version(database) == old

    app.start(database, version=failing)
    assert app.wait_status("ERROR") == (500, "ERROR")
    assert rules_pg.schema_version(database) == marked

    # Going back to the old image is not enough: the database has to be restored too.
    app.start(database, version=old)
    assert app.wait_status("ERROR") == (500, "ERROR")
    if product != "confluence":  # Confluence's home build number refuses first
        wait_log(app, DOWNGRADE_LINE.format(new=marked, old=old))
    app.stop()
