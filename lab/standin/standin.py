#!/usr/bin/env python3
"""Stand-in for an Atlassian product container (Jira, JSM, Confluence,
Bitbucket, Bamboo, Crowd) in the panel's lab.

It behaves like the product only where a hosting panel touches it:

* listens on the product's port(s) and answers ``GET <ctx>/status`` with
  ``{"state": "STARTING"}`` for ``STANDIN_STARTUP_SECONDS`` and then
  ``{"state": "RUNNING"}`` once its PostgreSQL database is reachable (the
  ``0.0.0.0-broken`` tags answer STARTING forever);
* reads the environment the real images read (``ATL_*`` / ``SERVER_*`` /
  ``JDBC_*``), connects to the database named by the JDBC URL, creates
  product-like tables and stores the base URL where the product stores it,
  computed from the proxy settings on the *first* start only;
* keeps its home directory under ``/var/atlassian/application-data/<product>``
  owned by the product's uid/gid and runs as that uid;
* ``GET <ctx>/rest/standin/1.0/info`` shows everything a test wants to assert
  (all of the environment, base URL read back from the database, uid, home,
  file count of home);
* ``POST <ctx>/rest/standin/1.0/items`` / ``GET`` store and list database rows,
  ``POST <ctx>/rest/standin/1.0/files`` writes a file under home, so backup and
  restore tests have data to compare;
* exits 0 promptly on SIGTERM/SIGINT.

Only the standard library plus Debian's python3-psycopg2 are used.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pwd
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape

import homefiles

try:  # Present in the lab images (python3-psycopg2); optional for --self-test.
    import psycopg2
except ImportError:  # pragma: no cover
    psycopg2 = None

# Rules kept in their own modules next to this file (mail and POP polling, application links,
# Bitbucket's home/database counter); each has attach/on_running/on_change/route/info.
import applinks  # noqa: E402
import consistency  # noqa: E402
import mail as mail_rules  # noqa: E402

RULES = (mail_rules, applinks, consistency)


def rules_route(app, method: str, path: str, body):
    """(code, body) from the first rule module that answers ``method path``, or None."""
    return next((hit for r in RULES if (hit := r.route(app, method, path, body))), None)


def rules_changed(app, kind: str, detail: str = "") -> None:
    for r in RULES:
        r.on_change(app, kind, detail)


# --------------------------------------------------------------------------
# Product table
# --------------------------------------------------------------------------

PRODUCTS = {
    "jira-software": {
        "name": "Jira Software", "user": "jira", "uid": 2001, "gid": 2001,
        "home": "/var/atlassian/application-data/jira", "port": 8080,
        "context_env": "ATL_TOMCAT_CONTEXTPATH", "default_context": "",
        "style": "atl", "db": "jira", "log": "log/atlassian-jira.log",
        "config": "dbconfig.xml",
    },
    "jira-servicemanagement": {
        "name": "Jira Service Management", "user": "jira", "uid": 2001, "gid": 2001,
        "home": "/var/atlassian/application-data/jira", "port": 8080,
        "context_env": "ATL_TOMCAT_CONTEXTPATH", "default_context": "",
        "style": "atl", "db": "jira", "log": "log/atlassian-jira.log",
        "config": "dbconfig.xml",
    },
    "confluence": {
        "name": "Confluence", "user": "confluence", "uid": 2002, "gid": 2002,
        "home": "/var/atlassian/application-data/confluence", "port": 8090,
        "synchrony_port": 8091,
        "context_env": "ATL_TOMCAT_CONTEXTPATH", "default_context": "",
        "style": "atl", "db": "confluence", "log": "log/atlassian-confluence.log",
        "config": "confluence.cfg.xml", "extra_dirs": ["keys", "attachments"],
    },
    "bitbucket": {
        "name": "Bitbucket", "user": "bitbucket", "uid": 2003, "gid": 2003,
        "home": "/var/atlassian/application-data/bitbucket", "port": 7990,
        "ssh_port": 7999,
        "context_env": "SERVER_CONTEXT_PATH", "default_context": "",
        "style": "server", "db": "bitbucket", "log": "log/atlassian-bitbucket.log",
        "config": "shared/bitbucket.properties", "extra_dirs": ["shared/data/repositories"],
    },
    "bamboo": {
        "name": "Bamboo", "user": "bamboo", "uid": 2005, "gid": 2005,
        "home": "/var/atlassian/application-data/bamboo", "port": 8085,
        "agent_port": 54663,
        "context_env": "ATL_TOMCAT_CONTEXTPATH", "default_context": "",
        "style": "atl", "db": "bamboo", "log": "log/atlassian-bamboo.log",
        "config": "bamboo.cfg.xml", "extra_dirs": ["xml-data/configuration"],
    },
    "crowd": {
        "name": "Crowd", "user": "crowd", "uid": 2004, "gid": 2004,
        "home": "/var/atlassian/application-data/crowd", "port": 8095,
        "context_env": "ATL_TOMCAT_CONTEXTPATH", "default_context": "/crowd",
        "style": "atl", "db": "crowd", "log": "log/atlassian-crowd.log",
        "config": "shared/crowd.cfg.xml",
    },
}

API = "/rest/standin/1.0"

# Health per product (plan S2): Jira/JSM, Confluence, Bitbucket, Crowd answer <ctx>/status with
# {"state": ...} ([chart] {confluence,bitbucket}/templates/statefulset.yaml;
# https://support.atlassian.com/jira/kb/jira-status-endpoint-response-meanings/); Bamboo answers
# <ctx>/rest/api/latest/status with {"status": ...} ([chart] bamboo/templates/statefulset.yaml,
# https://github.com/atlassian/data-center-helm-charts), and its /status is a 404.
STATUS = {"bamboo": ("/rest/api/latest/status", "status")}
STATUS_DEFAULT = ("/status", "state")
# Jira's /status answers 503 MAINTENANCE while "startup is delayed by a reindexing event"
# (the KB above); the other products report STARTING while their upgrade tasks run.
MAINTENANCE_PRODUCTS = ("jira-software", "jira-servicemanagement")
CODES = {"MAINTENANCE": 503, "ERROR": 500}


class Refused(RuntimeError):
    """The product refuses to run on this database or home (ERROR, permanently)."""


def log(msg: str) -> None:
    ts = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sys.stdout.write(f"{ts} standin: {msg}\n")
    sys.stdout.flush()


def env_bool(name: str, default: bool = False) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    return v.strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------
# Configuration from the environment (names as the real images read them)
# --------------------------------------------------------------------------

class Config:
    def __init__(self, env: dict[str, str]):
        self.product = env.get("STANDIN_PRODUCT", "jira-software")
        if self.product not in PRODUCTS:
            raise SystemExit(f"unknown STANDIN_PRODUCT {self.product!r}")
        self.p = PRODUCTS[self.product]
        self.version = env.get("STANDIN_VERSION", "0.0.0")
        self.broken = env_bool("STANDIN_BROKEN") or self.version.endswith("-broken")
        # X.Y.Z-failing: an upgrade that marks the schema with X.Y.Z and then fails (plan S3).
        self.failing = self.version.endswith("-failing")
        self.schema_version = self.version.split("-", 1)[0]
        self.reindex_seconds = float(env.get("STANDIN_REINDEX_SECONDS", "0") or 0)
        self.status_path, self.status_key = STATUS.get(self.product, STATUS_DEFAULT)
        self.env = env
        self.startup_seconds = float(env.get("STANDIN_STARTUP_SECONDS", "5"))
        self.home = env.get("STANDIN_HOME", self.p["home"])
        self.port = int(env.get("STANDIN_PORT", self.p["port"]))
        ctx_env = self.p["context_env"]
        ctx = env[ctx_env] if ctx_env in env else self.p["default_context"]
        ctx = ctx.strip()
        if self.product == "crowd" and ctx in ("", "/"):
            # README CROWD: ATL_TOMCAT_CONTEXTPATH "(default: /crowd)"; the image's server.xml
            # template treats an empty value as unset (unverified for 5.3: lab/README.md).
            ctx = self.p["default_context"]
        if ctx in ("", "/"):
            ctx = ""
        elif not ctx.startswith("/"):
            ctx = "/" + ctx
        self.context = ctx.rstrip("/")

        if self.p["style"] == "server":  # Bitbucket
            self.proxy_name = env.get("SERVER_PROXY_NAME", "")
            self.proxy_port = env.get("SERVER_PROXY_PORT", "")
            self.scheme = env.get("SERVER_SCHEME", "http") or "http"
            self.secure = env_bool("SERVER_SECURE")
            self.jdbc_url = env.get("JDBC_URL", "")
            self.jdbc_user = env.get("JDBC_USER", "")
            self.jdbc_password = env.get("JDBC_PASSWORD", "")
        else:
            self.proxy_name = env.get("ATL_PROXY_NAME", "")
            self.proxy_port = env.get("ATL_PROXY_PORT", "")
            self.scheme = env.get("ATL_TOMCAT_SCHEME", "http") or "http"
            self.secure = env_bool("ATL_TOMCAT_SECURE")
            self.jdbc_url = env.get("ATL_JDBC_URL", "")
            self.jdbc_user = env.get("ATL_JDBC_USER", "")
            self.jdbc_password = env.get("ATL_JDBC_PASSWORD", "")
        if self.product == "crowd":
            # Crowd's README documents no database variable: its setup wizard writes
            # shared/crowd.cfg.xml, and only that file counts.
            self.jdbc_url = self.jdbc_user = self.jdbc_password = ""
        # Where the connection comes from, settled by connection_settle() after the home
        # files: "env" (Bitbucket's JDBC_URL), "file" (the product's config file) or None.
        self.db_source = None

    def connection_settle(self) -> None:
        """Take the database connection from where the product takes it (plan S1): Jira, JSM,
        Confluence, Bamboo and Crowd from their config file (written from the environment on
        the first start only); Bitbucket from JDBC_* when JDBC_URL is set (Spring Boot: the
        environment outranks property files,
        https://docs.spring.io/spring-boot/reference/features/external-config.html), else from
        shared/bitbucket.properties."""
        if self.product == "bitbucket" and self.jdbc_url:
            self.db_source = "env"
            return
        conn = homefiles.connection_read(self.product, self.home, self.p["config"])
        if conn is None:
            self.jdbc_url = self.jdbc_user = self.jdbc_password = ""
            self.db_source = None
            return
        self.jdbc_url, self.jdbc_user, self.jdbc_password = conn["url"], conn["user"], conn["password"]
        self.db_source = "file"

    def initial_base_url(self) -> str:
        """Base URL as the product derives it on its first start."""
        if self.proxy_name:
            host = self.proxy_name
            port = self.proxy_port
            default = "443" if self.scheme == "https" else "80"
            netloc = host if (not port or port == default) else f"{host}:{port}"
            return f"{self.scheme}://{netloc}{self.context}"
        return f"http://localhost:{self.port}{self.context}"


def parse_jdbc_url(url: str) -> dict:
    """``jdbc:postgresql://host[:port]/dbname[?params]`` -> connect kwargs."""
    m = re.match(r"^jdbc:postgresql://([^/:?]+)(?::(\d+))?/([^?;]+)", url.strip())
    if not m:
        raise ValueError(f"not a PostgreSQL JDBC URL: {url!r}")
    return {"host": m.group(1), "port": int(m.group(2) or 5432), "dbname": m.group(3)}


# --------------------------------------------------------------------------
# Database: product-like schema and where the base URL lives
# --------------------------------------------------------------------------

CONFLUENCE_SETTINGS = """<settings>
  <doNotSave>false</doNotSave>
  <allowCamelCase>false</allowCamelCase>
  <baseUrl>{base}</baseUrl>
  <siteTitle>Confluence</siteTitle>
</settings>"""


class Database:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.kwargs = None
        self.error = None
        if cfg.jdbc_url:
            try:
                self.kwargs = parse_jdbc_url(cfg.jdbc_url)
                self.kwargs.update(user=cfg.jdbc_user, password=cfg.jdbc_password)
            except ValueError as e:
                self.error = str(e)
        self.lock = threading.Lock()
        self.conn = None
        self.initialized = False
        self.upgraded_from = None  # the version an upgrade on this start came from

    @property
    def configured(self) -> bool:
        return self.kwargs is not None

    def _connect(self):
        if psycopg2 is None:
            raise RuntimeError("psycopg2 not available")
        conn = psycopg2.connect(connect_timeout=3, application_name=f"standin-{self.cfg.product}",
                                **self.kwargs)
        conn.autocommit = True
        return conn

    def run(self, fn):
        """Run ``fn(cursor)`` on a (re)connected connection, under a lock."""
        with self.lock:
            for attempt in (1, 2):
                try:
                    if self.conn is None or self.conn.closed:
                        self.conn = self._connect()
                    with self.conn.cursor() as cur:
                        return fn(cur)
                except psycopg2.OperationalError:
                    try:
                        if self.conn is not None:
                            self.conn.close()
                    except Exception:
                        pass
                    self.conn = None
                    if attempt == 2:
                        raise
                except psycopg2.InterfaceError:
                    self.conn = None
                    if attempt == 2:
                        raise

    def ping(self) -> bool:
        try:
            self.run(lambda c: c.execute("SELECT 1"))
            self.error = None
            return True
        except Exception as e:  # noqa: BLE001 - report, never crash the server
            self.error = f"{type(e).__name__}: {e}".strip()
            return False

    # -- schema ----------------------------------------------------------
    def initialize(self) -> None:
        """Create tables; store the base URL if this is the first start."""
        base = self.cfg.initial_base_url()
        product = self.cfg.product

        def work(cur):
            self.schema_check(cur)
            cur.execute("""CREATE TABLE IF NOT EXISTS standin_item (
                id serial PRIMARY KEY, title text NOT NULL,
                created timestamptz NOT NULL DEFAULT now())""")
            cur.execute("""CREATE TABLE IF NOT EXISTS standin_start (
                id serial PRIMARY KEY, product text, version text,
                started timestamptz NOT NULL DEFAULT now())""")
            first = False
            if product in ("jira-software", "jira-servicemanagement"):
                cur.execute("""CREATE TABLE IF NOT EXISTS propertyentry (
                    id numeric(18,0) PRIMARY KEY, entity_name varchar(255),
                    entity_id numeric(18,0), property_key varchar(255),
                    propertytype numeric(9,0))""")
                cur.execute("""CREATE TABLE IF NOT EXISTS propertystring (
                    id numeric(18,0) PRIMARY KEY, propertyvalue text)""")
                cur.execute("SELECT 1 FROM propertyentry WHERE property_key = 'jira.baseurl'")
                if cur.fetchone() is None:
                    first = True
                    cur.execute("SELECT coalesce(max(id), 10000) + 1 FROM propertyentry")
                    (pid,) = cur.fetchone()
                    cur.execute("INSERT INTO propertyentry VALUES (%s, 'jira.properties', 1, 'jira.baseurl', 5)", (pid,))
                    cur.execute("INSERT INTO propertystring VALUES (%s, %s)", (pid, base))
            elif product == "confluence":
                cur.execute("""CREATE TABLE IF NOT EXISTS bandana (
                    bandanaid bigint PRIMARY KEY, bandanacontext varchar(255),
                    bandanakey varchar(100), bandanavalue text)""")
                cur.execute("SELECT 1 FROM bandana WHERE bandanacontext = '_GLOBAL' "
                            "AND bandanakey = 'atlassian.confluence.settings'")
                if cur.fetchone() is None:
                    first = True
                    cur.execute("SELECT coalesce(max(bandanaid), 0) + 1 FROM bandana")
                    (bid,) = cur.fetchone()
                    cur.execute("INSERT INTO bandana VALUES (%s, '_GLOBAL', 'atlassian.confluence.settings', %s)",
                                (bid, CONFLUENCE_SETTINGS.format(base=xml_escape(base))))
            elif product == "bitbucket":
                cur.execute("""CREATE TABLE IF NOT EXISTS app_property (
                    prop_key varchar(50) PRIMARY KEY, prop_value varchar(2048))""")
                cur.execute("SELECT 1 FROM app_property WHERE prop_key = 'instance.url'")
                if cur.fetchone() is None:
                    first = True
                    cur.execute("INSERT INTO app_property VALUES ('instance.url', %s)", (base,))
            elif product == "bamboo":
                cur.execute("""CREATE TABLE IF NOT EXISTS bandana (
                    bandana_id bigint PRIMARY KEY, bandana_context varchar(255),
                    bandana_key varchar(255), serialized_data text)""")
                cur.execute("SELECT 1 FROM bandana WHERE bandana_key = 'bamboo.baseUrl'")
                if cur.fetchone() is None:
                    first = True
                    cur.execute("INSERT INTO bandana VALUES (1, 'GLOBAL', 'bamboo.baseUrl', %s)", (base,))
            elif product == "crowd":
                cur.execute("""CREATE TABLE IF NOT EXISTS cwd_property (
                    property_key varchar(255), property_name varchar(255),
                    property_value text, PRIMARY KEY (property_key, property_name))""")
                cur.execute("SELECT 1 FROM cwd_property WHERE property_key = 'crowd' AND property_name = 'base.url'")
                if cur.fetchone() is None:
                    first = True
                    cur.execute("INSERT INTO cwd_property VALUES ('crowd', 'base.url', %s)", (base,))
            cur.execute("INSERT INTO standin_start (product, version) VALUES (%s, %s)",
                        (product, self.cfg.version))
            return first

        first = self.run(work)
        self.initialized = True
        log(f"database ready ({'first start, stored base URL ' + base if first else 'existing data'})")

    def schema_check(self, cur) -> None:
        """One-way upgrades (plan S3): the database carries the version that last ran on it.
        An older image refuses it, as Jira's build version check does ("You upgraded Jira, and
        then tried to downgrade", https://confluence.atlassian.com/jirakb/startup-check-jira-build-version-867185576.html);
        a newer one upgrades it. Sets ``self.upgraded_from``; raises Refused."""
        cfg = self.cfg
        cur.execute("""CREATE TABLE IF NOT EXISTS standin_schema (
            product text PRIMARY KEY, version text NOT NULL,
            updated timestamptz NOT NULL DEFAULT now())""")
        cur.execute("SELECT version FROM standin_schema ORDER BY updated DESC LIMIT 1")
        row = cur.fetchone()
        mine = cfg.schema_version
        self.upgraded_from = None
        if row is not None:
            theirs = row[0]
            if homefiles.version_key(theirs) > homefiles.version_key(mine):
                raise Refused(f"database was upgraded by a newer version {theirs}; this is {mine}")
            if homefiles.version_key(theirs) < homefiles.version_key(mine):
                self.upgraded_from = theirs
        if row is None or self.upgraded_from is not None:
            cur.execute("DELETE FROM standin_schema")
            cur.execute("INSERT INTO standin_schema (product, version) VALUES (%s, %s)",
                        (cfg.product, mine))
            if self.upgraded_from is not None:
                log(f"upgrading the database from {self.upgraded_from} to {mine}")
        if cfg.failing:
            raise Refused(f"upgrade to {mine} failed after the database was marked {mine} "
                          "(lab -failing tag)")

    def read_base_url(self):
        product = self.cfg.product

        def work(cur):
            if product in ("jira-software", "jira-servicemanagement"):
                cur.execute("""SELECT s.propertyvalue FROM propertyentry e
                               JOIN propertystring s ON s.id = e.id
                               WHERE e.property_key = 'jira.baseurl' ORDER BY e.id LIMIT 1""")
            elif product == "confluence":
                cur.execute("SELECT bandanavalue FROM bandana WHERE bandanacontext = '_GLOBAL' "
                            "AND bandanakey = 'atlassian.confluence.settings' LIMIT 1")
            elif product == "bitbucket":
                cur.execute("SELECT prop_value FROM app_property WHERE prop_key = 'instance.url'")
            elif product == "bamboo":
                cur.execute("SELECT serialized_data FROM bandana WHERE bandana_key = 'bamboo.baseUrl' LIMIT 1")
            else:
                cur.execute("SELECT property_value FROM cwd_property WHERE property_key = 'crowd' "
                            "AND property_name = 'base.url'")
            row = cur.fetchone()
            if row is None:
                return None
            value = row[0]
            if product == "confluence":
                m = re.search(r"<baseUrl>(.*?)</baseUrl>", value or "", re.S)
                return m.group(1) if m else None
            return value

        return self.run(work)

    def write_base_url(self, url: str) -> None:
        product = self.cfg.product

        def work(cur):
            if product in ("jira-software", "jira-servicemanagement"):
                cur.execute("""UPDATE propertystring SET propertyvalue = %s WHERE id IN
                               (SELECT id FROM propertyentry WHERE property_key = 'jira.baseurl')""", (url,))
            elif product == "confluence":
                cur.execute("""UPDATE bandana SET bandanavalue =
                               regexp_replace(bandanavalue, '<baseUrl>.*?</baseUrl>', %s)
                               WHERE bandanacontext = '_GLOBAL' AND bandanakey = 'atlassian.confluence.settings'""",
                            ("<baseUrl>" + xml_escape(url) + "</baseUrl>",))
            elif product == "bitbucket":
                cur.execute("UPDATE app_property SET prop_value = %s WHERE prop_key = 'instance.url'", (url,))
            elif product == "bamboo":
                cur.execute("UPDATE bandana SET serialized_data = %s WHERE bandana_key = 'bamboo.baseUrl'", (url,))
            else:
                cur.execute("UPDATE cwd_property SET property_value = %s WHERE property_key = 'crowd' "
                            "AND property_name = 'base.url'", (url,))

        self.run(work)

    def add_item(self, title: str) -> dict:
        def work(cur):
            cur.execute("INSERT INTO standin_item (title) VALUES (%s) RETURNING id, title, created", (title,))
            i, t, c = cur.fetchone()
            return {"id": i, "title": t, "created": c.isoformat()}
        return self.run(work)

    def list_items(self) -> list:
        def work(cur):
            cur.execute("SELECT id, title, created FROM standin_item ORDER BY id")
            return [{"id": i, "title": t, "created": c.isoformat()} for i, t, c in cur.fetchall()]
        return self.run(work)


# --------------------------------------------------------------------------
# Home directory
# --------------------------------------------------------------------------

def count_files(root: str) -> int:
    n = 0
    for _dirpath, _dirs, files in os.walk(root):
        n += len(files)
    return n


def prepare_home(cfg: Config, uid: int, gid: int) -> None:
    """As root: make home exist and belong to the product user (like the real
    images' entrypoints do for a freshly mounted volume)."""
    os.makedirs(cfg.home, exist_ok=True)
    st = os.stat(cfg.home)
    if (st.st_uid, st.st_gid) != (uid, gid):
        for dirpath, dirs, files in os.walk(cfg.home):
            os.lchown(dirpath, uid, gid)
            for name in dirs + files:
                os.lchown(os.path.join(dirpath, name), uid, gid)


def write_home_files(cfg: Config) -> None:
    home = cfg.home
    p = cfg.p
    for d in ["log"] + p.get("extra_dirs", []):
        os.makedirs(os.path.join(home, d), exist_ok=True)
    # The config file: written on the first start only (or with ATL_FORCE_CFG_UPDATE=true),
    # never for Crowd or Bitbucket (plan S1; homefiles.py has the sources).
    done = homefiles.config_ensure(cfg.product, home, p["config"], cfg.env, cfg.schema_version)
    if done != "none":
        log(f"{p['config']}: {done}")
    cfg.connection_settle()
    if cfg.product == "confluence":
        keyfile = os.path.join(home, "keys", "standin-key.txt")
        if not os.path.exists(keyfile):
            with open(keyfile, "w") as f:
                f.write(os.urandom(16).hex() + "\n")
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat()
    with open(os.path.join(home, p["log"]), "a") as f:
        f.write(f"{stamp} INFO [standin] {p['name']} {cfg.version} starting (pid {os.getpid()})\n")


def safe_home_path(home: str, rel: str) -> str:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\x00" in rel:
        raise ValueError("path must be a non-empty relative path")
    parts = rel.replace("\\", "/").split("/")
    if any(p == ".." for p in parts):
        raise ValueError("path must not contain '..'")
    full = os.path.normpath(os.path.join(home, rel))
    if not (full + "/").startswith(home.rstrip("/") + "/") or full == home.rstrip("/"):
        raise ValueError("path escapes home")
    return full


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

class App:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.db = Database(cfg)
        self.started = time.monotonic()
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat()
        self.stop = threading.Event()
        self.ready = False
        self.lost_db = False
        self.refused = None  # why the product refuses to run (ERROR), or None
        self.maintenance = False  # reindexing after an upgrade
        self.startup_lock = threading.Lock()
        for rule in RULES:
            rule.attach(self)

    def configure_db(self) -> None:
        """(Re)read where the database is (after Crowd's setup wrote its file)."""
        self.cfg.connection_settle()
        self.db = Database(self.cfg)

    def home_check(self) -> None:
        """Confluence "will not start up because the build number in the home directory [...]
        is newer" (https://support.atlassian.com/confluence/kb/after-downgrading-confluence-will-no-longer-run/)."""
        if self.cfg.product != "confluence":
            return
        home_build = homefiles.build_number_read(self.cfg.home, self.cfg.p["config"])
        mine = homefiles.build_number(self.cfg.schema_version)
        if home_build is not None and home_build > mine:
            raise Refused(f"the build number in the home directory ({home_build}) is newer than "
                          f"this Confluence ({mine}, version {self.cfg.schema_version})")

    def home_upgrade(self) -> None:
        """An upgrade also moves the build number in the home (Confluence)."""
        if self.cfg.product != "confluence":
            return
        conf = os.path.join(self.cfg.home, self.cfg.p["config"])
        if os.path.exists(conf):
            homefiles.build_number_write(self.cfg.home, self.cfg.p["config"],
                                         homefiles.build_number(self.cfg.schema_version))

    def refuse(self, why: str) -> None:
        self.refused = why
        log(f"ERROR: {self.cfg.p['name']} refuses to start: {why}")
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat()
        try:
            with open(os.path.join(self.cfg.home, self.cfg.p["log"]), "a") as f:
                f.write(f"{stamp} FATAL [standin] {why}\n")
        except OSError:
            pass

    # Background start-up: wait the start-up delay, then bring up the DB.
    def startup(self) -> None:
        if self.cfg.broken:
            log("broken tag: will never finish starting")
            return
        self.stop.wait(self.cfg.startup_seconds)
        with self.startup_lock:
            self._startup_db()

    def _startup_db(self) -> None:
        if self.ready or self.refused:
            return
        try:
            self.home_check()
        except Refused as e:
            return self.refuse(str(e))
        if not self.db.configured:
            if self.db.error:
                return self.refuse(self.db.error)
            log("no database configured: setup wizard would show (FIRST_RUN)")
            return
        where = f"{self.cfg.jdbc_url} as {self.cfg.jdbc_user or '?'} (from {self.cfg.db_source})"
        log(f"connecting to the database {where}")
        while not self.stop.is_set():
            try:
                try:
                    self.db.initialize()
                except Refused as e:
                    if self.cfg.failing:
                        self.home_upgrade()
                    return self.refuse(str(e))
                if self.db.upgraded_from is not None:
                    self.home_upgrade()
                    if self.cfg.reindex_seconds > 0:
                        self.maintenance = True
                        log(f"reindexing after the upgrade from {self.db.upgraded_from} "
                            f"({self.cfg.reindex_seconds:g} s)")
                        self.stop.wait(self.cfg.reindex_seconds)
                        self.maintenance = False
                self.ready = True
                log(f"{self.cfg.p['name']} {self.cfg.version} RUNNING")
                break
            except Exception as e:  # noqa: BLE001
                self.db.error = f"{type(e).__name__}: {e}".strip()
                log(f"cannot connect to the database {where}: {self.db.error}")
                self.stop.wait(1.0)
        if self.ready:
            for rule in RULES:
                try:
                    rule.on_running(self)
                except Exception:  # noqa: BLE001 - a rule's failure is not a DB failure
                    log(f"{rule.__name__}.on_running failed:\n{traceback.format_exc()}")

    def startup_after_setup(self) -> None:
        with self.startup_lock:
            self._startup_db()

    def state(self) -> str:
        if self.cfg.broken:
            return "STARTING"
        if time.monotonic() - self.started < self.cfg.startup_seconds:
            return "STARTING"
        if self.refused:
            return "ERROR"
        if not self.db.configured:
            return "FIRST_RUN"
        if self.maintenance:
            return "MAINTENANCE" if self.cfg.product in MAINTENANCE_PRODUCTS else "STARTING"
        if not self.ready:
            return "STARTING"
        return "RUNNING" if self.db.ping() else "ERROR"

    def license(self) -> dict:
        """Where the licence is read from (plan S5): Confluence's ATL_LICENSE_KEY only seeds
        confluence.cfg.xml on the first start ([README CONFLUENCE], the template's
        atlassian.license.message line), then only the file counts. The other products keep
        their licence in the database (set in the UI); the stand-in reports the variable."""
        if self.cfg.product == "confluence":
            key = homefiles.property_read(self.cfg.home, self.cfg.p["config"],
                                          homefiles.LICENSE_PROPERTY)
            source = "cfg" if key else None
        else:
            key = self.cfg.env.get("ATL_LICENSE_KEY") or None
            source = "env" if key else None
        return {"source": source,
                "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None}

    def info(self) -> dict:
        base_url = None
        db_ok = False
        if self.ready:
            try:
                base_url = self.db.read_base_url()
                db_ok = True
            except Exception as e:  # noqa: BLE001
                self.db.error = f"{type(e).__name__}: {e}".strip()
        home = self.cfg.home
        try:
            home_stat = os.stat(home)
            home_owner = [home_stat.st_uid, home_stat.st_gid]
        except OSError:
            home_owner = None
        return {
            "product": self.cfg.product,
            "product_name": self.cfg.p["name"],
            "version": self.cfg.version,
            "state": self.state(),
            "base_url": base_url,
            "context_path": self.cfg.context,
            "port": self.cfg.port,
            "uid": os.getuid(),
            "gid": os.getgid(),
            "user": _user_name(os.getuid()),
            "home": home,
            "home_owner": home_owner,
            "home_file_count": count_files(home) if os.path.isdir(home) else None,
            "starts_logged": _count_lines(os.path.join(home, self.cfg.p["log"])),
            "started_at": self.started_at,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "database": {
                "configured": self.db.configured,
                "reachable": db_ok,
                "jdbc_url": self.cfg.jdbc_url,
                "user": self.cfg.jdbc_user,
                "source": self.cfg.db_source,
                "error": self.db.error,
            },
            "refused": self.refused,
            "license": self.license(),
            "proxy": {"name": self.cfg.proxy_name, "port": self.cfg.proxy_port,
                      "scheme": self.cfg.scheme, "secure": self.cfg.secure},
            "env": dict(sorted(os.environ.items())),
            **{k: v for rule in RULES for k, v in rule.info(self).items()},
        }


def _user_name(uid: int):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _count_lines(path: str) -> int:
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


class Handler(BaseHTTPRequestHandler):
    server_version = "standin"
    protocol_version = "HTTP/1.1"
    app: App = None  # set on the subclass

    def log_message(self, fmt, *args):  # quiet; one line per request
        if os.environ.get("STANDIN_ACCESS_LOG", "1") != "0":
            log(f"{self.address_string()} {fmt % args}")

    def _send(self, code: int, obj, ctype="application/json") -> None:
        body = (json.dumps(obj, indent=None) + "\n").encode() if ctype == "application/json" else obj.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype + ("; charset=utf-8" if ctype.startswith("text") else ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def _route(self):
        path = urlsplit(self.path).path
        ctx = self.app.cfg.context
        if ctx:
            if path == ctx:
                return "/"
            if not path.startswith(ctx + "/"):
                return None
            path = path[len(ctx):]
        return path.rstrip("/") or "/"

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        app = self.app
        path = self._route()
        if path is None:
            return self._send(404, {"error": "outside context path", "context_path": app.cfg.context})
        if path == app.cfg.status_path:
            state = app.state()
            return self._send(CODES.get(state, 200), {app.cfg.status_key: state})
        if path == API + "/info":
            return self._send(200, app.info())
        if path == API + "/items":
            if not app.ready:
                return self._send(503, {"error": "not running", "state": app.state()})
            return self._send(200, {"items": app.db.list_items()})
        if path == "/":
            return self._send(200, f"<html><body><h1>{app.cfg.p['name']} {app.cfg.version} (lab stand-in)"
                                   f"</h1><p>state: {app.state()}</p></body></html>\n", "text/html")
        hit = rules_route(app, "GET", path, None)
        if hit:
            return self._send(*hit)
        return self._send(404, {"error": "not found", "path": path})

    def do_POST(self):
        app = self.app
        path = self._route()
        if path is None:
            return self._send(404, {"error": "outside context path"})
        body = self._json_body()
        if not isinstance(body, dict):
            return self._send(400, {"error": "body must be a JSON object"})
        if path == API + "/setup" and app.cfg.product == "crowd":
            return self._crowd_setup(body)
        if path == API + "/items":
            if not app.ready:
                return self._send(503, {"error": "not running", "state": app.state()})
            title = body.get("title")
            if not isinstance(title, str) or not title:
                return self._send(400, {"error": "title (string) required"})
            item = app.db.add_item(title)
            rules_changed(app, "items", title)
            return self._send(201, item)
        if path == API + "/files":
            try:
                full = safe_home_path(app.cfg.home, body.get("path"))
            except ValueError as e:
                return self._send(400, {"error": str(e)})
            content = body.get("content", "")
            if not isinstance(content, str):
                return self._send(400, {"error": "content must be a string"})
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(content)
            rules_changed(app, "files", os.path.relpath(full, app.cfg.home))
            return self._send(201, {"path": os.path.relpath(full, app.cfg.home), "bytes": len(content.encode())})
        hit = rules_route(app, "POST", path, body)
        if hit:
            return self._send(*hit)
        return self._send(404, {"error": "not found", "path": path})

    def _crowd_setup(self, body: dict):
        """Stands in for finishing Crowd's setup wizard: it writes shared/crowd.cfg.xml with
        the database connection, then Crowd connects (plan S2)."""
        app = self.app
        errors = {}
        for key in ("jdbc_url", "user", "password"):
            if not isinstance(body.get(key), str) or not body.get(key):
                errors[key] = "a non-empty string is required"
        if "jdbc_url" not in errors:
            try:
                parse_jdbc_url(body["jdbc_url"])
            except ValueError as e:
                errors["jdbc_url"] = str(e)
        if errors:
            return self._send(400, {"error": "invalid setup", "fields": errors})
        if app.db.configured:
            return self._send(409, {"error": "already set up", "state": app.state()})
        homefiles.crowd_setup_write(app.cfg.home, app.cfg.p["config"], body["jdbc_url"],
                                    body["user"], body["password"])
        app.configure_db()
        log(f"setup wrote {app.cfg.p['config']} naming {body['jdbc_url']}")
        threading.Thread(target=app.startup_after_setup, daemon=True).start()
        return self._send(201, {"config": app.cfg.p["config"], "state": app.state()})

    def do_PUT(self):
        app = self.app
        path = self._route()
        if path in (API + "/baseurl", "/rest/api/2/settings/baseUrl"):
            if not app.ready:
                return self._send(503, {"error": "not running", "state": app.state()})
            body = self._json_body()
            url = body.get("base_url") if isinstance(body, dict) else body
            if not isinstance(url, str) or not url:
                return self._send(400, {"error": "base_url (string) required"})
            app.db.write_base_url(url)
            return self._send(200, {"base_url": app.db.read_base_url()})
        hit = rules_route(app, "PUT", path, self._json_body())
        if hit:
            return self._send(*hit)
        return self._send(404, {"error": "not found"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class SynchronyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        path = urlsplit(self.path).path.rstrip("/")
        if path in ("/synchrony/heartbeat", "/heartbeat"):
            body, code = b"OK", 200
        else:
            body, code = b"not found", 404
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class BannerHandler(socketserver.BaseRequestHandler):
    banner = b"SSH-2.0-standin\r\n"

    def handle(self):
        try:
            self.request.sendall(self.banner)
            self.request.settimeout(2)
            self.request.recv(256)
        except OSError:
            pass


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def drop_privileges(cfg: Config) -> None:
    uid = int(os.environ.get("STANDIN_UID", cfg.p["uid"]))
    gid = int(os.environ.get("STANDIN_GID", cfg.p["gid"]))
    if os.geteuid() != 0:
        return
    prepare_home(cfg, uid, gid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    try:
        os.environ["HOME"] = pwd.getpwuid(uid).pw_dir
    except KeyError:
        pass


def main() -> int:
    cfg = Config(dict(os.environ))
    drop_privileges(cfg)
    os.makedirs(cfg.home, exist_ok=True)
    write_home_files(cfg)
    app = App(cfg)

    handler = type("BoundHandler", (Handler,), {"app": app})
    servers = [Server(("0.0.0.0", cfg.port), handler)]
    if "synchrony_port" in cfg.p:
        servers.append(Server(("0.0.0.0", cfg.p["synchrony_port"]), SynchronyHandler))
    for key, banner in (("ssh_port", b"SSH-2.0-standin-bitbucket\r\n"), ("agent_port", b"standin-bamboo-agent\r\n")):
        if key in cfg.p:
            h = type("Banner", (BannerHandler,), {"banner": banner})
            servers.append(TCPServer(("0.0.0.0", cfg.p[key]), h))

    def on_signal(signum, _frame):
        log(f"signal {signum}: shutting down")
        app.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    threading.Thread(target=app.startup, daemon=True).start()
    ports = ", ".join(str(s.server_address[1]) for s in servers)
    log(f"{cfg.p['name']} {cfg.version} stand-in listening on {ports}, context path {cfg.context or '/'}, "
        f"uid {os.getuid()}, home {cfg.home}")

    while not app.stop.is_set():
        app.stop.wait(1.0)
    for s in servers:
        s.shutdown()
        s.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    try:
        if os.environ.get("STANDIN_ROLE") == "mail-sink":  # the lab's SMTP/POP sink (sink.py)
            import sink

            sys.exit(sink.main())
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:  # pragma: no cover
        traceback.print_exc()
        sys.exit(1)
