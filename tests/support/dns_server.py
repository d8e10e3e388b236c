"""A small authoritative DNS server over TCP that checks TSIG, for tests that need no lab.

It serves the SOA of its zones and answers everything else REFUSED (as an authoritative-only
BIND does). A query signed with a key it does not know, or with a wrong secret, gets what BIND
answers: NOTAUTH with the TSIG error BADKEY or BADSIG, so the client sees the server refuse
the key. It never takes updates: the tests that change records use the lab's BIND.
"""

from __future__ import annotations

import socketserver
import struct
import threading
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring

KEY_NAME = "panel-test-key."
SECRET = "cGFuZWwtdGVzdC10c2lnLXNlY3JldC0wMTIzNDU2Nzg5"  # base64
OTHER_SECRET = "b3RoZXItc2VjcmV0LW5vdC10aGUtc2VydmVycy0wMTIz"  # base64, a wrong one


class _Handler(socketserver.BaseRequestHandler):
    server: TsigDnsServer._Server  # type: ignore[name-defined]

    def handle(self) -> None:
        while True:
            head = self._read(2)
            if not head:
                return
            wire = self._read(struct.unpack("!H", head)[0])
            answer = self.server.owner.answer(wire)
            self.request.sendall(struct.pack("!H", len(answer)) + answer)

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                return b""
            data += chunk
        return data


class TsigDnsServer:
    """``with TsigDnsServer(zones=["example.test"]) as server:`` listens on 127.0.0.1 at
    ``server.port``; ``server.queries`` counts what it was asked."""

    class _Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        owner: TsigDnsServer

    def __init__(self, zones: list[str], key_name: str = KEY_NAME, secret: str = SECRET) -> None:
        self.zones = {dns.name.from_text(z) for z in zones}
        self.key_name = dns.name.from_text(key_name)
        self.keyring = dns.tsigkeyring.from_text({key_name: secret})
        self.queries = 0
        self._server = self._Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TsigDnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, wire: bytes) -> bytes:
        self.queries += 1
        try:
            query = dns.message.from_wire(wire, keyring=self.keyring)
        except dns.message.UnknownTSIGKey:
            return self._refuse_key(wire, dns.rcode.BADKEY)
        except dns.tsig.BadSignature:
            return self._refuse_key(wire, dns.rcode.BADSIG)
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.name in self.zones and question.rdtype == dns.rdatatype.SOA:
            response.answer.append(
                dns.rrset.from_text(
                    question.name, 300, "IN", "SOA", "ns1.test. admin.test. 1 3600 600 86400 300"
                )
            )
            response.flags |= dns.flags.AA
        else:
            response.set_rcode(dns.rcode.REFUSED)
        return response.to_wire()

    def _refuse_key(self, wire: bytes, error: int) -> bytes:
        query = dns.message.from_wire(wire, keyring=False)
        # Signed with the server's own key and the error, as BIND does; the client checks
        # the error before the signature.
        query.keyring = dns.tsig.Key(
            query.keyname or self.key_name,
            self.keyring[self.key_name],
            query.keyalgorithm or dns.tsig.HMAC_SHA256,
        )
        response = dns.message.make_response(query, tsig_error=error)
        response.set_rcode(dns.rcode.NOTAUTH)
        return response.to_wire()
