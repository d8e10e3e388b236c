"""The lab's mail sink: the stand-in image run with ``STANDIN_ROLE=mail-sink``.

It plays the SMTP and POP servers a product's mail settings name, so a test sees what a
product (or a copy of it that should be mute) sent and fetched:

* SMTP on port 25 (``STANDIN_SINK_SMTP_PORT``): enough of RFC 5321 for ``smtplib`` and the
  products (HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT); every message is kept in memory.
  (Python 3.11's ``smtpd`` is deprecated and gone in 3.12, so this is a small socketserver.)
* POP3 on port 110 (``STANDIN_SINK_POP_PORT``): a greeting, an empty mailbox (USER, PASS,
  STAT, LIST, UIDL, NOOP, QUIT), each connection counted.
* HTTP on port 8025 (``STANDIN_SINK_HTTP_PORT``): ``GET /messages`` ->
  ``{"messages": [{id, peer, helo, mail_from, rcpt_to, subject, headers, body, received_at}],
  "pop": {"connections": n, "peers": [...]}}``; ``DELETE /messages`` empties both.

It binds its ports as root, then runs as ``nobody``. Standard library only.
"""

from __future__ import annotations

import datetime as _dt
import email
import email.policy
import json
import os
import signal
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_MESSAGE = 1024 * 1024


def log(msg: str) -> None:
    ts = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sys.stdout.write(f"{ts} mail-sink: {msg}\n")
    sys.stdout.flush()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


class Store:
    """What the sink received, shared by its three servers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict] = []
        self.pop_peers: list[dict] = []
        self.next_id = 1

    def add_message(self, peer: str, helo: str, mail_from: str, rcpt_to: list[str], data: bytes) -> int:
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",)) if parsed.is_multipart() else parsed
        try:
            text = body.get_content() if body is not None else ""
        except (LookupError, ValueError):
            text = data.decode("utf-8", "replace")
        with self.lock:
            mid = self.next_id
            self.next_id += 1
            self.messages.append({
                "id": mid,
                "peer": peer,
                "helo": helo,
                "mail_from": mail_from,
                "rcpt_to": list(rcpt_to),
                "subject": str(parsed.get("Subject", "")),
                "headers": {k: str(v) for k, v in parsed.items()},
                "body": text,
                "received_at": _now(),
            })
        return mid

    def add_pop(self, peer: str) -> None:
        with self.lock:
            self.pop_peers.append({"peer": peer, "at": _now()})

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "messages": list(self.messages),
                "pop": {"connections": len(self.pop_peers), "peers": list(self.pop_peers)},
            }

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.pop_peers.clear()


STORE = Store()


def _address(arg: str, verb: str) -> str | None:
    """``FROM:<a@b> SIZE=1`` -> ``a@b`` (``<>`` is the null sender)."""
    head, sep, rest = arg.partition(":")
    if not sep or head.strip().upper() != verb:
        return None
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        return rest[1:end] if end > 0 else None
    return rest.split()[0] if rest else None


class SMTPHandler(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        peer = self.client_address[0]
        helo, mail_from, rcpt_to = "", None, []
        self.reply("220 mail.lab.invalid ESMTP standin mail sink")
        try:
            while True:
                raw = self.rfile.readline(4096)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb in ("HELO", "EHLO"):
                    helo, mail_from, rcpt_to = arg.strip(), None, []
                    if verb == "EHLO":
                        self.wfile.write(b"250-mail.lab.invalid\r\n250-8BITMIME\r\n")
                        self.reply(f"250 SIZE {MAX_MESSAGE}")
                    else:
                        self.reply("250 mail.lab.invalid")
                elif verb == "MAIL":
                    mail_from = _address(arg, "FROM")
                    rcpt_to = []
                    self.reply("250 OK" if mail_from is not None else "501 Syntax: MAIL FROM:<address>")
                elif verb == "RCPT":
                    if mail_from is None:
                        self.reply("503 Need MAIL first")
                        continue
                    to = _address(arg, "TO")
                    if not to:
                        self.reply("501 Syntax: RCPT TO:<address>")
                        continue
                    rcpt_to.append(to)
                    self.reply("250 OK")
                elif verb == "DATA":
                    if mail_from is None or not rcpt_to:
                        self.reply("503 Need MAIL and RCPT first")
                        continue
                    self.reply("354 End data with <CR><LF>.<CR><LF>")
                    data = self._data()
                    if data is None:
                        return
                    if len(data) > MAX_MESSAGE:
                        self.reply("552 Message too large")
                    else:
                        mid = STORE.add_message(peer, helo, mail_from, rcpt_to, data)
                        log(f"message {mid} from {peer} <{mail_from}> to {rcpt_to}")
                        self.reply(f"250 OK queued as {mid}")
                    mail_from, rcpt_to = None, []
                elif verb == "RSET":
                    mail_from, rcpt_to = None, []
                    self.reply("250 OK")
                elif verb == "NOOP":
                    self.reply("250 OK")
                elif verb == "QUIT":
                    self.reply("221 Bye")
                    return
                else:
                    self.reply("502 Command not implemented")
        except OSError:
            return

    def _data(self) -> bytes | None:
        lines: list[bytes] = []
        size = 0
        while True:
            raw = self.rfile.readline(MAX_MESSAGE + 3)
            if not raw:
                return None
            if raw in (b".\r\n", b".\n"):
                return b"".join(lines)
            if raw.startswith(b".."):
                raw = raw[1:]  # dot-stuffing (RFC 5321 4.5.2)
            size += len(raw)
            if size <= MAX_MESSAGE + 1:
                lines.append(raw)


class POPHandler(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        peer = self.client_address[0]
        STORE.add_pop(peer)
        log(f"POP connection from {peer}")
        self.reply("+OK standin mail sink POP3 ready")
        try:
            while True:
                raw = self.rfile.readline(4096)
                if not raw:
                    return
                verb = raw.decode("utf-8", "replace").strip().split(" ")[0].upper()
                if verb in ("USER", "PASS", "NOOP", "RSET"):
                    self.reply("+OK")
                elif verb == "STAT":
                    self.reply("+OK 0 0")
                elif verb in ("LIST", "UIDL"):
                    self.reply("+OK 0 messages")
                    self.reply(".")
                elif verb == "CAPA":
                    self.reply("+OK")
                    self.reply("USER")
                    self.reply("UIDL")
                    self.reply(".")
                elif verb == "QUIT":
                    self.reply("+OK bye")
                    return
                else:
                    self.reply("-ERR unknown command")
        except OSError:
            return


class HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:  # quiet
        pass

    def _send(self, code: int, obj) -> None:
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/messages":
            return self._send(200, STORE.snapshot())
        if path == "/status":
            return self._send(200, {"state": "RUNNING", "role": "mail-sink"})
        return self._send(404, {"error": "not found", "path": path})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path.rstrip("/") == "/messages":
            STORE.clear()
            return self._send(200, STORE.snapshot())
        return self._send(404, {"error": "not found"})


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _drop_to_nobody() -> None:
    if os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def main() -> int:
    smtp_port = int(os.environ.get("STANDIN_SINK_SMTP_PORT", "25"))
    pop_port = int(os.environ.get("STANDIN_SINK_POP_PORT", "110"))
    http_port = int(os.environ.get("STANDIN_SINK_HTTP_PORT", "8025"))
    servers = [
        TCPServer(("0.0.0.0", smtp_port), SMTPHandler),
        TCPServer(("0.0.0.0", pop_port), POPHandler),
        HTTPServer(("0.0.0.0", http_port), HTTPHandler),
    ]
    _drop_to_nobody()
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log(f"signal {signum}: shutting down")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    log(f"listening: SMTP {smtp_port}, POP {pop_port}, HTTP {http_port} (uid {os.getuid()})")
    while not stop.is_set():
        stop.wait(1.0)
    for s in servers:
        s.shutdown()
        s.server_close()
    log("stopped")
    return 0
