"""What a customer sees of the platform's hosts in operation text: host internals masked.

Operation steps, results and errors are written once, with full detail, for the staff who run
the platform. Customers (tenant admins and viewers) read the same records through
:class:`HostMask`, which replaces host addresses, SSH users, ports, host key fingerprints and
the names of backup hosts with neutral words. App host names stay: the instance page shows
them anyway.

The panel imports no domain app, so the caller (a selector of the provisioning app) says what
the platform's hosts are called; see ``provisioning.selectors.host_mask``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

HOST_ADDRESS = "[host address]"
BACKUP_HOST = "[backup host]"
HOST_KEY = "[host key]"

# Keys of results and parameters that only ever carry host internals; a customer's copy drops
# them (``hostname`` is the instance's public name and stays).
HOST_KEYS = frozenset(
    {
        "host",
        "host_id",
        "host_name",
        "backup_host",
        "backup_host_id",
        "backup_host_name",
        "address",
        "private_address",
        "peer_address",
        "ssh_user",
        "ssh_port",
        "fingerprint",
        "host_key",
        "host_key_fingerprint",
    }
)

_PLACEHOLDERS = (HOST_ADDRESS, BACKUP_HOST)
_PLACEHOLDER_RE = "|".join(re.escape(p) for p in _PLACEHOLDERS)
# "root@[host address]" -> "[host address]"; "[host address]:2222" -> "[host address]".
# The look-behinds make each match start where its run of characters does (where the leftmost
# match starts anyway), so a long run with no "@" or "(" is read once, not once per character.
_USER_AT = re.compile(rf"(?<![\w.+-])[\w.+-]+@(?=(?:{_PLACEHOLDER_RE}))")
_PORT = re.compile(rf"({_PLACEHOLDER_RE}):\d+")
# "app-one ([host address])" -> "app-one": the label of a connection, once its parts are masked
_BRACKETED = re.compile(rf"(?<!\s)\s*\((?:{_PLACEHOLDER_RE})\)")
_FINGERPRINT_PREFIX = "SHA256:"
_FINGERPRINT = re.compile(rf"\b{_FINGERPRINT_PREFIX}[A-Za-z0-9+/]{{43}}=?")


def _term_pattern(term: str) -> re.Pattern[str]:
    # Whole words only: "10.0.0.1" must not eat the front of "10.0.0.12", nor "bk" of "bkp".
    # The term comes first and the check of the character before it is a look-behind over the
    # term (the same test as a leading ``(?<![\w.-])``), so the regex engine can search for the
    # term as a literal instead of trying the look-behind at every position.
    escaped = re.escape(term)
    return re.compile(rf"{escaped}(?<![\w.-]{escaped})(?![\w-])")


@lru_cache(maxsize=8)
def _term_patterns(
    addresses: tuple[str, ...], backup_names: tuple[str, ...]
) -> tuple[tuple[str, re.Pattern[str], str], ...]:
    """(term, its pattern, its word) for every term, longest first. Compiling a fleet's
    hundreds of patterns takes tens of milliseconds, so the compiled set of the current hosts
    is kept (the mask is rebuilt on every request from a fresh read of the hosts)."""
    terms = [(t, HOST_ADDRESS) for t in addresses] + [(t, BACKUP_HOST) for t in backup_names]
    # Longest first, so "db.backup.internal" is masked before a shorter "backup" name.
    terms.sort(key=lambda pair: len(pair[0]), reverse=True)
    return tuple((t, _term_pattern(t), word) for t, word in terms if t and len(t) >= 2)


@dataclass(frozen=True)
class HostMask:
    """Hides the given host terms from text and JSON-like data shown to a customer."""

    addresses: tuple[str, ...] = ()
    backup_names: tuple[str, ...] = ()
    _patterns: tuple[tuple[str, re.Pattern[str], str], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        patterns = _term_patterns(tuple(self.addresses), tuple(self.backup_names))
        object.__setattr__(self, "_patterns", patterns)

    @classmethod
    def of(cls, *, addresses: Iterable[str], backup_names: Iterable[str]) -> HostMask:
        return cls(
            addresses=tuple(sorted({a for a in addresses if a})),
            backup_names=tuple(sorted({n for n in backup_names if n})),
        )

    def text(self, value: str | None) -> str:
        """``value`` with host internals replaced by neutral words."""
        if not value:
            return value or ""
        # Each step is skipped only when its pattern cannot match: every pattern needs its term
        # (or a placeholder, or the fingerprint's prefix) in the text as it is at that step. A
        # substring test is far cheaper than a regex search, and most texts hold no host term.
        for term, pattern, word in self._patterns:
            if term in value:
                value = pattern.sub(word, value)
        if _FINGERPRINT_PREFIX in value:
            value = _FINGERPRINT.sub(HOST_KEY, value)
        if HOST_ADDRESS not in value and BACKUP_HOST not in value:
            return value
        value = _USER_AT.sub("", value)
        value = _PORT.sub(r"\1", value)
        return _BRACKETED.sub("", value)

    def data(self, value: object) -> object:
        """A copy of JSON-like ``value``: host keys dropped, every string masked."""
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items() if str(k) not in HOST_KEYS}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value
