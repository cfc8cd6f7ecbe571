"""A loopback HTTP proxy in front of an S3 server that injects faults into chosen requests.

Headers (Host included) and bodies pass through unchanged, so SigV4 signatures made for the
proxy's address still verify at the server. A rule matches on method and a query or path
substring and answers with 503 SlowDown, 500 InternalError or a TCP reset, `times` times."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_ERRORS = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass
class Rule:
    method: str
    match: str  # substring of the path + query, e.g. "partNumber=2" or "uploads"
    action: str  # "503" | "500" | "reset"
    times: int = 1  # -1: always
    hits: int = 0

    def applies(self, method: str, target: str) -> bool:
        return self.method == method and self.match in target and (self.times < 0 or self.hits < self.times)


@dataclass
class FaultProxy:
    backend: str
    rules: list[Rule] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, target, status

    def __post_init__(self) -> None:
        target = urlparse(self.backend)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    rule = next((r for r in proxy.rules if r.applies(self.command, self.path)), None)
                    if rule:
                        rule.hits += 1
                if rule and rule.action == "reset":
                    proxy.requests.append((self.command, self.path, 0))
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if rule:
                    status, code, message = _ERRORS[rule.action]
                    payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                               f"<Message>{message}</Message></Error>").encode()
                    proxy.requests.append((self.command, self.path, status))
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items()}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                proxy.requests.append((self.command, self.path, response.status))
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, method: str, match: str, action: str, times: int = 1) -> Rule:
        rule = Rule(method, match, action, times)
        self.rules.append(rule)
        return rule

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
