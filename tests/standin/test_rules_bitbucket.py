"""S6: Bitbucket's home and database have to come from the same moment.

Atlassian asks for "consistent snapshots" of both
(https://confluence.atlassian.com/display/BITBUCKETSERVER091/Data+recovery+and+backups); DIY
Backup locks the product to get them
(https://confluence.atlassian.com/bitbucketserver091/bitbucket-diy-backup-1443039252.html). The
real product does not tell a torn copy from a good one, so the stand-in carries a device that
does: each push increments a counter in the database, then one in
``shared/data/standin-counter``, and ``info.consistency`` compares them. ``needs_standin_api``.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.labkit import docker, wait_for
from tests.standin.driver import Database, ImageUnderTest, versions, wait_log

pytestmark = [pytest.mark.lab, pytest.mark.image_rules, pytest.mark.needs_standin_api]

COUNTER = "shared/data/standin-counter"
TORN = r"home and database are from different moments \(home counter \d+, database counter \d+"


def _copy_database(rules_pg, source: Database, suffix: str) -> Database:
    """A copy of ``source`` as pg_dump sees it now (the product may be running)."""
    copy = Database(name=f"{source.name}_{suffix}", user=source.user, password=source.password)
    rules_pg.psql(f"CREATE DATABASE {copy.name} OWNER {source.user}")
    docker(
        "exec",
        rules_pg.container,
        "sh",
        "-c",
        f"pg_dump -U lab -d {source.name} | psql -q -v ON_ERROR_STOP=1 -U lab -d {copy.name}",
    )
    return copy


def _up(app: ImageUnderTest, database: Database, env: dict[str, str] | None = None) -> dict:
    app.start(database, env)
    app.wait_status("RUNNING")
    return app.info()["consistency"]


def test_each_push_counts_in_the_database_then_in_the_home(rules_pg, image_under_test):
    database = rules_pg.new_database()
    app = image_under_test("bitbucket", versions("bitbucket")[-1])
    assert _up(app, database) == {"home": 0, "db": 0, "ok": True}
    for i in range(3):
        assert app.api("POST", "/items", {"title": f"PR-{i}"})[0] == 201
    for i in range(2):
        assert app.api("POST", "/files", {"path": f"shared/data/repositories/{i}/HEAD"})[0] == 201
    assert app.info()["consistency"] == {"home": 5, "db": 5, "ok": True}
    # where the two halves live: a row of the product's database, a file of its home
    assert rules_pg.psql("SELECT value FROM standin_counter", database.name) == "5"
    assert app.home_file(COUNTER) == "5\n"
    # /status knows nothing of it, as the real product does not
    assert app.status() == (200, "RUNNING")


def test_a_home_and_database_from_different_moments_are_detected(rules_pg, image_under_test):
    version = versions("bitbucket")[-1]
    database = rules_pg.new_database()
    app = image_under_test("bitbucket", version)
    _up(app, database)
    for i in range(3):
        app.api("POST", "/items", {"title": f"PR-{i}"})
    app.stop()
    # Moment A, product stopped (a cold backup): home and database copied together.
    db_a, db_a_again = (_copy_database(rules_pg, database, s) for s in ("a", "a2"))
    home_a = app.copy_home()
    try:
        _up(app, database)
        for i in range(2):
            app.api("POST", "/items", {"title": f"later-{i}"})
        app.stop()

        # The later home with the earlier database: detected, logged, and still RUNNING.
        assert _up(app, db_a) == {"home": 5, "db": 3, "ok": False}
        assert app.status() == (200, "RUNNING")
        wait_log(app, TORN)
        # Each side counts on from its own value: the tear never heals by itself.
        app.api("POST", "/items", {"title": "after the restore"})
        assert app.info()["consistency"] == {"home": 6, "db": 4, "ok": False}

        # Moment A's home with moment A's database: consistent.
        assert _up(home_a, db_a_again) == {"home": 3, "db": 3, "ok": True}
        assert "different moments" not in home_a.logs()
    finally:
        home_a.close()


def test_automatic_pushes_tear_a_copy_taken_database_first_while_it_runs(
    rules_pg, image_under_test
):
    """``STANDIN_PUSH_INTERVAL``: pushes while nobody writes. A copy made the way a hot backup
    makes one (the database dumped first, the home copied after) is torn."""
    version = versions("bitbucket")[-1]
    database = rules_pg.new_database()
    app = image_under_test("bitbucket", version)
    _up(app, database, {"STANDIN_PUSH_INTERVAL": "0.2"})
    wait_for(
        lambda: (c := app.info()["consistency"])["db"] >= 3 and c["ok"],
        timeout=30,
        what="automatic pushes",
    )
    dumped = _copy_database(rules_pg, database, "hot")
    time.sleep(1)  # the home copy comes later than the dump, as in a hot backup
    home = app.copy_home()
    try:
        app.stop()
        state = _up(home, dumped, {"STANDIN_PUSH_INTERVAL": "0.2"})
        assert not state["ok"] and state["home"] > state["db"], state
        gap = state["home"] - state["db"]
        wait_for(
            lambda: home.info()["consistency"]["db"] > state["db"] + 2,
            timeout=30,
            what="pushes on the torn copy",
        )
        after = home.info()["consistency"]
        assert after["home"] - after["db"] == gap and not after["ok"]
    finally:
        home.close()
