"""RFC 2136 dynamic updates signed with TSIG (dnspython): BIND, Knot, PowerDNS and other
self-hosted DNS servers.

All changes for a zone go into one UPDATE message, which the server applies atomically; the
result is then read back from the same server (bounded wait) so a following ACME validation
sees it. A ``create`` carries a prerequisite (RFC 2136 section 2.4: "name is not in use", or
"RRset does not exist"), so the server refuses the whole update with YXDOMAIN/YXRRSET rather
than overwrite a record the panel did not make.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
from django.conf import settings

from certificates.dns.base import (
    ChangeResult,
    DnsConflict,
    DnsError,
    RecordChange,
    ZoneRef,
    fqdn,
)

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}


def _rdata_text(rtype: str, value: str) -> str:
    if rtype == "TXT":
        chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
        return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
    if rtype == "CNAME":
        return fqdn(value)
    return value


class Rfc2136Provider:
    """A DNS server taking TSIG-signed updates (``config``: server, port, tsig_key_name,
    tsig_algorithm; ``credentials``: tsig_secret, base64)."""

    def __init__(
        self, config: dict, credentials: dict, *, log: Any = None, timeout: float | None = None
    ) -> None:
        self.log = log
        self.server = config.get("server") or ""
        try:
            self.port = int(config.get("port") or 53)
            self.timeout = timeout or float(config.get("timeout") or 10)
        except (TypeError, ValueError) as exc:
            raise DnsError("The RFC 2136 account's port and timeout must be numbers.") from exc
        self.sync_timeout = settings.PANEL_DNS_INSYNC_TIMEOUT
        key_name = config.get("tsig_key_name") or ""
        algorithm = (config.get("tsig_algorithm") or "hmac-sha256").lower()
        if not self.server:
            raise DnsError("The RFC 2136 account has no server address.")
        if algorithm not in ALGORITHMS:
            raise DnsError(f"Unsupported TSIG algorithm {algorithm}.")
        self.keyring = None
        self.keyname = None
        self.algorithm = ALGORITHMS[algorithm]
        if key_name:
            try:
                self.keyring = dns.tsigkeyring.from_text(
                    {key_name: credentials.get("tsig_secret", "")}
                )
            except (ValueError, TypeError) as exc:
                # binascii.Error (a ValueError) for bad base64; TypeError for a secret that is
                # not a string at all (credentials are free-form JSON).
                raise DnsError(f"The TSIG secret of key {key_name} is not valid base64.") from exc
            self.keyname = dns.name.from_text(key_name)

    def _say(self, message: str, **kw: Any) -> None:
        if self.log is not None:
            self.log(message, **kw)

    def _zone(self, zone: ZoneRef) -> str:
        return fqdn(zone.provider_zone_id or zone.name)

    def _send(self, message: dns.message.Message, what: str) -> dns.message.Message:
        started = time.monotonic()
        try:
            response = dns.query.tcp(message, self.server, port=self.port, timeout=self.timeout)
        except dns.tsig.PeerError as exc:
            raise DnsError(f"{self.server} rejected the TSIG signature ({exc}).") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(
                f"The DNS server {self.server}:{self.port} did not answer the {what}: "
                f"{exc or type(exc).__name__}"
            ) from exc
        rcode = response.rcode()
        self._say(
            f"DNS {what} to {self.server}:{self.port}: {dns.rcode.to_text(rcode)}",
            command=f"rfc2136 {what} @{self.server}:{self.port}",
            exit_code=rcode,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        if rcode in (dns.rcode.YXDOMAIN, dns.rcode.YXRRSET):
            raise DnsConflict(
                f"{self.server} refused the {what}: a record the panel would create already "
                "exists (it was not made by the panel, so it is left as it is)."
            )
        if rcode != dns.rcode.NOERROR:
            hint = {
                dns.rcode.REFUSED: " (the key may not be allowed to update this zone)",
                dns.rcode.NOTAUTH: " (the server is not authoritative or the key is unknown)",
                dns.rcode.NOTZONE: " (a name is outside the zone)",
            }.get(rcode, "")
            raise DnsError(
                f"{self.server} answered {dns.rcode.to_text(rcode)} to the {what}{hint}."
            )
        return response

    def apply(self, zone: ZoneRef, changes: Sequence[RecordChange]) -> ChangeResult:
        origin = self._zone(zone)
        update = dns.update.UpdateMessage(
            origin, keyring=self.keyring, keyname=self.keyname, keyalgorithm=self.algorithm
        )
        for ch in changes:
            name = dns.name.from_text(fqdn(ch.name))
            rdatas = [_rdata_text(ch.rtype, v) for v in ch.values]
            if ch.action == "create":
                # Prerequisites are checked before any update in the message is applied.
                if ch.name_unused:
                    update.absent(name)
                else:
                    update.absent(name, ch.rtype)
                update.add(name, ch.ttl, ch.rtype, *rdatas)
            elif ch.action == "upsert":
                update.replace(name, ch.ttl, ch.rtype, *rdatas)
            elif rdatas:
                update.delete(name, ch.rtype, *rdatas)  # only these values
            else:
                update.delete(name, ch.rtype)
        result = ChangeResult(applied=list(changes), api_calls=1)
        if not changes:
            return result
        self._send(update, f"update of {len(changes)} record set(s) in {origin}")
        result.change_id = f"update-{int(time.time())}"
        # The server applies an update atomically; read it back so what follows (an ACME
        # validation through this server) sees it.
        deadline = time.monotonic() + self.sync_timeout
        for ch in changes:
            while not self._shows(zone, ch):
                if time.monotonic() > deadline:
                    raise DnsError(f"{ch.name} {ch.rtype} does not show the change on the server.")
                time.sleep(0.5)
        return result

    def _shows(self, zone: ZoneRef, ch: RecordChange) -> bool:
        have = self.lookup(zone, ch.name, ch.rtype)
        if ch.action != "delete":
            return sorted(have) == sorted(ch.values)
        if ch.values:
            return not set(have) & set(ch.values)
        return not have

    def lookup(self, zone: ZoneRef, name: str, rtype: str) -> list[str]:
        query = dns.message.make_query(fqdn(name), rtype)
        query.flags &= ~dns.flags.RD
        response = self._send_quiet(query)
        values = []
        for rrset in response.answer:
            if rrset.rdtype != dns.rdatatype.from_text(rtype):
                continue
            for rdata in rrset:
                if rtype == "TXT":
                    values.append(b"".join(rdata.strings).decode())
                else:
                    values.append(rdata.to_text().rstrip("."))
        return values

    def name_types(self, zone: ZoneRef, name: str) -> list[str]:
        # ANY over TCP to the authoritative server answers every record set at the name (the
        # RFC 8482 minimal answer some servers give is still non-empty, so still "in use").
        query = dns.message.make_query(fqdn(name), dns.rdatatype.ANY)
        query.flags &= ~dns.flags.RD
        response = self._send_quiet(query)
        owner = dns.name.from_text(fqdn(name))
        return sorted({dns.rdatatype.to_text(r.rdtype) for r in response.answer if r.name == owner})

    def _send_quiet(self, query: dns.message.Message) -> dns.message.Message:
        try:
            return dns.query.tcp(query, self.server, port=self.port, timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsError(
                f"The DNS server {self.server}:{self.port} did not answer: {exc}"
            ) from exc

    def _send_signed(self, query: dns.message.Message) -> dns.message.Message:
        """Send ``query`` signed with the account's TSIG key (if it has one): the server's
        signed answer shows that it knows the key and the secret."""
        if self.keyring is not None:
            query.use_tsig(self.keyring, keyname=self.keyname, algorithm=self.algorithm)
        try:
            return self._send_quiet(query)
        except DnsError as exc:
            if isinstance(exc.__cause__, dns.tsig.PeerError):
                raise DnsError(
                    f"{self.server}:{self.port} refused the TSIG key {self._key_label()} "
                    f"({exc.__cause__}): check the key name, algorithm and secret."
                ) from exc.__cause__
            raise

    def _key_label(self) -> str:
        return self.keyname.to_text(omit_final_dot=True) if self.keyname is not None else ""

    def account_check(self) -> str:
        # Without a zone to ask about, the root's SOA: any answer (REFUSED from an
        # authoritative-only server too) shows the server is there; a signed one, the key.
        query = dns.message.make_query(".", "SOA")
        query.flags &= ~dns.flags.RD
        self._send_signed(query)
        if self.keyname is None:
            return f"{self.server}:{self.port} answers (no TSIG key: updates go unsigned)"
        return f"{self.server}:{self.port} answers and accepts the TSIG key {self._key_label()}"

    def zone_check(self, zone: ZoneRef) -> str:
        origin = self._zone(zone)
        response = self._send_signed(dns.message.make_query(origin, "SOA"))
        if not any(r.rdtype == dns.rdatatype.SOA for r in response.answer):
            raise DnsError(f"{self.server}:{self.port} does not serve the zone {origin[:-1]}.")
        return f"{self.server}:{self.port} serves the zone {origin[:-1]}"
