"""Answering a registry's ``WWW-Authenticate`` challenge: Basic, or Bearer tokens per scope.

The distribution token flow (docs/spec/auth/token.md): the registry answers 401 with
``Bearer realm="https://auth/token",service="registry",scope="repository:app:pull,push"``;
the client asks the realm for a token for that service and scope (with Basic credentials,
or anonymously), and repeats the request with ``Authorization: Bearer <token>``.

Tokens are cached per scope set and reused until shortly before they expire. The scopes asked
for are the union of what the caller needs and what the challenge names, so a push that
first pulled asks again with ``pull,push`` rather than replaying a pull-only token (oras-py
0.2's TokenAuth keeps a single token and replays it after a 401, which breaks exactly there).
An identity token (OAuth2 refresh token) is exchanged with a POST, as Docker does.

Nothing here logs or reports a credential or a token.
"""

from __future__ import annotations

import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import requests
from oras.auth.utils import parse_auth_header

from ocibuild.errors import AuthError
from ocibuild.registry.auth import Credentials

EXPIRY_MARGIN = 10  # seconds: a token this close to expiry is fetched anew
DEFAULT_EXPIRY = 60  # the spec's default when the server gives no expires_in
CLIENT_ID = "ocibuild"


def challenge_scheme(header: str) -> str:
    """``bearer``, ``basic`` or ``""`` from a WWW-Authenticate header."""
    return header.strip().split(" ", 1)[0].lower() if header else ""


class Authorizer:
    """The Authorization header for requests to one registry host; safe to share between threads.

    ``credentials`` is called at most once, when a challenge first needs them.
    ``fetch`` is the session's ``request`` (the token server may be on another host).
    ``check_realm`` refuses a realm the TLS rules forbid (plain HTTP to a non-loopback host).
    """

    def __init__(self, host: str, credentials: Callable[[], Credentials | None],
                 fetch: Callable[..., requests.Response], check_realm: Callable[[str], None]):
        self.host = host
        self._credentials_source = credentials
        self._credentials: Credentials | None = None
        self._looked_up = False
        self._fetch = fetch
        self._check_realm = check_realm
        self._lock = threading.Lock()
        self._basic = False
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"Authorizer({self.host!r})"

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._looked_up:
                self._credentials, self._looked_up = self._credentials_source(), True
            return self._credentials

    def header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        """What to send up front: a cached token covering ``scopes``, Basic once asked for, or nothing."""
        if self._basic:
            creds = self.credentials()
            return {"Authorization": f"Basic {creds.basic()}"} if creds else {}
        now = time.monotonic()
        want = set(scopes)
        with self._lock:
            for key, (token, expires) in self._tokens.items():
                if want <= key and expires > now:
                    return {"Authorization": f"Bearer {token}"}
        return {}

    def answer(self, response: requests.Response, scopes: tuple[str, ...], what: str) -> None:
        """Prepare to answer the challenge in ``response`` (a 401); AuthError when it cannot be answered."""
        header = response.headers.get("WWW-Authenticate", "")
        scheme = challenge_scheme(header)
        if scheme == "basic":
            if self.credentials() is None or not self.credentials().username:
                raise AuthError(f"{what}: {self.host} requires a login (no credentials for it)", status=401)
            self._basic = True
            return
        if scheme != "bearer":
            raise AuthError(f"{what}: {self.host} answered 401 without a usable challenge", status=401)
        challenge = parse_auth_header(header)
        if not challenge.realm:
            raise AuthError(f"{what}: {self.host}'s Bearer challenge names no realm", status=401)
        wanted = frozenset(s for s in (*scopes, *(challenge.scope or "").split(" ")) if s)
        token, expires_in = self._request_token(challenge.realm, challenge.service, wanted, what)
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if k != wanted}
            self._tokens[wanted] = (token, time.monotonic() + max(0, expires_in - EXPIRY_MARGIN))

    def _request_token(self, realm: str, service: str | None, scopes: frozenset[str],
                       what: str) -> tuple[str, int]:
        self._check_realm(realm)
        creds = self.credentials()
        where = urlsplit(realm).netloc
        params = [("service", service)] if service else []
        params += [("scope", s) for s in sorted(scopes)]
        try:
            if creds is not None and creds.identity_token:
                form = dict(params, grant_type="refresh_token", refresh_token=creds.identity_token,
                            client_id=CLIENT_ID)
                form["scope"] = " ".join(sorted(scopes))
                response = self._fetch("POST", realm, data=form)
            else:
                headers = {"Authorization": f"Basic {creds.basic()}"} if creds and creds.username else {}
                response = self._fetch("GET", realm, params=params, headers=headers)
        except requests.RequestException as e:
            raise AuthError(f"{what}: get a token from {where}: {type(e).__name__}") from None
        if response.status_code in (401, 403):
            who = "the stored credentials" if creds else "anonymous access (no credentials stored)"
            raise AuthError(f"{what}: token server {where} refused {who} (status {response.status_code})",
                            status=response.status_code)
        if response.status_code != 200:
            raise AuthError(f"{what}: token server {where} answered {response.status_code}",
                            status=response.status_code)
        return _token_from(response, where, what)


def _token_from(response: requests.Response, where: str, what: str) -> tuple[str, int]:
    try:
        data = response.json()
        token = data.get("token") or data.get("access_token")
        expires_in = int(data.get("expires_in") or DEFAULT_EXPIRY)
    except (ValueError, AttributeError, TypeError):
        raise AuthError(f"{what}: token server {where} sent an unreadable answer") from None
    if not token or not isinstance(token, str):
        raise AuthError(f"{what}: token server {where} sent no token")
    return token, expires_in
