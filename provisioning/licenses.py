"""Read-only decoding of Atlassian license keys (never generates or alters a license).

Format: the key without whitespace ends with ``X`` + a 2-digit version + the data length in
base 31. The data before that ``X`` is base64: a 4-byte big-endian length, then that many bytes
of licence text (a 5-byte marker followed by zlib data that inflates to Java properties), then
the signature, which we do not check.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.core.exceptions import ValidationError

from panel.plain_text import has_control_characters

LICENSE_MARKER_LEN = 5
# A key is at most this long (without whitespace) in the form and the API.
MAX_KEY_CHARS = 20000
# A real licence text inflates to one or two KiB; anything past this is not a license (and a
# "zip bomb" of a few KiB could otherwise inflate to megabytes in the web process).
MAX_LICENSE_TEXT_BYTES = 64 * 1024
# Printable ASCII, without what an .env line or a shell would read specially ($, quotes, \\).
KEY_RE = re.compile(r"[\x21-\x7e]+")
KEY_REFUSED = frozenset("$\"'\\`")
DATE_PROPERTIES = ("LicenseExpiryDate", "MaintenanceExpiryDate")
FACT_PROPERTIES = ("SEN", "Organisation", "LicenseTypeName", "LicenseType")


class LicenseTextTooLarge(ValueError):
    """The key's licence text inflates past :data:`MAX_LICENSE_TEXT_BYTES`."""


@dataclass(frozen=True)
class DecodedLicense:
    """The facts a person cares about, read from a license key."""

    properties: dict[str, str]
    sen: str
    organisation: str
    license_type: str
    user_tier: str
    expiry_date: date | None
    maintenance_expiry_date: date | None
    evaluation: bool

    def as_fields(self) -> dict[str, object]:
        return {
            "sen": self.sen,
            "organisation": self.organisation,
            "license_type": self.license_type,
            "user_tier": self.user_tier,
            "expiry_date": self.expiry_date,
            "maintenance_expiry_date": self.maintenance_expiry_date,
            "evaluation": self.evaluation,
        }


def parse_java_properties(text: str) -> dict[str, str]:
    """Parse the subset of Java ``.properties`` syntax that license texts use."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"((?:\\.|[^=:\s])+)\s*[=:\s]\s*(.*)$", line)
        if not match:
            continue
        key = re.sub(r"\\(.)", r"\1", match.group(1))
        value = re.sub(r"\\(.)", r"\1", match.group(2))
        props[key] = value
    return props


def _parse_date_strict(value: str | None) -> date | None:
    """A license date (milliseconds since the epoch, or a few text formats); None for
    "unlimited"; ValueError for anything else."""
    if not value or value.strip().lower() in {"unlimited", "none", "-1"}:
        return None
    value = value.strip()
    if value.isdigit():  # milliseconds since the epoch
        if len(value) > 15:  # past the year 33658: no int-to-float overflow below
            raise ValueError(f"{value[:20]}… is not a date")
        try:
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC).date()
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{value} is not a date") from None
    for fmt in ("%Y-%m-%d", "%d/%b/%y", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value[:19], fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{value[:40]} is not a date the panel reads")


def _parse_date(value: str | None) -> date | None:
    """Lenient: an unreadable date is unknown (None); :func:`license_key_check` refuses it."""
    try:
        return _parse_date_strict(value)
    except ValueError:
        return None


def _user_tier(props: dict[str, str]) -> str:
    for key in (
        "NumberOfUsers",
        "jira.NumberOfUsers",
        "conf.NumberOfUsers",
        "stash.NumberOfUsers",
        "bamboo.NumberOfUsers",
        "crowd.NumberOfUsers",
    ):
        if key in props:
            users = props[key]
            return "Unlimited" if users.strip() == "-1" else f"{users} users"
    for key, value in props.items():
        if key.endswith(".NumberOfUsers"):
            return "Unlimited" if value.strip() == "-1" else f"{value} users"
    return ""


def _inflate(data: bytes) -> bytes:
    """zlib-inflate ``data``, never to more than :data:`MAX_LICENSE_TEXT_BYTES`."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, MAX_LICENSE_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise LicenseTextTooLarge(
            f"The license text inflates to more than {MAX_LICENSE_TEXT_BYTES // 1024} KiB."
        )
    return text


def _license_properties(key: str) -> dict[str, str] | None:
    """The properties of ``key`` (whitespace already removed); None when it is not in the
    format described above. Raises :class:`LicenseTextTooLarge`."""
    x = key.rfind("X")
    if x <= 0 or len(key) < x + 4:
        return None
    suffix = key[x + 1 :]
    if not suffix[:2].isdigit():
        return None
    try:
        length = int(suffix[2:], 31)
        data = base64.b64decode(key[:x][:length] if length <= x else key[:x], validate=True)
        (text_len,) = struct.unpack(">I", data[:4])
        text = data[4 : 4 + text_len]
        if len(text) != text_len or text_len <= LICENSE_MARKER_LEN:
            return None
        properties = parse_java_properties(
            _inflate(text[LICENSE_MARKER_LEN:]).decode("utf-8", "replace")
        )
    except LicenseTextTooLarge:
        raise
    except (ValueError, binascii.Error, struct.error, zlib.error):
        return None
    return properties or None


def license_key_check(key: str) -> str:
    """The key as stored (whitespace removed), or a ValidationError saying what is wrong:
    characters outside base64, an oversized or bomb-like licence text, or decoded facts the
    panel would not put into a file (control characters, unreadable dates)."""
    key = "".join(key.split())
    if not key:
        raise ValidationError("Paste the license key.", code="required")
    if len(key) > MAX_KEY_CHARS:
        raise ValidationError(
            f"A license key has at most {MAX_KEY_CHARS} characters.", code="max_length"
        )
    if not KEY_RE.fullmatch(key) or KEY_REFUSED.intersection(key):
        raise ValidationError(
            "A license key holds only printable ASCII characters, without $, quotes or "
            "backslashes (line breaks and spaces are ignored).",
            code="invalid",
        )
    try:
        properties = _license_properties(key)
    except LicenseTextTooLarge as exc:
        raise ValidationError(f"This is not a license key: {exc}", code="too_large") from None
    if properties is None:
        return key  # not decodable: the facts are typed by hand
    bad = [
        name
        for name in (*FACT_PROPERTIES, "NumberOfUsers")
        for prop, value in properties.items()
        if (prop == name or prop.endswith(f".{name}")) and has_control_characters(value)
    ]
    if bad:
        raise ValidationError(
            f"The key's {bad[0]} holds control characters; the panel does not store it.",
            code="control_characters",
        )
    for name in DATE_PROPERTIES:
        try:
            _parse_date_strict(properties.get(name))
        except ValueError as exc:
            raise ValidationError(
                f"The key's {name} is unreadable ({exc}); ask Atlassian for a new key.",
                code="invalid_date",
            ) from None
    return key


def license_decode(key: str) -> DecodedLicense | None:
    """Decode ``key``; return None when it is not in the format described above (or its
    licence text inflates past the bound). Never raises."""
    try:
        properties = _license_properties("".join(key.split()))
    except LicenseTextTooLarge:
        return None
    if not properties:
        return None
    return DecodedLicense(
        properties=properties,
        sen=properties.get("SEN", ""),
        organisation=properties.get("Organisation", ""),
        license_type=properties.get("LicenseTypeName") or properties.get("LicenseType", ""),
        user_tier=_user_tier(properties),
        expiry_date=_parse_date(properties.get("LicenseExpiryDate")),
        maintenance_expiry_date=_parse_date(properties.get("MaintenanceExpiryDate")),
        evaluation=properties.get("Evaluation", "false").lower() == "true",
    )


def license_encode_for_tests(properties: dict[str, str], version: str = "02") -> str:
    """Build a key in the same structure (test data only: the signature is random bytes)."""
    import os

    body = "\n".join(f"{k}={v}" for k, v in properties.items()).encode()
    text = b"\x0d\x0e\x0c\x0a\x0f" + zlib.compress(body)
    data = struct.pack(">I", len(text)) + text + os.urandom(46)
    encoded = base64.b64encode(data).decode()
    length = len(encoded)
    digits = "0123456789abcdefghijklmnopqrstu"
    out = ""
    while length:
        length, rem = divmod(length, 31)
        out = digits[rem] + out
    return f"{encoded}X{version}{out}"
