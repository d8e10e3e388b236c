"""The products' home files the panel edits: each product's database config file pointed at
another database (nothing else in it changes, values escaped), Confluence's licence, and the
remote edit that keeps a file's mode and owner."""

from __future__ import annotations

import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from panel.operations import OperationFailed
from provisioning.homefiles import (
    HomeFileError,
    confluence_license_get,
    confluence_license_set,
    db_config_read,
    db_config_rewrite,
    home_db_config_point,
    home_file_edit,
    home_file_read,
)
from provisioning.models import AtlassianInstance, Host, Operation

# Rendered from the images' templates (dbconfig.xml.j2 of docker-atlassian-jira,
# confluence.cfg.xml.j2 of docker-atlassian-confluence-server) with a source instance's values.
JIRA_DBCONFIG = b"""<?xml version="1.0" encoding="UTF-8"?>

<jira-database-config>
  <name>defaultDS</name>
  <delegator-name>default</delegator-name>
  <schema-name>public</schema-name>
  <database-type>postgres72</database-type>
  <jdbc-datasource>
    <url>jdbc:postgresql://db:5432/prod_jira</url>
    <username>prod_jira</username>
    <password>s3cret-of-prod</password>
    <driver-class>org.postgresql.Driver</driver-class>

    <pool-min-size>20</pool-min-size>
    <pool-max-size>100</pool-max-size>
    <validation-query>select 1</validation-query>
  </jdbc-datasource>
</jira-database-config>
"""

CONFLUENCE_CFG = b"""<?xml version="1.0" encoding="UTF-8"?>

<confluence-configuration>

  <setupStep>complete</setupStep>
  <setupType>custom</setupType>
  <buildNumber>9012</buildNumber>

  <properties>
    <property name="confluence.database.connection.type">database-type-standard</property>
    <property name="attachments.dir">${confluenceHome}/attachments</property>
    <property name="confluence.database.choice">postgresql</property>

    <property name="hibernate.connection.url">jdbc:postgresql://db:5432/prod_wiki</property>
    <property name="hibernate.connection.username">prod_wiki</property>
    <property name="hibernate.connection.password">s3cret-of-prod</property>
    <property name="hibernate.connection.driver_class">org.postgresql.Driver</property>

    <property name="atlassian.license.message">AAAB-old-key</property>

  </properties>
</confluence-configuration>
"""

BAMBOO_CFG = b"""<?xml version="1.0" encoding="UTF-8"?>

<application-configuration>
  <setupStep>complete</setupStep>
  <setupType>custom</setupType>
  <buildNumber>90600</buildNumber>
  <properties>
    <property name="bamboo.jms.broker.uri">nio://0.0.0.0:54663</property>
    <property name="hibernate.connection.password">s3cret-of-prod</property>
    <property name="hibernate.connection.url">jdbc:postgresql://db:5432/prod_ci</property>
    <property name="hibernate.connection.username">prod_ci</property>
  </properties>
</application-configuration>
"""

# What Bamboo's template writes before its setup finished: no connection yet.
BAMBOO_CFG_BEFORE_SETUP = b"""<?xml version="1.0" encoding="UTF-8"?>

<application-configuration>
  <setupStep>setupLicense</setupStep>
  <setupType>initial</setupType>
  <buildNumber>0</buildNumber>
  <properties>
    <property name="bamboo.jms.broker.uri">nio://0.0.0.0:54663</property>
  </properties>
</application-configuration>
"""

CROWD_CFG = b"""<?xml version="1.0" encoding="UTF-8"?>
<application-configuration>
  <setupStep>complete</setupStep>
  <setupType>install.new</setupType>
  <buildNumber>1944</buildNumber>
  <properties>
    <property name="crowd.server.id">BQ4F-XXXX</property>
    <property name="hibernate.connection.driver_class">org.postgresql.Driver</property>
    <property name="hibernate.connection.password">s3cret-of-prod</property>
    <property name="hibernate.connection.url">jdbc:postgresql://db:5432/prod_sso</property>
    <property name="hibernate.connection.username">prod_sso</property>
    <property name="license">AAAB-crowd</property>
  </properties>
</application-configuration>
"""

BITBUCKET_PROPERTIES = (
    b"# Bitbucket configuration (written by a database migration)\r\n"
    b"jdbc.driver=org.postgresql.Driver\r\n"
    b"jdbc.url=jdbc:postgresql://db:5432/prod_git\r\n"
    b"jdbc.user = prod_git\r\n"
    b"jdbc.password=s3cret-\\\r\n"
    b"    of-prod\r\n"
    b"! an old style comment\r\n"
    b"plugin.ssh.port=7999\r\n"
)

TARGET = {"url": "jdbc:postgresql://db:5432/copy_db", "user": "copy_user", "password": "n3w"}

FILES = {
    "jira-software": JIRA_DBCONFIG,
    "jira-servicemanagement": JIRA_DBCONFIG,
    "confluence": CONFLUENCE_CFG,
    "bamboo": BAMBOO_CFG,
    "crowd": CROWD_CFG,
    "bitbucket": BITBUCKET_PROPERTIES,
}


@pytest.mark.parametrize("product", sorted(FILES))
def test_each_products_file_is_pointed_at_the_new_database_and_nothing_else_changes(product):
    original = FILES[product]
    before = db_config_read(product, original)
    assert before is not None and before.password == "s3cret-of-prod"
    assert before.database.startswith("prod_")

    rewritten = db_config_rewrite(product, original, **TARGET)

    after = db_config_read(product, rewritten)
    assert (after.url, after.user, after.password) == tuple(TARGET.values())
    assert after.database == "copy_db"
    # Every other byte is the original's: putting the old values back gives the same file.
    restored = db_config_rewrite(
        product, rewritten, url=before.url, user=before.user, password=before.password
    )
    if product == "bitbucket":
        # the continuation line and the spaces around = are normalised on the edited lines only
        assert (
            restored.replace(b"\r\n", b"\n").splitlines()[:3]
            == (original.replace(b"\r\n", b"\n").splitlines()[:3])
        )
        assert restored.endswith(b"! an old style comment\r\nplugin.ssh.port=7999\r\n")
        assert b"jdbc.password=s3cret-of-prod\r\n" in restored
    else:
        assert restored == original
    assert b"s3cret-of-prod" not in rewritten and b"prod_" not in rewritten.split(b"license")[0]


@pytest.mark.parametrize("product", ["jira-software", "confluence", "bamboo", "crowd"])
def test_a_password_with_xml_characters_is_escaped_and_reads_back_exactly(product):
    password = "a<b&c>d\"e'f]]>g ü"
    rewritten = db_config_rewrite(
        product, FILES[product], url=TARGET["url"], user="u", password=password
    )
    assert b"a&lt;b&amp;c&gt;d" in rewritten
    ET.fromstring(rewritten)  # noqa: S314 - our own output: still well-formed for any reader
    assert db_config_read(product, rewritten).password == password


def test_a_bitbucket_password_is_escaped_for_java_properties():
    password = "back\\slash = colon: #hash ü"
    rewritten = db_config_rewrite(
        "bitbucket", BITBUCKET_PROPERTIES, url=TARGET["url"], user="u", password=password
    )
    assert b"jdbc.password=back\\\\slash = colon: #hash \\u00fc\r\n" in rewritten
    assert db_config_read("bitbucket", rewritten).password == password
    rewritten.decode("ascii")  # reads the same as ISO-8859-1 (Properties.load) and UTF-8


def test_a_bitbucket_file_without_jdbc_lines_names_no_database_and_missing_keys_are_added():
    assert db_config_read("bitbucket", b"plugin.ssh.port=7999\n") is None
    half = b"jdbc.url=jdbc:postgresql://db:5432/prod_git\nplugin.x=1"
    rewritten = db_config_rewrite("bitbucket", half, **TARGET)
    assert rewritten == (
        b"jdbc.url=jdbc:postgresql://db:5432/copy_db\nplugin.x=1\n"
        b"jdbc.user=copy_user\njdbc.password=n3w\n"
    )


def test_an_empty_element_gets_its_value():
    data = JIRA_DBCONFIG.replace(b"<password>s3cret-of-prod</password>", b"<password />")
    assert db_config_read("jira-software", data).password == ""
    rewritten = db_config_rewrite("jira-software", data, **TARGET)
    assert b"<password>n3w</password>" in rewritten


@pytest.mark.parametrize(
    ("product", "data", "words"),
    [
        (
            "jira-software",
            JIRA_DBCONFIG.replace(b"<username>prod_jira</username>", b""),
            "jira-database-config/jdbc-datasource/username",
        ),
        (
            "confluence",
            CONFLUENCE_CFG.replace(b"hibernate.connection.url", b"x"),
            "hibernate.connection.url",
        ),
        ("crowd", b"<application-configuration/>", "hibernate.connection.url"),
        ("jira-software", b"jdbc.url=x\n", "not well-formed XML"),
        ("jira-software", JIRA_DBCONFIG.replace(b"</url>", b"</url><url>x</url>"), "2 times"),
    ],
)
def test_a_file_without_the_expected_elements_is_refused_with_what_it_lacks(product, data, words):
    with pytest.raises(HomeFileError, match=words):
        db_config_read(product, data)
    with pytest.raises(HomeFileError, match=words):
        db_config_rewrite(product, data, **TARGET)


def test_a_cfg_of_a_product_never_set_up_names_no_database():
    assert db_config_read("bamboo", BAMBOO_CFG_BEFORE_SETUP) is None


def test_a_document_type_declaration_is_refused_so_no_entity_is_expanded():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]>'
        b"<jira-database-config><jdbc-datasource><url>&y;</url></jdbc-datasource>"
        b"</jira-database-config>"
    )
    with pytest.raises(HomeFileError, match="DOCTYPE"):
        db_config_read("jira-software", bomb)


def test_the_confluence_licence_is_replaced_in_place():
    assert confluence_license_get(CONFLUENCE_CFG) == "AAAB-old-key"
    changed = confluence_license_set(CONFLUENCE_CFG, "AAAB<new>&key")
    assert confluence_license_get(changed) == "AAAB<new>&key"
    assert changed == CONFLUENCE_CFG.replace(b"AAAB-old-key", b"AAAB&lt;new&gt;&amp;key")


def test_a_confluence_licence_is_added_after_the_last_property_with_its_indentation():
    without = CONFLUENCE_CFG.replace(
        b'    <property name="atlassian.license.message">AAAB-old-key</property>\n', b""
    )
    assert confluence_license_get(without) is None
    changed = confluence_license_set(without, "AAAB-new")
    assert confluence_license_get(changed) == "AAAB-new"
    assert (
        b'<property name="hibernate.connection.driver_class">org.postgresql.Driver</property>\n'
        b'    <property name="atlassian.license.message">AAAB-new</property>\n'
    ) in changed
    bare = b"<confluence-configuration>\n  <properties></properties>\n</confluence-configuration>"
    assert confluence_license_get(confluence_license_set(bare, "K")) == "K"
    with pytest.raises(HomeFileError, match="no <properties>"):
        confluence_license_set(b"<confluence-configuration/>", "K")


# --- on the host (a fake connection) ----------------------------------------------------------


@dataclass
class _Stat:
    st_mode: int
    st_uid: int
    st_gid: int


@dataclass
class FakeConnection:
    """Files of a host in memory, with their modes and owners."""

    files: dict[str, bytes] = field(default_factory=dict)
    stats: dict[str, _Stat] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    links: set[str] = field(default_factory=set)

    def read(self, path: str, *, missing_ok: bool = False, record: bool = False) -> bytes | None:
        if path not in self.files and missing_ok:
            return None
        return self.files[path]

    def sftp(self) -> FakeConnection:
        return self

    def stat(self, path: str) -> _Stat:
        return self.stats[path]

    def lstat(self, path: str) -> Any:
        """What SFTP's lstat says: a link is a link, a directory holds files, else missing."""
        if path in self.links:
            return SimpleNamespace(st_mode=stat.S_IFLNK | 0o777)
        if path in self.files:
            return SimpleNamespace(st_mode=stat.S_IFREG | 0o600)
        if any(f.startswith(path + "/") for f in self.files):
            return SimpleNamespace(st_mode=stat.S_IFDIR | 0o755)
        raise FileNotFoundError(path)

    def upload(self, path: str, data: bytes, **kwargs: Any) -> None:
        self.files[path] = data
        self.uploads.append({"path": path, **kwargs})


@dataclass
class FakeContext:
    steps: list[tuple[str, str]] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)

    def step(self, message: str, *, level: str = "info", **_: Any) -> None:
        self.steps.append((level, message))

    def add_secrets(self, values: Any) -> None:
        self.secrets.extend(values)


def _copy(product: str = "jira-software") -> AtlassianInstance:
    return AtlassianInstance(
        name="acme-copy",
        product=product,
        host=Host(name="app2", data_root="/srv/panel"),
        db_name="acme_copy",
        db_user="acme_copy",
        db_password="the-copys-password",
    )


def _path(relpath: str) -> str:
    return f"/srv/panel/instances/acme-copy/home/{relpath}"


def test_a_home_file_edit_keeps_the_files_mode_and_owner():
    conn = FakeConnection(
        {_path("dbconfig.xml"): JIRA_DBCONFIG},
        {_path("dbconfig.xml"): _Stat(0o100640, 2001, 2001)},
    )
    changed = home_file_edit(conn, _copy(), "dbconfig.xml", lambda data: data + b"<!-- x -->")
    assert changed is True
    assert conn.uploads[0]["mode"] == 0o640 and conn.uploads[0]["owner"] == (2001, 2001)
    assert home_file_edit(conn, _copy(), "dbconfig.xml", lambda data: data) is False
    assert len(conn.uploads) == 1  # an unchanged file is not written again
    assert home_file_edit(conn, _copy(), "absent.xml", lambda data: b"") is None
    with pytest.raises(ValueError, match="inside home"):
        home_file_edit(conn, _copy(), "../compose.yml", lambda data: data)


@pytest.mark.parametrize("link", ["confluence.cfg.xml", "shared"])
def test_a_home_file_reached_through_a_link_is_refused_and_never_read_or_written(link):
    # The tenant's app writes its home; the panel works in it as root, so a planted link to
    # another tenant's home must not be followed (neither the file nor a directory on the way).
    relpath = "confluence.cfg.xml" if link == "confluence.cfg.xml" else "shared/crowd.cfg.xml"
    conn = FakeConnection(
        {_path(relpath): CONFLUENCE_CFG}, {_path(relpath): _Stat(0o100600, 2002, 2002)}
    )
    conn.links.add(_path(link))
    reads = []
    original = conn.read
    conn.read = lambda path, **kw: reads.append(path) or original(path, **kw)
    with pytest.raises(OperationFailed, match="symbolic link"):
        home_file_edit(conn, _copy(), relpath, lambda data: b"changed")
    with pytest.raises(OperationFailed, match="symbolic link"):
        home_file_read(conn, _copy(), relpath)
    assert reads == [] and conn.uploads == []


def test_restoring_points_the_copied_home_at_the_copys_database_without_logging_its_password():
    conn = FakeConnection(
        {_path("confluence.cfg.xml"): CONFLUENCE_CFG},
        {_path("confluence.cfg.xml"): _Stat(0o100600, 2002, 2002)},
    )
    ctx = FakeContext()
    previous = home_db_config_point(ctx, conn, _copy("confluence"))
    assert previous.database == "prod_wiki"
    now = db_config_read("confluence", conn.files[_path("confluence.cfg.xml")])
    assert now.url == "jdbc:postgresql://db:5432/acme_copy" and now.user == "acme_copy"
    assert now.password == "the-copys-password"
    assert conn.uploads[0]["owner"] == (2002, 2002) and conn.uploads[0]["mode"] == 0o600
    text = " ".join(message for _level, message in ctx.steps)
    assert "confluence.cfg.xml" in text and "prod_wiki" in text and "acme_copy" in text
    assert "password" not in text and "s3cret" not in text
    assert "the-copys-password" in ctx.secrets  # masked should anything echo it


def test_a_copied_home_without_the_file_says_the_source_was_never_set_up():
    ctx = FakeContext()
    assert home_db_config_point(ctx, FakeConnection(), _copy("crowd")) is None
    assert ctx.steps[0][0] == "warning"
    assert "shared/crowd.cfg.xml" in ctx.steps[0][1] and "never set up" in ctx.steps[0][1]


def test_a_copied_home_with_a_damaged_file_fails_naming_the_file():
    conn = FakeConnection({_path("dbconfig.xml"): b"<jira-database-config/>"})
    with pytest.raises(OperationFailed, match=r"dbconfig\.xml in the copied home of acme-copy"):
        home_db_config_point(FakeContext(), conn, _copy())


# --- applying a Confluence licence (the service that starts it) -------------------------------


@pytest.mark.django_db
def test_a_key_added_to_a_deployed_confluence_starts_a_licence_apply(
    alice, acme, app_host, access_of, no_broker, django_capture_on_commit_callbacks
):
    from provisioning.licenses import license_encode_for_tests
    from provisioning.services import license_add
    from tests.support.factories import make_instance

    wiki = make_instance(acme, "acme-wiki", product="confluence", version="8.5.0", host=app_host)
    with django_capture_on_commit_callbacks(execute=True):
        key = license_encode_for_tests({"SEN": "S1"})
        license_add(actor=access_of(alice), instance=wiki, key=key)
    apply = Operation.objects.get(instance=wiki, kind="license.apply")
    assert apply.status == "pending" and no_broker == [apply.id]


@pytest.mark.django_db
def test_a_key_added_while_another_operation_runs_stays_not_applied_and_says_so(
    alice, acme, app_host, access_of, no_broker
):
    from provisioning.licenses import license_encode_for_tests
    from provisioning.services import license_add
    from tenants.models import AuditEvent
    from tests.support.factories import make_instance, make_operation

    wiki = make_instance(acme, "acme-wiki", product="confluence", version="8.5.0", host=app_host)
    make_operation(wiki, kind="instance.restart", status="running")
    lic = license_add(
        actor=access_of(alice), instance=wiki, key=license_encode_for_tests({"SEN": "S2"})
    )
    assert lic.pk  # the key is kept
    # no other operation edits confluence.cfg.xml: nothing pretends the licence is applied
    assert not Operation.objects.filter(instance=wiki, kind="license.apply").exists()
    event = AuditEvent.objects.get(action="license.apply_deferred")
    assert event.changes == {"instance": "acme-wiki", "busy_with": "instance.restart"}


def test_a_licence_for_a_confluence_cfg_of_the_wrong_shape_fails_before_the_app_is_stopped(
    monkeypatch,
):
    from contextlib import nullcontext

    from provisioning import operations, rollout

    conn = FakeConnection({_path("confluence.cfg.xml"): b"<confluence-configuration><properties>"})
    calls = []
    conn.exists = lambda path: True  # type: ignore[attr-defined]
    conn.compose = lambda *args, **kwargs: calls.append(args)  # type: ignore[attr-defined]
    monkeypatch.setattr(rollout, "connect", lambda instance, ctx: nullcontext(conn))
    with pytest.raises(OperationFailed, match="acme-copy keeps running"):
        operations._license_file_write(FakeContext(), _copy("confluence"), "AAAB-new-key")
    assert calls == [] and conn.uploads == []  # never stopped, nothing written
