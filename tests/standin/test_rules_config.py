"""S1: the products' database configuration lives in their home, written on the first start.

Rule: "The Docker entrypoint generates application configuration on first start; not all of
these files are regenerated on subsequent starts", except with ``ATL_FORCE_CFG_UPDATE=true``
(README JIRA/CONFLUENCE/BAMBOO "Container configuration",
https://atlassian.github.io/data-center-helm-charts/containers/JIRA/); "Recreated Pods will
still connect to the old database, because dbconfig.xml is not overwritten"
(https://github.com/atlassian/data-center-helm-charts/issues/324). Bitbucket reads ``JDBC_*``
as Spring Boot properties, which outrank ``shared/bitbucket.properties``
(https://docs.spring.io/spring-boot/reference/features/external-config.html); the image never
writes that file. Crowd reads no database variable (README CROWD): its setup writes
``shared/crowd.cfg.xml``.
"""

from __future__ import annotations

import pytest

from tests.standin.driver import PRODUCTS, UP, Postgres, stays, versions, wait_log

pytestmark = [pytest.mark.lab, pytest.mark.image_rules]

GENERATED = ["jira-software", "jira-servicemanagement", "confluence", "bamboo"]


def names(text: str | None, database) -> bool:
    return text is not None and database.jdbc_url in text and database.user in text


@pytest.mark.parametrize("product", GENERATED)
def test_the_config_file_is_written_on_the_first_start_only(product, rules_pg, image_under_test):
    a, b = rules_pg.new_database(), rules_pg.new_database()
    app = image_under_test(product, versions(product)[-1])
    config = PRODUCTS[product]["config"]

    app.start(a)
    app.wait_status(*UP)
    assert names(app.home_file(config), a)
    assert rules_pg.connections(a) > 0

    # A later start whose environment names B still uses A: the file is not rewritten.
    app.start(b)
    app.wait_status(*UP)
    text = app.home_file(config)
    assert names(text, a) and b.jdbc_url not in text
    assert rules_pg.connections(a) > 0
    assert rules_pg.connections(b) == 0

    # ATL_FORCE_CFG_UPDATE=true regenerates it from the environment.
    app.start(b, {"ATL_FORCE_CFG_UPDATE": "true"})
    app.wait_status(*UP)
    assert names(app.home_file(config), b)
    assert rules_pg.connections(b) > 0
    app.stop()


@pytest.mark.parametrize(
    "product",
    [
        *GENERATED,
        pytest.param("crowd", marks=pytest.mark.needs_standin_api),
        "bitbucket",
    ],
)
def test_a_copied_home_with_a_stale_file_never_reaches_the_new_database(
    product, rules_pg, image_under_test
):
    source_db = rules_pg.new_database()
    source = image_under_test(product, versions(product)[-1])
    if product == "crowd":
        source.start()
        source.wait_status("FIRST_RUN")
        assert source.crowd_setup(source_db)[0] == 201
    elif product == "bitbucket":
        # Bitbucket uses its properties file only without JDBC_URL (a migrated instance).
        source.put_home_file(
            "shared/bitbucket.properties",
            f"jdbc.url={source_db.jdbc_url}\njdbc.user={source_db.user}\n"
            f"jdbc.password={source_db.password}\n",
        )
        source.start()
    else:
        source.start(source_db)
    source.wait_status(*UP)
    source.stop()

    # The restore: the home is copied to another instance with its own database server,
    # whose environment names its own database.
    other = Postgres()
    try:
        copy = source.copy_home(other.box)
        try:
            mine = other.new_database()
            copy.start(None if product == "bitbucket" else mine)
            assert "RUNNING" not in stays(copy, 4)
            assert other.connections(mine) == 0
            # It tried the database the stale file names, and says so.
            wait_log(copy, source_db.name)
        finally:
            copy.close()
    finally:
        other.close()


def test_bitbucket_environment_beats_its_properties_file(rules_pg, image_under_test):
    a, b = rules_pg.new_database(), rules_pg.new_database()
    app = image_under_test("bitbucket", versions("bitbucket")[-1])
    app.start(b)
    app.wait_status(*UP)
    # The image writes no properties file (it appears only with a database migration).
    assert app.home_file("shared/bitbucket.properties") is None
    app.stop()

    app.put_home_file(
        "shared/bitbucket.properties",
        f"jdbc.url={a.jdbc_url}\njdbc.user={a.user}\njdbc.password={a.password}\n",
    )
    app.start(b)
    app.wait_status(*UP)
    assert rules_pg.connections(b) > 0 and rules_pg.connections(a) == 0

    app.start()  # no JDBC_URL: now the file counts
    app.wait_status(*UP)
    assert rules_pg.connections(a) > 0
    app.stop()
