"""Mail rules of the stand-in (plan S4): outgoing mail and mailbox polling, as the products do
them, so a copy of production that keeps production's mail settings is seen to send and fetch.

* The SMTP and POP servers live in the product's **database** (table ``standin_mailserver``),
  like Jira's and Confluence's mail server settings, which are made in the administration UI
  and stored in the database. So a restored copy inherits production's servers; only the JVM
  flags keep it quiet.
* ``PUT <ctx>/rest/standin/1.0/mail`` ``{"smtp": {"host": h, "port": p}, "pop": {...}}`` sets
  them (``null`` removes one); ``GET`` the same path reads them back.
* One mail is sent when the product reaches RUNNING and one per ``POST items``, unless
  ``-Datlassian.mail.senddisabled=true`` is in ``JVM_SUPPORT_RECOMMENDED_ARGS``: the key of
  ``MailFactory.MAIL_DISABLED_KEY``
  (https://docs.atlassian.com/atlassian-mail/1.3.23/constant-values.html), shipped commented
  out in Jira's ``bin/setenv.sh`` together with the next two and used by Jira's staging guide
  (https://confluence.atlassian.com/adminjiraserver072/establishing-staging-server-environments-for-jira-applications-828787655.html).
* The POP server is polled every ``STANDIN_MAIL_POLL_SECONDS`` (default 5) unless
  ``-Datlassian.mail.fetchdisabled=true`` or ``-Datlassian.mail.popdisabled=true`` is set,
  or, for Confluence, ``-Dconfluence.disable.mailpolling=true``
  (https://confluence.atlassian.com/conf711/recognized-system-properties-1044782619.html).
  The images pass ``JVM_SUPPORT_RECOMMENDED_ARGS`` to the JVM (every image's README). For
  Bitbucket, Bamboo and Crowd no public source documents the flags' effect; the stand-in
  applies them to every product alike (lab/README.md says so).
* Every attempt counts, also one to a host that does not resolve or answer:
  ``info.mail`` = ``{send_disabled, fetch_disabled, attempted, delivered, fetch_attempts}``
  (counted since this start).

Standard library only; the stand-in's ``App`` is passed in (this module never imports
``standin``, which runs as ``__main__``).
"""

from __future__ import annotations

import datetime as _dt
import os
import queue
import re
import shlex
import smtplib
import socket
import sys
import threading
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

API = "/rest/standin/1.0"
SEND_DISABLED = "atlassian.mail.senddisabled"
FETCH_DISABLED = ("atlassian.mail.fetchdisabled", "atlassian.mail.popdisabled")
CONFLUENCE_POLLING_DISABLED = "confluence.disable.mailpolling"
KINDS = ("smtp", "pop")
# Hostnames as RFC 1123 allows them (letters, digits, hyphens, dots), or an IPv4 address.
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
CONNECT_TIMEOUT = 5.0


def log(msg: str) -> None:
    ts = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sys.stdout.write(f"{ts} standin: {msg}\n")
    sys.stdout.flush()


def jvm_properties(args: str) -> dict[str, str]:
    """``-Dkey=value`` pairs of a JVM argument string. A bare ``-Dkey`` sets the empty string,
    which ``Boolean.getBoolean`` reads as false, as the JVM would."""
    try:
        words = shlex.split(args or "")
    except ValueError:  # an unbalanced quote: the JVM would not start; read what splits
        words = (args or "").split()
    props: dict[str, str] = {}
    for word in words:
        if word.startswith("-D") and len(word) > 2:
            key, _, value = word[2:].partition("=")
            props[key] = value
    return props


def _flag(props: dict[str, str], key: str) -> bool:
    # Boolean.getBoolean: true only for the (case-insensitive) string "true".
    return props.get(key, "").strip().lower() == "true"


def mail_flags(product: str, args: str) -> tuple[bool, bool]:
    """(send_disabled, fetch_disabled) for ``product`` from ``JVM_SUPPORT_RECOMMENDED_ARGS``."""
    props = jvm_properties(args)
    send_disabled = _flag(props, SEND_DISABLED)
    fetch_disabled = any(_flag(props, k) for k in FETCH_DISABLED)
    if product == "confluence" and _flag(props, CONFLUENCE_POLLING_DISABLED):
        fetch_disabled = True
    return send_disabled, fetch_disabled


def server_errors(body: object) -> tuple[dict[str, dict | None], dict[str, str]]:
    """The servers of a ``PUT mail`` body and the field errors (empty when valid)."""
    errors: dict[str, str] = {}
    servers: dict[str, dict | None] = {}
    if not isinstance(body, dict):
        return {}, {"body": "must be a JSON object"}
    unknown = sorted(set(body) - set(KINDS))
    if unknown:
        errors["body"] = f"unknown keys {unknown}; use smtp and pop"
    if not any(k in body for k in KINDS):
        errors.setdefault("body", "give smtp and/or pop")
    for kind in KINDS:
        if kind not in body:
            continue
        value = body[kind]
        if value is None:
            servers[kind] = None
            continue
        if not isinstance(value, dict):
            errors[kind] = "must be an object {host, port} or null"
            continue
        host, port = value.get("host"), value.get("port")
        if not isinstance(host, str) or not _HOST.match(host):
            errors[f"{kind}.host"] = "must be a hostname or an IPv4 address"
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            errors[f"{kind}.port"] = "must be an integer from 1 to 65535"
        if f"{kind}.host" not in errors and f"{kind}.port" not in errors:
            servers[kind] = {"host": host.rstrip("."), "port": port}
    return servers, errors


class Mail:
    """One product process's mail: its flags, counters, sender queue and POP poller."""

    def __init__(self, app) -> None:
        self.app = app
        self.product = app.cfg.product
        self.send_disabled, self.fetch_disabled = mail_flags(
            self.product, os.environ.get("JVM_SUPPORT_RECOMMENDED_ARGS", "")
        )
        self.poll_seconds = max(0.2, float(os.environ.get("STANDIN_MAIL_POLL_SECONDS", "5")))
        self.lock = threading.Lock()
        self.attempted = 0
        self.delivered = 0
        self.fetch_attempts = 0
        self.fetched = 0
        self.last_error: str | None = None
        self.outbox: queue.Queue = queue.Queue()
        self.started = False

    # -- the database ------------------------------------------------------------------
    def schema_ensure(self) -> None:
        def work(cur) -> None:
            cur.execute(
                """CREATE TABLE IF NOT EXISTS standin_mailserver (
                kind text PRIMARY KEY CHECK (kind IN ('smtp', 'pop')),
                host text NOT NULL, port integer NOT NULL)"""
            )

        self.app.db.run(work)

    def servers(self) -> dict[str, dict | None]:
        """The configured servers, read from the database every time (a restored database
        brings its own)."""

        def work(cur) -> dict[str, dict | None]:
            cur.execute("SELECT to_regclass('standin_mailserver') IS NOT NULL")
            if not cur.fetchone()[0]:
                return {k: None for k in KINDS}
            cur.execute("SELECT kind, host, port FROM standin_mailserver")
            found: dict[str, dict | None] = {k: None for k in KINDS}
            for kind, host, port in cur.fetchall():
                found[kind] = {"host": host, "port": port}
            return found

        return self.app.db.run(work)

    def servers_set(self, servers: dict[str, dict | None]) -> None:
        def work(cur) -> None:
            for kind, server in servers.items():
                if server is None:
                    cur.execute("DELETE FROM standin_mailserver WHERE kind = %s", (kind,))
                else:
                    cur.execute(
                        """INSERT INTO standin_mailserver (kind, host, port) VALUES (%s, %s, %s)
                        ON CONFLICT (kind) DO UPDATE SET host = EXCLUDED.host,
                        port = EXCLUDED.port""",
                        (kind, server["host"], server["port"]),
                    )

        self.schema_ensure()
        self.app.db.run(work)
        log(f"mail servers set: {servers}")

    # -- sending -----------------------------------------------------------------------
    def send(self, subject: str) -> None:
        """Queue one notification mail (the products send from a queue, too)."""
        if self.send_disabled:
            return
        self.outbox.put(subject)

    def _sender(self) -> None:
        while not self.app.stop.is_set():
            try:
                subject = self.outbox.get(timeout=0.5)
            except queue.Empty:
                continue
            self._deliver(subject)

    def _deliver(self, subject: str) -> None:
        try:
            smtp = self.servers()["smtp"]
        except Exception as exc:  # noqa: BLE001 - the database may be gone; log, go on
            log(f"mail: cannot read the SMTP server: {type(exc).__name__}: {exc}")
            return
        if smtp is None:
            return  # no outgoing server configured: the products send nothing
        with self.lock:
            self.attempted += 1
        msg = self._message(subject)
        try:
            with smtplib.SMTP(smtp["host"], smtp["port"], timeout=CONNECT_TIMEOUT) as s:
                s.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            with self.lock:
                self.last_error = f"{type(exc).__name__}: {exc}"
            log(f"mail to {smtp['host']}:{smtp['port']} failed: {type(exc).__name__}: {exc}")
            return
        with self.lock:
            self.delivered += 1
        log(f"mail sent to {smtp['host']}:{smtp['port']}: {subject}")

    def _message(self, subject: str) -> EmailMessage:
        cfg = self.app.cfg
        try:
            base_url = self.app.db.read_base_url() or ""
        except Exception:  # noqa: BLE001 - the header is only a help for tests
            base_url = ""
        msg = EmailMessage()
        msg["From"] = f"{cfg.p['name']} <noreply@{socket.gethostname()}.lab.invalid>"
        msg["To"] = "admin@lab.invalid"
        msg["Subject"] = f"[{cfg.p['name']}] {subject}"
        msg["Date"] = format_datetime(_dt.datetime.now(_dt.timezone.utc))
        msg["Message-ID"] = make_msgid(domain="standin.lab.invalid")
        # Who sent it, for the sink's readers: a copy and its production differ here.
        msg["X-Standin-Product"] = cfg.product
        msg["X-Standin-Host"] = socket.gethostname()
        msg["X-Standin-Base-Url"] = base_url
        msg.set_content(f"{subject}\n\nSent by the {cfg.p['name']} {cfg.version} stand-in.\n")
        return msg

    # -- fetching ----------------------------------------------------------------------
    def _poller(self) -> None:
        while not self.app.stop.wait(self.poll_seconds):
            self.poll_once()

    def poll_once(self) -> None:
        """Connect to the POP server, read its greeting, log out (the stand-in's mailbox is
        always empty); counted even when the server cannot be reached."""
        try:
            pop = self.servers()["pop"]
        except Exception as exc:  # noqa: BLE001
            log(f"mail: cannot read the POP server: {type(exc).__name__}: {exc}")
            return
        if pop is None:
            return
        with self.lock:
            self.fetch_attempts += 1
        try:
            with socket.create_connection((pop["host"], pop["port"]), timeout=CONNECT_TIMEOUT) as s:
                s.settimeout(CONNECT_TIMEOUT)
                f = s.makefile("rwb")
                greeting = f.readline()
                if not greeting.startswith(b"+OK"):
                    raise OSError(f"not a POP3 greeting: {greeting[:80]!r}")
                f.write(b"QUIT\r\n")
                f.flush()
                f.readline()
        except OSError as exc:
            with self.lock:
                self.last_error = f"{type(exc).__name__}: {exc}"
            log(f"mail: POP {pop['host']}:{pop['port']} failed: {type(exc).__name__}: {exc}")
            return
        with self.lock:
            self.fetched += 1

    # -- the hooks ---------------------------------------------------------------------
    def on_running(self) -> None:
        if self.started:
            return
        self.started = True
        try:
            self.schema_ensure()
        except Exception as exc:  # noqa: BLE001 - servers() copes with a missing table
            log(f"mail: cannot create standin_mailserver: {type(exc).__name__}: {exc}")
        threading.Thread(target=self._sender, name="mail-sender", daemon=True).start()
        if not self.fetch_disabled:
            threading.Thread(target=self._poller, name="mail-poller", daemon=True).start()
        if self.send_disabled or self.fetch_disabled:
            log(f"mail: send disabled {self.send_disabled}, fetch disabled {self.fetch_disabled}")
        self.send(f"{self.app.cfg.p['name']} is RUNNING")

    def info(self) -> dict:
        with self.lock:
            return {
                "send_disabled": self.send_disabled,
                "fetch_disabled": self.fetch_disabled,
                "attempted": self.attempted,
                "delivered": self.delivered,
                "fetch_attempts": self.fetch_attempts,
                "fetched": self.fetched,
                "last_error": self.last_error,
            }


# ------------------------------------------------------------------------------------------
# The interface standin.py calls (each rule module has the same four functions)
# ------------------------------------------------------------------------------------------


def attach(app) -> None:
    app.mail = Mail(app)


def on_running(app) -> None:
    app.mail.on_running()


def on_change(app, kind: str, detail: str = "") -> None:
    """A write through the stand-in API: ``items`` rows send a notification."""
    if kind == "items" and app.mail.started:
        app.mail.send(f"item created: {detail}" if detail else "item created")


def route(app, method: str, path: str, body) -> tuple[int, object] | None:
    if path != API + "/mail" or method not in ("GET", "PUT"):
        return None
    if not app.ready:
        return 503, {"error": "not running", "state": app.state()}
    if method == "PUT":
        servers, errors = server_errors(body)
        if errors:
            return 400, {"error": "invalid mail servers", "fields": errors}
        app.mail.servers_set(servers)
    return 200, {"servers": app.mail.servers(), "mail": app.mail.info()}


def info(app) -> dict:
    return {"mail": app.mail.info()}
