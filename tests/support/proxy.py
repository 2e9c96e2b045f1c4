"""A fault-injecting HTTP proxy to put in front of a plain-HTTP registry (threaded, stdlib only).

It forwards each request unchanged (the Host header too, so the registry's Location URLs
point back at the proxy) and records ``(method, path)``. Faults, set on ``proxy.faults``:

- ``unavailable``: answer the next N requests 503 with ``Retry-After: retry_after``;
- ``fail_puts``: answer the next N PUT requests 500;
- ``cut_blobs[digest] = n``: on the next GET of that blob without Range, send the headers
  and n bytes of the body, then close the connection (once per digest);
- ``flip_blobs``: GETs of these blobs have one byte of the body flipped (every time);
- ``wrong_digest``: responses whose path contains one of these strings carry a wrong
  ``Docker-Content-Digest``;
- ``content_type[s] = t``: responses whose path contains ``s`` carry ``Content-Type: t``;
- ``bodies[s] = b``: responses whose path contains ``s`` carry the body ``b`` instead.

Listens on 127.0.0.1 only; ``stop()`` shuts it down.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length"}
WRONG_DIGEST = "sha256:" + "0" * 63 + "1"


@dataclass
class Faults:
    unavailable: int = 0
    retry_after: str = "1"
    fail_puts: int = 0
    cut_blobs: dict[str, int] = field(default_factory=dict)
    flip_blobs: set[str] = field(default_factory=set)
    wrong_digest: set[str] = field(default_factory=set)
    content_type: dict[str, str] = field(default_factory=dict)  # path substring -> Content-Type to send
    bodies: dict[str, bytes] = field(default_factory=dict)  # path substring -> body to send instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    errors: list[str]

    def handle_error(self, request, client_address) -> None:
        """Record instead of printing: clients here hang up on purpose (cut blobs, TLS probes)."""
        self.errors.append(repr(sys.exc_info()[1]))


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.faults = Faults()
        self.requests: list[tuple[str, str]] = []
        self.injected: list[str] = []
        self.ranges: list[str] = []  # Range headers received, in order
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), type("Handler", (_Handler,), {"proxy": self}))
        self.httpd.errors = self.errors = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def methods(self) -> list[str]:
        with self.lock:
            return [m for m, _ in self.requests]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.injected.clear()
            self.ranges.clear()

    def take_early_fault(self, method: str) -> tuple[int, dict] | None:
        """A status to answer instead of forwarding, when a fault says so (consumed)."""
        with self.lock:
            if self.faults.unavailable > 0:
                self.faults.unavailable -= 1
                self.injected.append(f"503 {method}")
                return 503, {"Retry-After": self.faults.retry_after}
            if method == "PUT" and self.faults.fail_puts > 0:
                self.faults.fail_puts -= 1
                self.injected.append("500 PUT")
                return 500, {}
        return None

    def take_cut(self, digest: str | None, ranged: bool) -> int | None:
        with self.lock:
            if digest is None or ranged or digest not in self.faults.cut_blobs:
                return None
            self.injected.append(f"cut {digest}")
            return self.faults.cut_blobs.pop(digest)


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

    def _forward(self) -> None:
        body = self._read_body()
        proxy = self.proxy
        with proxy.lock:
            proxy.requests.append((self.command, self.path.split("?", 1)[0]))
            if "Range" in self.headers:
                proxy.ranges.append(self.headers["Range"])
        early = proxy.take_early_fault(self.command)
        if early is not None:
            status, headers = early
            return self._answer(status, headers, json.dumps({"errors": [{"code": "UNAVAILABLE",
                                                                       "message": "injected fault"}]}).encode())
        status, headers, data = self._upstream(body)
        digest = self._blob_digest()
        if digest and self.command == "GET" and digest in proxy.faults.flip_blobs and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if any(s in self.path for s in proxy.faults.wrong_digest):
            headers = [(k, WRONG_DIGEST if k.lower() == "docker-content-digest" else v) for k, v in headers]
        for part, content_type in proxy.faults.content_type.items():
            if part in self.path:
                headers = [(k, content_type if k.lower() == "content-type" else v) for k, v in headers]
        for part, replacement in proxy.faults.bodies.items():
            if part in self.path:
                data = replacement
        cut = proxy.take_cut(digest, "Range" in self.headers) if self.command == "GET" and status == 200 else None
        if cut is not None:
            return self._cut(status, headers, data, cut)
        length = dict((k.lower(), v) for k, v in headers).get("content-length") if self.command == "HEAD" else None
        self._answer(status, dict(headers), data, length)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _upstream(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.proxy.upstream, timeout=60)
        try:
            headers: dict[str, str] = {}
            for k, v in self.headers.items():  # repeated headers (skopeo sends several Accept) are joined
                if k.lower() not in HOP_BY_HOP:
                    headers[k] = f"{headers[k]}, {v}" if k in headers else v
            if body or self.command in ("PUT", "POST", "PATCH"):
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP
                                     or (self.command == "HEAD" and k.lower() == "content-length")], data
        finally:
            conn.close()

    def _blob_digest(self) -> str | None:
        path = self.path.split("?", 1)[0]
        if "/blobs/" not in path or "/uploads" in path:
            return None
        return path.rsplit("/", 1)[1]

    def _answer(self, status: int, headers: dict, data: bytes, head_length: str | None = None) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", head_length if head_length is not None else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _cut(self, status: int, headers: list[tuple[str, str]], data: bytes, after: int) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:after])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
