"""Application links live in the product's own tables, so a restored copy carries
production's links (and the panel's neutralising SQL has real rows to rewrite).

Confluence keeps them in ``BANDANA`` under ``applinks.admin.<id>.rpc.url`` and
``.display.url``, each value an XStream ``<string>`` (Atlassian's KB edits exactly those rows:
https://ja.confluence.atlassian.com/confkb/how-to-update-an-application-link-url-manually-674988406.html).
Jira and JSM: the same keys as ``propertyentry``/``propertystring`` rows (unverified on a real
Jira; lab/README.md says so). Bitbucket, Bamboo, Crowd: no public source, no links in the
stand-in. ``needs_standin_api``: on real images links are made in the UI.
"""

from __future__ import annotations

import uuid

import pytest

from tests.standin.driver import versions

pytestmark = [pytest.mark.lab, pytest.mark.image_rules, pytest.mark.needs_standin_api]

URL = "https://jira.acme.example/?a=1&b=<2>"  # & and < show the XML escaping


def _stored(rules_pg, product: str, database: str, link_id: str) -> dict[str, tuple[str, str]]:
    """{key suffix: (context, raw value)} of one link, straight from the product's table."""
    uuid.UUID(link_id)  # the stand-in's own id, checked before it goes into SQL
    if product == "confluence":
        sql = (
            "SELECT bandanacontext || '|' || bandanakey || '|' || bandanavalue "  # noqa: S608 - a checked UUID
            f"FROM bandana WHERE bandanakey LIKE 'applinks.admin.{link_id}.%' ORDER BY bandanakey"
        )
    else:
        sql = (
            "SELECT e.entity_name || '|' || e.property_key || '|' || s.propertyvalue "  # noqa: S608 - a checked UUID
            "FROM propertyentry e JOIN propertystring s ON s.id = e.id "
            f"WHERE e.property_key LIKE 'applinks.admin.{link_id}.%' ORDER BY e.property_key"
        )
    prefix = f"applinks.admin.{link_id}."
    rows = [line.split("|", 2) for line in rules_pg.psql(sql, database).splitlines()]
    return {key.removeprefix(prefix): (ctx, value) for ctx, key, value in rows}


@pytest.mark.parametrize("product", ["jira-software", "jira-servicemanagement", "confluence"])
def test_an_application_link_is_stored_in_the_products_own_table(
    product, rules_pg, image_under_test
):
    database = rules_pg.new_database()
    app = image_under_test(product, versions(product)[-1])
    app.start(database)
    app.wait_status("RUNNING")
    assert app.info()["applinks"] == []
    code, body = app.api("POST", "/applinks", {"url": URL})
    assert code == 201 and body["url"] == URL
    stored = _stored(rules_pg, product, database.name, body["id"])
    if product == "confluence":
        value = "<string>https://jira.acme.example/?a=1&amp;b=&lt;2&gt;</string>"
        assert stored == {"rpc.url": ("_GLOBAL", value), "display.url": ("_GLOBAL", value)}
    else:
        assert stored == {
            "rpc.url": ("jira.properties", URL),
            "display.url": ("jira.properties", URL),
        }
    assert app.info()["applinks"] == [URL]
    # It is the database's: the next start (or a copy of the database) has it too.
    app.start(database)
    app.wait_status("RUNNING")
    assert app.info()["applinks"] == [URL]
    # info reads the rows every time: a rewrite of them (the panel's neutraliser) shows.
    table, column = (
        ("bandana", "bandanavalue")
        if product == "confluence"
        else ("propertystring", "propertyvalue")
    )
    rules_pg.psql(
        # the product's own table and column names, from the two literals above
        f"UPDATE {table} SET {column} = replace({column}, '.example/', '.example.invalid/') "  # noqa: S608
        f"WHERE {column} LIKE '%jira.acme.example/%'",
        database.name,
    )
    assert app.info()["applinks"] == [URL.replace(".example/", ".example.invalid/")]


@pytest.mark.parametrize("product", ["bitbucket", "bamboo", "crowd"])
def test_products_without_a_known_link_table_answer_404(product, rules_pg, image_under_test):
    app = image_under_test(product, versions(product)[-1])
    app.start(rules_pg.new_database())
    app.wait_status("RUNNING", "FIRST_RUN")
    code, body = app.api("POST", "/applinks", {"url": URL})
    assert code == 404 and "keeps no application links" in body["error"]
    assert app.info()["applinks"] is None


def test_a_link_that_is_no_http_url_is_refused_with_the_field(rules_pg, image_under_test):
    app = image_under_test("confluence", versions("confluence")[-1])
    app.start(rules_pg.new_database())
    app.wait_status("RUNNING")
    for bad in ("ftp://jira.acme.example/", "https://", "not a url", 42):
        code, body = app.api("POST", "/applinks", {"url": bad})
        assert code == 400 and "url" in body["fields"], (bad, body)
    assert app.info()["applinks"] == []
