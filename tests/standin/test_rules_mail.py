"""S4: mail goes to the SMTP server the product's database names, and the mailbox is polled,
unless the JVM flags say not to.

* The servers are settings in the product's database (made in its administration UI), so a
  copy of production's database mails and polls as production does.
* ``-Datlassian.mail.senddisabled=true -Datlassian.mail.fetchdisabled=true
  -Datlassian.mail.popdisabled=true`` (shipped, commented out, in Jira's ``bin/setenv.sh``;
  Jira's staging guide:
  https://confluence.atlassian.com/adminjiraserver072/establishing-staging-server-environments-for-jira-applications-828787655.html;
  the key: https://docs.atlassian.com/atlassian-mail/1.3.23/constant-values.html) and, for
  Confluence, ``-Dconfluence.disable.mailpolling=true``
  (https://confluence.atlassian.com/conf711/recognized-system-properties-1044782619.html),
  passed through ``JVM_SUPPORT_RECOMMENDED_ARGS`` (every image's README), silence it. For
  Bitbucket, Bamboo and Crowd the flags' effect is not publicly documented: the stand-in
  applies them alike (lab/README.md says so).

``needs_standin_api``: on the real images the mail servers are set in the UI.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.labkit import docker, http_json, wait_for
from tests.standin.driver import ALL_PRODUCTS, Database, ImageUnderTest, versions
from tests.support.mail_sink import ALIAS, POP_PORT, SMTP_PORT, MailSink

pytestmark = [pytest.mark.lab, pytest.mark.image_rules, pytest.mark.needs_standin_api]

POLL = {"STANDIN_MAIL_POLL_SECONDS": "0.5"}
# What the panel gives a copy (provisioning/compose.py, outbound_disabled).
FLAGS = (
    "-Datlassian.mail.senddisabled=true -Datlassian.mail.fetchdisabled=true "
    "-Datlassian.mail.popdisabled=true"
)
SERVERS = {"smtp": {"host": ALIAS, "port": SMTP_PORT}, "pop": {"host": ALIAS, "port": POP_PORT}}


def _flags(product: str) -> str:
    return FLAGS + (" -Dconfluence.disable.mailpolling=true" if product == "confluence" else "")


def _hostname(app: ImageUnderTest) -> str:
    """The container's hostname: the stand-in's ``X-Standin-Host`` header."""
    assert app.container, "not started"
    return docker("inspect", "-f", "{{.Config.Hostname}}", app.container).stdout.strip()


def _ip(app: ImageUnderTest) -> str:
    """The container's address on its sandbox network (what the sink sees as the peer)."""
    assert app.container, "not started"
    return docker(
        "inspect",
        "-f",
        '{{(index .NetworkSettings.Networks "' + app.box.name + '").IPAddress}}',
        app.container,
    ).stdout.strip()


def _up(app: ImageUnderTest, database: Database, env: dict[str, str]) -> None:
    """Start ``app`` on ``database`` and wait for RUNNING (Crowd: after its setup, which a
    fresh home needs once)."""
    app.start(database, env)
    if app.product == "crowd" and app.wait_status("RUNNING", "FIRST_RUN")[1] == "FIRST_RUN":
        code, body = app.crowd_setup(database)
        assert code in (200, 201), body
    app.wait_status("RUNNING")


def _copy_database(rules_pg, source: Database) -> Database:
    """A copy of ``source`` (as a restore makes one): same owner, same rows."""
    copy = Database(name=source.name + "_copy", user=source.user, password=source.password)
    rules_pg.psql(f"CREATE DATABASE {copy.name} TEMPLATE {source.name} OWNER {source.user}")
    return copy


@pytest.mark.parametrize("product", ALL_PRODUCTS)
def test_mail_is_sent_and_fetched_unless_the_flags_are_set(
    product, rules_box, rules_pg, image_under_test, mail_sink: MailSink
):
    mail_sink.attach(rules_box.name)
    version = versions(product)[-1]
    database = rules_pg.new_database()

    # Production: its administrator sets the servers; each new item mails, the mailbox is polled.
    prod = image_under_test(product, version)
    _up(prod, database, POLL)
    assert prod.info()["mail"]["attempted"] == 0  # no server configured yet: nothing sent
    code, body = prod.api("PUT", "/mail", SERVERS)
    assert code == 200 and body["servers"] == SERVERS, body
    assert prod.api("POST", "/items", {"title": "PROD-1 created"})[0] == 201
    host = _hostname(prod)
    got = mail_sink.wait_message(
        lambda m: m["headers"].get("X-Standin-Host") == host and "PROD-1" in m["subject"],
        what=f"{product}'s mail about PROD-1",
    )
    assert got["headers"]["X-Standin-Product"] == product
    prod_ip = _ip(prod)
    wait_for(lambda: prod_ip in mail_sink.pop_peers(), timeout=30, what=f"{product} polls POP")
    mail = prod.info()["mail"]
    assert mail["attempted"] >= 1 and mail["delivered"] >= 1 and mail["fetch_attempts"] >= 1
    assert not (mail["send_disabled"] or mail["fetch_disabled"])
    prod.stop()

    # A copy of its database on a fresh home: the servers came along, it mails at RUNNING.
    copy_db = _copy_database(rules_pg, database)
    copy = image_under_test(product, version)
    _up(copy, copy_db, POLL)
    host = _hostname(copy)
    mail_sink.wait_message(
        lambda m: m["headers"].get("X-Standin-Host") == host and "RUNNING" in m["subject"],
        what=f"the {product} copy's RUNNING mail",
    )
    copy.stop()

    # The same copy with the flags: nothing is sent or fetched, not even an attempt.
    mail_sink.clear()
    _up(copy, copy_db, {**POLL, "JVM_SUPPORT_RECOMMENDED_ARGS": _flags(product)})
    assert copy.api("POST", "/items", {"title": "COPY-1 created"})[0] == 201
    time.sleep(3)  # six poll periods, and time for the item's mail to have gone out
    mail = copy.info()["mail"]
    assert mail["send_disabled"] and mail["fetch_disabled"], mail
    assert (mail["attempted"], mail["delivered"], mail["fetch_attempts"]) == (0, 0, 0), mail
    assert mail_sink.messages() == [] and mail_sink.pop_peers() == []


def test_confluence_polling_stops_with_its_own_switch_alone(
    rules_box, rules_pg, image_under_test, mail_sink: MailSink
):
    """``confluence.disable.mailpolling`` stops Confluence's mailbox polling; its outgoing mail
    goes on (only ``atlassian.mail.senddisabled`` stops that)."""
    mail_sink.attach(rules_box.name)
    database = rules_pg.new_database()
    app = image_under_test("confluence", versions("confluence")[-1])
    _up(app, database, POLL)
    assert app.api("PUT", "/mail", SERVERS)[0] == 200
    _up(
        app,
        database,
        {**POLL, "JVM_SUPPORT_RECOMMENDED_ARGS": "-Dconfluence.disable.mailpolling=true"},
    )
    host = _hostname(app)
    mail_sink.wait_message(
        lambda m: m["headers"].get("X-Standin-Host") == host, what="Confluence's RUNNING mail"
    )
    time.sleep(2)
    mail = app.info()["mail"]
    assert mail["fetch_disabled"] and not mail["send_disabled"]
    assert mail["fetch_attempts"] == 0 and _ip(app) not in mail_sink.pop_peers()


def test_an_unreachable_mail_server_still_counts_as_an_attempt(rules_pg, image_under_test):
    """A copy that tries to mail a host it cannot reach has still tried: the counters say so
    (a panel test of a mute copy must not pass only because the network was closed)."""
    database = rules_pg.new_database()
    app = image_under_test("jira-software", versions("jira-software")[-1])
    _up(app, database, POLL)
    unreachable = {"smtp": {"host": "nowhere.invalid", "port": 25}, "pop": None}
    assert app.api("PUT", "/mail", unreachable)[0] == 200
    assert app.api("POST", "/items", {"title": "to nowhere"})[0] == 201
    mail = wait_for(
        lambda: (m := app.info()["mail"])["attempted"] >= 1 and m,
        timeout=30,
        what="an attempt to mail nowhere.invalid",
    )
    assert mail["delivered"] == 0 and mail["last_error"], mail


def test_bad_mail_servers_are_refused_with_field_messages(rules_pg, image_under_test):
    database = rules_pg.new_database()
    app = image_under_test("jira-software", versions("jira-software")[-1])
    _up(app, database, POLL)
    code, body = app.api(
        "PUT", "/mail", {"smtp": {"host": "bad host", "port": 0}, "pop": {"host": "x"}}
    )
    assert code == 400
    assert set(body["fields"]) == {"smtp.host", "smtp.port", "pop.port"}
    code, body = http_json(app.url("/rest/standin/1.0/mail"))
    assert code == 200 and body["servers"] == {"smtp": None, "pop": None}
