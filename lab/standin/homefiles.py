"""The products' own configuration files in their homes, in the shapes of the official images'
templates, for the stand-in (plan S1, S3, S5).

Rule: "The Docker entrypoint generates application configuration on first start; not all of
these files are regenerated on subsequent starts", unless ``ATL_FORCE_CFG_UPDATE=true``
(https://atlassian.github.io/data-center-helm-charts/containers/JIRA/, likewise CONFLUENCE and
BAMBOO). The entrypoint writes Confluence's file with ``gen_cfg(..., overwrite=False)``
(``entrypoint.py``, ``config/confluence.cfg.xml.j2`` of
https://bitbucket.org/atlassian-docker/docker-atlassian-confluence-server), and later starts
connect to the database the file names: "Recreated Pods will still connect to the old database,
because dbconfig.xml is not overwritten"
(https://github.com/atlassian/data-center-helm-charts/issues/324).

* Jira/JSM ``dbconfig.xml``: ``<jira-database-config>...<jdbc-datasource><url>`` (the image's
  ``dbconfig.xml.j2``).
* Confluence ``confluence.cfg.xml``, Bamboo ``bamboo.cfg.xml``, Crowd ``shared/crowd.cfg.xml``:
  ``<property name="hibernate.connection.url|username|password">`` (Crowd: the keys Atlassian
  Labs' restore edits, https://github.com/atlassian-labs/data-center-terraform/blob/main/
  modules/products/crowd/pre_install.tf). Confluence also keeps ``<buildNumber>`` and its
  licence, ``atlassian.license.message`` (the template's ``ATL_LICENSE_KEY`` line).
* Bitbucket ``shared/bitbucket.properties``: ``jdbc.url``/``jdbc.user``/``jdbc.password``; the
  image never writes it ("created automatically when you perform a database migration",
  https://confluence.atlassian.com/bitbucketserver/bitbucket-server-config-properties-776640155.html).

Standard library only (this module never imports ``standin``, which runs as ``__main__``).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

# Files the entrypoint generates (and so ATL_FORCE_CFG_UPDATE regenerates).
GENERATED = ("jira-software", "jira-servicemanagement", "confluence", "bamboo")
HIBERNATE = {
    "url": "hibernate.connection.url",
    "user": "hibernate.connection.username",
    "password": "hibernate.connection.password",
}
LICENSE_PROPERTY = "atlassian.license.message"
DIALECT = {
    "confluence": "com.atlassian.confluence.impl.hibernate.dialect.PostgreSQLDialect",
    "bamboo": "org.hibernate.dialect.PostgreSQLDialect",
    "crowd": "org.hibernate.dialect.PostgreSQLDialect",
}
ROOT = {
    "confluence": "confluence-configuration",
    "bamboo": "application-configuration",
    "crowd": "application-configuration",
}


def version_key(version: str) -> tuple[int, ...]:
    """``"9.12.0-failing"`` -> ``(9, 12, 0)``: versions compare as integer tuples, so 9.5 is
    older than 9.17 (a string compare says otherwise)."""
    core = version.split("-", 1)[0]
    return tuple(int(p) for p in re.findall(r"\d+", core))


def build_number(version: str) -> int:
    """A build number that grows with the version (the stand-in's stand-in for Confluence's)."""
    parts = (list(version_key(version)) + [0, 0, 0])[:3]
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def _write(path: str, body: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, path)


def dbconfig_xml(url: str, user: str, password: str, db_type: str, driver: str) -> str:
    """Jira's ``dbconfig.xml`` as the image's ``dbconfig.xml.j2`` renders it."""
    e = xml_escape
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<jira-database-config>\n"
        "  <name>defaultDS</name>\n"
        "  <delegator-name>default</delegator-name>\n"
        f"  <database-type>{e(db_type)}</database-type>\n"
        "  <schema-name>public</schema-name>\n"
        "  <jdbc-datasource>\n"
        f"    <url>{e(url)}</url>\n"
        f"    <driver-class>{e(driver)}</driver-class>\n"
        f"    <username>{e(user)}</username>\n"
        f"    <password>{e(password)}</password>\n"
        "    <pool-min-size>20</pool-min-size>\n"
        "    <pool-max-size>100</pool-max-size>\n"
        "    <validation-query>select 1</validation-query>\n"
        "  </jdbc-datasource>\n"
        "</jira-database-config>\n"
    )


def hibernate_cfg_xml(
    product: str,
    url: str,
    user: str,
    password: str,
    *,
    build: int,
    license_key: str = "",
    setup_type: str = "custom",
) -> str:
    """``confluence.cfg.xml`` / ``bamboo.cfg.xml`` / ``crowd.cfg.xml`` in the templates' shape."""
    e = xml_escape
    props = [
        ("hibernate.connection.driver_class", "org.postgresql.Driver"),
        (HIBERNATE["url"], url),
        (HIBERNATE["user"], user),
        (HIBERNATE["password"], password),
        ("hibernate.dialect", DIALECT[product]),
    ]
    if license_key:
        props.append((LICENSE_PROPERTY, license_key))
    lines = "".join(f"    <property name={quoteattr(k)}>{e(v)}</property>\n" for k, v in props)
    root = ROOT[product]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<{root}>\n"
        "  <setupStep>complete</setupStep>\n"
        f"  <setupType>{e(setup_type)}</setupType>\n"
        f"  <buildNumber>{build}</buildNumber>\n"
        "  <properties>\n"
        f"{lines}"
        "  </properties>\n"
        f"</{root}>\n"
    )


def config_ensure(
    product: str, home: str, config_rel: str, env: dict[str, str], version: str
) -> str:
    """Write the product's config file from the environment on the first start only (absent
    file), or again with ``ATL_FORCE_CFG_UPDATE=true``; Crowd and Bitbucket never (Crowd's
    setup and Bitbucket's migration write theirs). Returns what happened, for the log:
    ``"written"``, ``"rewritten"``, ``"kept"`` or ``"none"``."""
    if product not in GENERATED:
        return "none"
    path = os.path.join(home, config_rel)
    exists = os.path.exists(path)
    force = env.get("ATL_FORCE_CFG_UPDATE", "").strip().lower() == "true"
    if exists and not force:
        return "kept"
    url = env.get("ATL_JDBC_URL", "")
    if not url:
        return "kept" if exists else "none"
    user = env.get("ATL_JDBC_USER", "")
    password = env.get("ATL_JDBC_PASSWORD", "")
    if product in ("jira-software", "jira-servicemanagement"):
        body = dbconfig_xml(
            url,
            user,
            password,
            env.get("ATL_DB_TYPE", "postgres72"),
            env.get("ATL_DB_DRIVER", "org.postgresql.Driver"),
        )
    else:
        body = hibernate_cfg_xml(
            product,
            url,
            user,
            password,
            build=build_number(version),
            license_key=env.get("ATL_LICENSE_KEY", "") if product == "confluence" else "",
        )
    _write(path, body)
    return "rewritten" if exists else "written"


def crowd_setup_write(home: str, config_rel: str, url: str, user: str, password: str) -> None:
    """What Crowd's setup wizard leaves behind: ``shared/crowd.cfg.xml`` naming the database."""
    _write(
        os.path.join(home, config_rel),
        hibernate_cfg_xml("crowd", url, user, password, build=0, setup_type="install.new"),
    )


def _parse(path: str) -> ET.Element | None:
    try:
        return ET.parse(path).getroot()  # noqa: S314 - our own file, no DTDs in it
    except (OSError, ET.ParseError):
        return None


def properties_read(path: str) -> dict[str, str]:
    """A ``java.util.Properties`` file's ``key=value`` lines (no continuation lines)."""
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        s = line.strip()
        if not s or s[0] in "#!":
            continue
        m = re.match(r"^((?:\\.|[^=:\s\\])+)\s*[=:\s]\s*(.*)$", s)
        if m:
            key = re.sub(r"\\(.)", r"\1", m.group(1))
            value = re.sub(r"\\(.)", r"\1", m.group(2))
            out[key] = value
    return out


def connection_read(product: str, home: str, config_rel: str) -> dict[str, str] | None:
    """``{"url", "user", "password"}`` the product file names, or None (no file / no URL)."""
    path = os.path.join(home, config_rel)
    if config_rel.endswith(".properties"):
        props = properties_read(path)
        if not props.get("jdbc.url"):
            return None
        return {
            "url": props["jdbc.url"],
            "user": props.get("jdbc.user", ""),
            "password": props.get("jdbc.password", ""),
        }
    root = _parse(path)
    if root is None:
        return None
    if product in ("jira-software", "jira-servicemanagement"):
        ds = root.find("jdbc-datasource")
        if ds is None or not (ds.findtext("url") or "").strip():
            return None
        return {
            "url": (ds.findtext("url") or "").strip(),
            "user": ds.findtext("username") or "",
            "password": ds.findtext("password") or "",
        }
    values = {k: property_read_root(root, name) for k, name in HIBERNATE.items()}
    if not values["url"]:
        return None
    return {k: v or "" for k, v in values.items()}


def property_read_root(root: ET.Element, name: str) -> str | None:
    """The text of ``<properties><property name=NAME>`` in a parsed ``*.cfg.xml``."""
    for prop in root.iter("property"):
        if prop.get("name") == name:
            return (prop.text or "").strip()
    return None


def property_read(home: str, config_rel: str, name: str) -> str | None:
    """One property of a ``*.cfg.xml`` (None when the file or the property is absent)."""
    root = _parse(os.path.join(home, config_rel))
    return None if root is None else property_read_root(root, name)


def build_number_read(home: str, config_rel: str) -> int | None:
    """``<buildNumber>`` of a ``*.cfg.xml`` (None when absent)."""
    root = _parse(os.path.join(home, config_rel))
    text = None if root is None else root.findtext("buildNumber")
    try:
        return int(text) if text else None
    except ValueError:
        return None


def build_number_write(home: str, config_rel: str, build: int) -> None:
    """Set ``<buildNumber>`` in place (the upgrade tasks do), leaving every other byte."""
    path = os.path.join(home, config_rel)
    with open(path) as f:
        body = f.read()
    new = f"<buildNumber>{build}</buildNumber>"
    body, n = re.subn(r"<buildNumber>[^<]*</buildNumber>", new, body)
    if n:
        _write(path, body)
