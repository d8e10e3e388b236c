"""The products' own files in an instance's home that the panel edits: the database connection
a copied home names, and Confluence's licence.

The official images write these files on the first start only (or again with
``ATL_FORCE_CFG_UPDATE=true``): "The Docker entrypoint generates application configuration on
first start; not all of these files are regenerated on subsequent starts"
(https://atlassian.github.io/data-center-helm-charts/containers/JIRA/, likewise CONFLUENCE and
BAMBOO). A home copied into a new instance therefore still names the source's database
("Recreated Pods will still connect to the old database, because dbconfig.xml is not
overwritten", https://github.com/atlassian/data-center-helm-charts/issues/324), so a restore
rewrites the file, the way Atlassian Labs' restore does for Crowd
(https://github.com/atlassian-labs/data-center-terraform/blob/main/modules/products/crowd/pre_install.tf).
Rewriting is preferred over ``ATL_FORCE_CFG_UPDATE``: regenerating Confluence's file also needs
``ATL_SETUP_STEP``/``TYPE``/``BUILD_NUMBER`` or its setup starts again (data-center-terraform
``modules/products/confluence/locals.tf``).

The edits are surgical: the XML is parsed (expat, no DTDs, so no entity expansion) only to find
the byte ranges of the elements to change; every other byte of the document stays as it was.
Values are XML-escaped, or escaped for ``java.util.Properties`` in Bitbucket's file.
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.parsers import expat

from panel.operations import OperationContext, OperationFailed
from provisioning.compose import instance_dir, instance_jdbc_url
from provisioning.models import AtlassianInstance
from provisioning.products import spec_for
from provisioning.remote import HostConnection

# Jira/JSM dbconfig.xml: <jira-database-config><jdbc-datasource><url>... (the image's template
# dbconfig.xml.j2, https://bitbucket.org/atlassian-docker/docker-atlassian-jira).
_DBCONFIG_PATHS = {
    "url": ("jira-database-config", "jdbc-datasource", "url"),
    "user": ("jira-database-config", "jdbc-datasource", "username"),
    "password": ("jira-database-config", "jdbc-datasource", "password"),
}
# confluence.cfg.xml, bamboo.cfg.xml and Crowd's shared/crowd.cfg.xml keep the connection as
# Hibernate properties (Confluence's confluence.cfg.xml.j2; Crowd: data-center-terraform's
# crowd/pre_install.tf edits exactly these keys).
_HIBERNATE_KEYS = {
    "url": "hibernate.connection.url",
    "user": "hibernate.connection.username",
    "password": "hibernate.connection.password",
}
# Bitbucket's shared/bitbucket.properties (https://confluence.atlassian.com/bitbucketserver/
# bitbucket-server-config-properties-776640155.html).
_BITBUCKET_KEYS = {"url": "jdbc.url", "user": "jdbc.user", "password": "jdbc.password"}
# Confluence keeps its licence in confluence.cfg.xml (the template's ATL_LICENSE_KEY line;
# data-center-terraform confluence/locals.tf sets the same key on restore).
CONFLUENCE_LICENSE_PROPERTY = "atlassian.license.message"
CONFLUENCE_CFG = "confluence.cfg.xml"


class HomeFileError(ValueError):
    """A product file that is not what the product writes (not XML, missing elements)."""


@dataclass(frozen=True)
class DbConnection:
    """The database connection a product file names (the password is a secret: never log it)."""

    url: str
    user: str
    password: str

    @property
    def database(self) -> str:
        """The database name of a ``jdbc:postgresql://host:port/NAME?...`` URL."""
        tail = self.url.split("//", 1)[-1]
        return tail.split("/", 1)[1].split("?", 1)[0] if "/" in tail else ""


# --- XML: find elements by byte range, change only their text ---------------------------------


@dataclass
class _Element:
    path: tuple[str, ...]
    attrs: dict[str, str]
    start: int  # the '<' of the start tag
    content_start: int = 0  # just after the start tag's '>'
    content_end: int = 0  # the '<' of the end tag
    end: int = 0  # just after the end tag's '>'
    empty: bool = False  # written as <x/>
    text: list[str] = field(default_factory=list)
    children: int = 0

    @property
    def value(self) -> str:
        return "".join(self.text)


def _tag_end(data: bytes, start: int) -> int:
    """The index just after the '>' closing the tag that starts at ``start`` (quotes aware)."""
    quote = 0
    for i in range(start + 1, len(data)):
        c = data[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):  # " '
            quote = c
        elif c == 0x3E:  # >
            return i + 1
    raise HomeFileError("a tag is not closed")


def _xml_elements(data: bytes) -> list[_Element]:
    """Every element of ``data`` with its byte ranges, in document order."""
    elements: list[_Element] = []
    stack: list[_Element] = []
    parser = expat.ParserCreate("UTF-8")

    def refuse_dtd(*_args: object) -> None:
        # The products' files never have one; refusing it rules out entity expansion.
        raise HomeFileError("it has a DOCTYPE, which the product never writes")

    def start(name: str, attrs: dict[str, str]) -> None:
        at = parser.CurrentByteIndex
        end = _tag_end(data, at)
        element = _Element(
            path=(*(stack[-1].path if stack else ()), name),
            attrs=attrs,
            start=at,
            content_start=end,
            empty=data[at : end - 1].endswith(b"/"),
        )
        if stack:
            stack[-1].children += 1
        stack.append(element)
        elements.append(element)

    def end(_name: str) -> None:
        element = stack.pop()
        if element.empty:
            element.content_end = element.end = element.content_start
        else:
            element.content_end = parser.CurrentByteIndex
            element.end = _tag_end(data, element.content_end)

    def text(chars: str) -> None:
        if stack:
            stack[-1].text.append(chars)

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise HomeFileError(f"it is not well-formed XML ({exc})") from None
    return elements


def _xml_text(value: str) -> bytes:
    """``value`` as XML character data; characters XML 1.0 cannot hold are refused."""
    for ch in value:
        code = ord(ch)
        if (
            code < 0x20
            and ch not in "\t\n\r"
            or 0xD800 <= code <= 0xDFFF
            or code in (0xFFFE, 0xFFFF)
        ):
            raise HomeFileError(f"a value holds the character U+{code:04X}, which XML cannot hold")
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("\r", "&#13;").encode()


def _replace_text(data: bytes, element: _Element, value: str) -> tuple[int, int, bytes]:
    """The splice (start, end, bytes) that sets ``element``'s text to ``value``."""
    if element.children:
        raise HomeFileError(f"<{element.path[-1]}> holds elements, not a value")
    if element.empty:
        open_tag = data[element.start : element.content_start].rstrip(b" \t\r\n>")
        open_tag = open_tag[:-1].rstrip() + b">"
        name = element.path[-1].encode()
        return element.start, element.end, open_tag + _xml_text(value) + b"</" + name + b">"
    return element.content_start, element.content_end, _xml_text(value)


def _splice(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for start, end, new in sorted(edits, reverse=True):
        data = data[:start] + new + data[end:]
    return data


def _one(found: list[_Element], what: str) -> _Element | None:
    if len(found) > 1:
        raise HomeFileError(f"it holds {what} {len(found)} times")
    return found[0] if found else None


def _dbconfig_find(elements: list[_Element]) -> dict[str, _Element | None]:
    return {
        key: _one([e for e in elements if e.path == path], f"<{'/'.join(path)}>")
        for key, path in _DBCONFIG_PATHS.items()
    }


def _properties_of(elements: list[_Element]) -> tuple[_Element | None, list[_Element]]:
    """The cfg file's ``<properties>`` element and its ``<property>`` children."""
    if not elements:
        raise HomeFileError("it is empty")
    holder = _one(
        [e for e in elements if e.path == (elements[0].path[0], "properties")], "<properties>"
    )
    children = [e for e in elements if holder and e.path == (*holder.path, "property")]
    return holder, children


def _property(children: list[_Element], name: str) -> _Element | None:
    return _one([e for e in children if e.attrs.get("name") == name], f'property "{name}"')


def _cfg_find(elements: list[_Element]) -> dict[str, _Element | None]:
    _holder, children = _properties_of(elements)
    return {key: _property(children, name) for key, name in _HIBERNATE_KEYS.items()}


def _cfg_not_set_up(elements: list[_Element]) -> bool:
    """A cfg file of a product whose setup never finished (Bamboo's and Confluence's templates
    start at another ``<setupStep>``; the connection is written when setup completes)."""
    steps = [e for e in elements if len(e.path) == 2 and e.path[1] == "setupStep"]
    return bool(steps) and steps[0].value.strip() != "complete"


# --- java.util.Properties lines (Bitbucket) ---------------------------------------------------


@dataclass
class _PropLine:
    key: str
    value: str
    start: int  # offsets in the latin-1 text
    end: int  # after the logical line's last physical line (without its line break)


def _prop_unescape(raw: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            n = raw[i + 1]
            if n == "u" and i + 6 <= len(raw):
                try:
                    out.append(chr(int(raw[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                except ValueError:
                    pass
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _prop_escape(value: str) -> str:
    """``value`` as a ``java.util.Properties`` value (ASCII, so ISO-8859-1 and UTF-8 agree)."""
    out: list[str] = []
    for i, c in enumerate(value):
        if c == "\\":
            out.append("\\\\")
        elif c in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
        elif c == " " and i == 0:
            out.append("\\ ")
        elif ord(c) < 0x20 or ord(c) > 0x7E:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(c))
        else:
            out.append(c)
    return "".join(out)


def _utf16_units(c: str) -> list[int]:
    raw = c.encode("utf-16-be")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _prop_lines(text: str) -> list[_PropLine]:
    """The key/value lines of a properties file (comments, blanks and continuations handled)."""
    lines: list[_PropLine] = []
    physical = text.splitlines(keepends=True)
    offset = 0
    i = 0
    while i < len(physical):
        start = offset
        body = physical[i].rstrip("\r\n")
        offset += len(physical[i])
        end = start + len(body)
        i += 1
        stripped = body.lstrip(" \t\f")
        if not stripped or stripped[0] in "#!":
            continue
        logical = stripped
        while _continues(logical) and i < len(physical):
            nxt = physical[i].rstrip("\r\n")
            logical = logical[:-1] + nxt.lstrip(" \t\f")
            end = offset + len(nxt)
            offset += len(physical[i])
            i += 1
        key, value = _prop_split(logical)
        lines.append(_PropLine(_prop_unescape(key), _prop_unescape(value), start, end))
    return lines


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _prop_split(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest


def _properties_read(data: bytes) -> dict[str, _PropLine]:
    found: dict[str, _PropLine] = {}
    for line in _prop_lines(data.decode("latin-1")):
        found[line.key] = line  # the last one counts, as in java.util.Properties
    return found


def _properties_set(data: bytes, values: dict[str, str]) -> bytes:
    """Set each key's value in place (its last line) or append ``key=value`` lines."""
    text = data.decode("latin-1")
    found = _properties_read(data)
    newline = "\r\n" if "\r\n" in text else "\n"
    edits = [
        (found[key].start, found[key].end, f"{key}={_prop_escape(value)}")
        for key, value in values.items()
        if key in found
    ]
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    appended = [f"{k}={_prop_escape(v)}" for k, v in values.items() if k not in found]
    if appended:
        if text and not text.endswith(("\n", "\r")):
            text += newline
        text += newline.join(appended) + newline
    return text.encode("latin-1")


# --- the database connection ------------------------------------------------------------------


def _style(product: str) -> str:
    name = spec_for(product).db_config_file
    if name.endswith("dbconfig.xml"):
        return "dbconfig"
    if name.endswith(".properties"):
        return "properties"
    return "cfg"


def db_config_read(product: str, data: bytes) -> DbConnection | None:
    """The connection ``product``'s config file names; ``None`` when it names none yet (a
    product whose setup never finished, or a Bitbucket file without ``jdbc.*`` lines).

    Raises :class:`HomeFileError` for a file that is not the product's shape."""
    style = _style(product)
    if style == "properties":
        lines = _properties_read(data)
        if _BITBUCKET_KEYS["url"] not in lines:
            return None
        got = {k: lines[name].value if name in lines else "" for k, name in _BITBUCKET_KEYS.items()}
        return DbConnection(**got)
    elements = _xml_elements(data)
    found = _dbconfig_find(elements) if style == "dbconfig" else _cfg_find(elements)
    if style == "cfg" and not any(found.values()) and _cfg_not_set_up(elements):
        return None
    missing = [key for key, element in found.items() if element is None]
    if missing:
        where = _DBCONFIG_PATHS if style == "dbconfig" else _HIBERNATE_KEYS
        names = ", ".join(
            "/".join(where[k]) if style == "dbconfig" else str(where[k]) for k in missing
        )
        raise HomeFileError(f"it has no {names}")
    return DbConnection(**{k: e.value.strip() for k, e in found.items() if e is not None})


def db_config_rewrite(product: str, data: bytes, *, url: str, user: str, password: str) -> bytes:
    """``product``'s config file pointed at another database; nothing else in it changes.

    Raises :class:`HomeFileError` when the file lacks the connection (see ``db_config_read``:
    call it first to tell "never set up" from a damaged file)."""
    values = {"url": url, "user": user, "password": password}
    style = _style(product)
    if style == "properties":
        return _properties_set(data, {_BITBUCKET_KEYS[k]: v for k, v in values.items()})
    elements = _xml_elements(data)
    found = _dbconfig_find(elements) if style == "dbconfig" else _cfg_find(elements)
    if any(element is None for element in found.values()):
        db_config_read(product, data)  # raises, naming what is missing
        raise HomeFileError("it names no database connection yet")
    return _splice(
        data,
        [_replace_text(data, e, values[k]) for k, e in found.items() if e is not None],
    )


# --- Confluence's licence ---------------------------------------------------------------------


def confluence_license_get(data: bytes) -> str | None:
    """The licence key ``confluence.cfg.xml`` holds (``None`` when it holds none)."""
    _holder, children = _properties_of(_xml_elements(data))
    element = _property(children, CONFLUENCE_LICENSE_PROPERTY)
    return element.value.strip() if element is not None else None


def confluence_license_set(data: bytes, key: str) -> bytes:
    """``confluence.cfg.xml`` with ``key`` as its licence: the property's text is replaced,
    or a property is added after the last one (with its indentation)."""
    elements = _xml_elements(data)
    holder, children = _properties_of(elements)
    if holder is None or holder.empty:
        raise HomeFileError("it has no <properties>")
    element = _property(children, CONFLUENCE_LICENSE_PROPERTY)
    if element is not None:
        return _splice(data, [_replace_text(data, element, key)])
    new = (
        f'<property name="{CONFLUENCE_LICENSE_PROPERTY}">'.encode()
        + _xml_text(key)
        + b"</property>"
    )
    if children:
        last = children[-1]
        indent = _indent_before(data, last.start)
        return _splice(data, [(last.end, last.end, b"\n" + indent + new)])
    indent = _indent_before(data, holder.start) + b"  "
    return _splice(data, [(holder.content_start, holder.content_start, b"\n" + indent + new)])


def _indent_before(data: bytes, at: int) -> bytes:
    line_start = data.rfind(b"\n", 0, at) + 1
    prefix = data[line_start:at]
    return prefix if not prefix.strip() else b""


# --- on the host ------------------------------------------------------------------------------


def home_path(instance: AtlassianInstance, relpath: str) -> str:
    """Where ``relpath`` of the instance's home is on its host."""
    if relpath.startswith("/") or ".." in relpath.split("/"):
        raise ValueError(f"not a path inside home: {relpath!r}")
    return posixpath.join(instance_dir(instance), "home", relpath)


def _links_refuse(conn: HostConnection, instance: AtlassianInstance, relpath: str) -> None:
    """Refuse a home file reached through a symbolic link. The home is written by the tenant's
    own app (and a restore copies its links back out of a point), while the panel reads and
    writes it as root: a planted ``confluence.cfg.xml -> <another home>/...`` or ``shared ->
    <another home>/shared`` would make the panel read or overwrite another tenant's files."""
    sftp = conn.sftp()
    path = posixpath.join(instance_dir(instance), "home")
    for part in relpath.split("/"):
        path = posixpath.join(path, part)
        try:
            mode = sftp.lstat(path).st_mode or 0
        except FileNotFoundError:
            return  # nothing further down exists either; the caller treats it as missing
        if stat.S_ISLNK(mode):
            raise OperationFailed(
                f"{relpath} in the home of {instance.name} is reached through a symbolic link "
                f"({path}); the panel does not follow links in a home. Replace the link with "
                "the file itself."
            )


def home_file_edit(
    conn: HostConnection,
    instance: AtlassianInstance,
    relpath: str,
    fn: Callable[[bytes], bytes],
    *,
    message: str = "",
) -> bool | None:
    """Read ``relpath`` of the instance's home, write back ``fn(content)`` with the file's
    mode and owner kept (an atomic upload). Returns ``None`` when the file does not exist,
    else whether it changed. The content never reaches the operation log."""
    path = home_path(instance, relpath)
    _links_refuse(conn, instance, relpath)
    data = conn.read(path, missing_ok=True)
    if data is None:
        return None
    new = fn(data)
    if new == data:
        return False
    st = conn.sftp().stat(path)
    conn.upload(
        path,
        new,
        mode=stat.S_IMODE(st.st_mode or 0o600),
        owner=(int(st.st_uid or 0), int(st.st_gid or 0)),
        message=message or f"Wrote {relpath} in the home of {instance.name}",
    )
    return True


def home_file_read(conn: HostConnection, instance: AtlassianInstance, relpath: str) -> bytes | None:
    """The content of ``relpath`` of the instance's home (``None`` when it does not exist)."""
    path = home_path(instance, relpath)
    _links_refuse(conn, instance, relpath)
    return conn.read(path, missing_ok=True)


def home_db_config_point(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance
) -> DbConnection | None:
    """Point the database config file in ``instance``'s home (a copied home, before its first
    start) at the instance's own database, user and password. Returns what the file named
    before (``None`` if it named nothing). A missing file means the source was never set up
    (a step says so); a file that is not the product's shape fails the operation, naming it."""
    relpath = spec_for(instance.product).db_config_file
    if not relpath:
        return None
    ctx.add_secrets([instance.db_password])
    url = instance_jdbc_url(instance)
    before: list[DbConnection | None] = []

    def point(data: bytes) -> bytes:
        current = db_config_read(instance.product, data)
        before.append(current)
        if current is None:
            return data
        return db_config_rewrite(
            instance.product, data, url=url, user=instance.db_user, password=instance.db_password
        )

    try:
        changed = home_file_edit(
            conn,
            instance,
            relpath,
            point,
        )
    except HomeFileError as exc:
        raise OperationFailed(
            f"{relpath} in the copied home of {instance.name} is not what "
            f"{spec_for(instance.product).product} writes: {exc}. Check the source's home."
        ) from None
    if changed is None:
        ctx.step(
            f"{relpath} is not in the copied home: the source was never set up, so "
            f"{instance.name} starts in its setup (nothing to point at database "
            f"{instance.db_name})",
            level="warning",
        )
        return None
    previous = before[0] if before else None
    if previous is None:
        ctx.step(
            f"{relpath} names no database yet (the source's setup never finished); nothing "
            "to point",
            level="warning",
        )
        return None
    if not changed:
        ctx.step(f"{relpath} already names database {instance.db_name} as user {instance.db_user}")
    else:
        ctx.step(
            f"{relpath} named database {previous.database or previous.url} as user "
            f"{previous.user}; it now names {instance.db_name} as user {instance.db_user}"
        )
    return previous
