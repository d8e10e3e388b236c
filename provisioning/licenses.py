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

LICENSE_MARKER_LEN = 5


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


def _parse_date(value: str | None) -> date | None:
    if not value or value.lower() in {"unlimited", "none", "-1"}:
        return None
    value = value.strip()
    if value.isdigit():  # milliseconds since the epoch
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC).date()
    for fmt in ("%Y-%m-%d", "%d/%b/%y", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value[:19], fmt).date()
        except ValueError:
            continue
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


def license_decode(key: str) -> DecodedLicense | None:
    """Decode ``key``; return None when it is not in the format described above."""
    key = "".join(key.split())
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
            zlib.decompress(text[LICENSE_MARKER_LEN:]).decode("utf-8", "replace")
        )
    except (ValueError, binascii.Error, struct.error, zlib.error):
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
