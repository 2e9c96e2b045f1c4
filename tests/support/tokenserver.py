"""A small bearer token server for the distribution token flow (docs/spec/auth/token.md).

``GET /token?service=...&scope=repository:app:pull,push`` with optional Basic credentials
answers ``{"token": <JWT>, "access_token": <JWT>, "expires_in": 300}``. The JWT is ES256-signed
with a self-signed certificate carried in the ``x5c`` header; the registry trusts it through
``auth.token.rootcertbundle``. Scopes are honoured per user (``grants``): the token lists
only the actions that user may take. Wrong credentials answer 401. Every request is recorded
(user, scopes) for the tests; credentials are not.

Only on 127.0.0.1, threaded, stopped by ``stop()``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from support.registry_certs import KeyPair, make_ca

ISSUER = "ocibuild-test-issuer"
SERVICE = "ocibuild-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """``users``: name -> password; ``grants``: name -> allowed actions (None: anonymous)."""

    def __init__(self, folder: Path, users: dict[str, str], grants: dict[str | None, set[str]]):
        self.signer: KeyPair = make_ca(folder / "token-signer", "ocibuild test token signer")
        self.users, self.grants = users, grants
        self.log: list[tuple[str | None, list[str]]] = []
        self.issued: list[str] = []  # every token handed out (for leak checks)
        self.lock = threading.Lock()
        server = self
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"server_state": server}))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/token"

    @property
    def root_bundle(self) -> Path:
        return self.signer.cert_path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def access(self, user: str | None, scopes: list[str]) -> list[dict]:
        allowed = self.grants.get(user, set())
        out = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a in allowed]
            if kind == "repository" and granted:
                out.append({"type": kind, "name": name, "actions": granted})
        return out

    def token(self, user: str | None, access: list[dict]) -> str:
        der = self.signer.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.signer.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class _Handler(BaseHTTPRequestHandler):
    server_state: TokenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: pytest shows stderr of failures
        pass

    def do_GET(self) -> None:
        state = self.server_state
        query = parse_qs(urlsplit(self.path).query)
        user = self._user()
        if user is False:
            return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        with state.lock:
            state.log.append((user, scopes))
        token = state.token(user, state.access(user, scopes))
        with state.lock:
            state.issued.append(token)
        self._send(200, {"token": token, "access_token": token, "expires_in": 300})

    def _user(self):
        """The authenticated user, None for anonymous, False for wrong credentials."""
        header = self.headers.get("Authorization", "")
        if not header:
            return None
        try:
            user, _, password = base64.b64decode(header.split(" ", 1)[1]).decode().partition(":")
        except (ValueError, IndexError):
            return False
        return user if self.server_state.users.get(user) == password else False

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
