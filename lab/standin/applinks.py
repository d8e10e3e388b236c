"""Application links of the stand-in (plan P4): kept in the product's own tables, so the
panel's neutralising SQL runs against the same rows a real product has.

* Confluence: ``BANDANA`` rows in context ``_GLOBAL`` with keys
  ``applinks.admin.<id>.rpc.url`` and ``applinks.admin.<id>.display.url``, the value an
  XStream string ``<string>URL</string>``, as Atlassian's KB edits them
  (https://ja.confluence.atlassian.com/confkb/how-to-update-an-application-link-url-manually-674988406.html).
* Jira and JSM: the same keys as properties (``propertyentry`` of ``jira.properties`` entity 1,
  type 5, value in ``propertystring``). No public source states this; it is unverified on a
  real Jira (the lab README says so).
* Bitbucket, Bamboo, Crowd: no public source says where they keep links: the API answers 404.

``POST <ctx>/rest/standin/1.0/applinks`` ``{"url": "https://..."}`` stores one link (201
``{"id", "url"}``); ``info.applinks`` lists the distinct URLs stored under those keys (a link
whose display URL was left behind by a rewrite shows up as a second entry). Links are only
stored, never called.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import unescape as xml_unescape

API = "/rest/standin/1.0"
JIRA = ("jira-software", "jira-servicemanagement")
PRODUCTS = (*JIRA, "confluence")
SUFFIXES = ("rpc.url", "display.url")
_STRING = re.compile(r"^\s*<string>(.*)</string>\s*$", re.S)


def url_error(url: object) -> str | None:
    """Why ``url`` is no application link URL, or None."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        return "must be an http(s) URL of at most 2000 characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if any(c.isspace() for c in url):
        return "must not contain white space"
    return None


def link_add(app, url: str) -> str:
    """Store one link (both keys) in the product's table; returns its id."""
    link_id = str(uuid.uuid4())
    product = app.cfg.product

    def work(cur) -> None:
        for suffix in SUFFIXES:
            key = f"applinks.admin.{link_id}.{suffix}"
            if product == "confluence":
                cur.execute("SELECT coalesce(max(bandanaid), 0) + 1 FROM bandana")
                (bid,) = cur.fetchone()
                cur.execute(
                    "INSERT INTO bandana (bandanaid, bandanacontext, bandanakey, bandanavalue) "
                    "VALUES (%s, '_GLOBAL', %s, %s)",
                    (bid, key, f"<string>{xml_escape(url)}</string>"),
                )
            else:
                cur.execute("SELECT coalesce(max(id), 10000) + 1 FROM propertyentry")
                (pid,) = cur.fetchone()
                cur.execute(
                    "INSERT INTO propertyentry (id, entity_name, entity_id, property_key, "
                    "propertytype) VALUES (%s, 'jira.properties', 1, %s, 5)",
                    (pid, key),
                )
                cur.execute(
                    "INSERT INTO propertystring (id, propertyvalue) VALUES (%s, %s)", (pid, url)
                )

    app.db.run(work)
    return link_id


def links(app) -> list[str]:
    """The distinct URLs stored under the applink keys, read from the database."""
    product = app.cfg.product

    def work(cur) -> list[str]:
        pattern = "applinks.admin.%.url"
        if product == "confluence":
            cur.execute(
                "SELECT bandanavalue FROM bandana WHERE bandanakey LIKE %s ORDER BY bandanaid",
                (pattern,),
            )
        else:
            cur.execute(
                "SELECT s.propertyvalue FROM propertyentry e JOIN propertystring s "
                "ON s.id = e.id WHERE e.property_key LIKE %s ORDER BY e.id",
                (pattern,),
            )
        seen: list[str] = []
        for (value,) in cur.fetchall():
            if product == "confluence":
                m = _STRING.match(value or "")
                value = xml_unescape(m.group(1)) if m else value
            if value not in seen:
                seen.append(value)
        return seen

    return app.db.run(work)


# ------------------------------------------------------------------------------------------
# The interface standin.py calls
# ------------------------------------------------------------------------------------------


def attach(app) -> None:
    pass


def on_running(app) -> None:
    pass


def on_change(app, kind: str, detail: str = "") -> None:
    pass


def route(app, method: str, path: str, body) -> tuple[int, object] | None:
    if path != API + "/applinks" or method not in ("GET", "POST"):
        return None
    if app.cfg.product not in PRODUCTS:
        return 404, {
            "error": f"{app.cfg.p['name']} keeps no application links in the stand-in",
            "products": list(PRODUCTS),
        }
    if not app.ready:
        return 503, {"error": "not running", "state": app.state()}
    if method == "POST":
        url = body.get("url") if isinstance(body, dict) else None
        problem = url_error(url)
        if problem:
            return 400, {"error": "invalid application link", "fields": {"url": problem}}
        return 201, {"id": link_add(app, url), "url": url}
    return 200, {"applinks": links(app)}


def info(app) -> dict:
    if app.cfg.product not in PRODUCTS or not app.ready:
        return {"applinks": None if app.cfg.product not in PRODUCTS else []}
    try:
        return {"applinks": links(app)}
    except Exception as exc:  # noqa: BLE001 - info never fails on one section
        return {"applinks": None, "applinks_error": f"{type(exc).__name__}: {exc}"}
