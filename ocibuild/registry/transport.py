"""HTTP to one registry host: scheme, TLS, authentication, bounded retries, error translation.

``Transport.request`` is the one place a registry request is sent. It

- picks the scheme once per host: HTTPS; HTTP only where ``tls.TLSOptions.allows_http`` says
  so, and then only after HTTPS failed to connect or to handshake (Docker's order);
- answers 401 challenges through ``tokens.Authorizer`` and repeats the request once;
- retries connection failures and 408/429/5xx with ``retry.RetryPolicy`` (Retry-After honoured);
- translates what is left into the RegistryError tree (``what: registry answered 404: ...``).
  requests/urllib3 exceptions never escape this module.

Request bodies are bytes or a zero-argument callable returning a fresh body, so a retried
request can send its body again. Log records name the method, the path and the status only.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from ocibuild.errors import AuthError, RegistryError, RegistryNotFound, RegistryUnavailable
from ocibuild.registry import auth
from ocibuild.registry.auth import Credentials
from ocibuild.registry.retry import RETRY_STATUSES, RetryPolicy, Retryable, parse_retry_after, retrying
from ocibuild.registry.tls import ContextAdapter, TLSOptions, is_loopback, ssl_context
from ocibuild.registry.tokens import Authorizer

log = logging.getLogger("ocibuild.registry")

USER_AGENT = "ocibuild"
ERROR_BODY_LIMIT = 64 * 1024
# Raised by requests/urllib3 when a connection fails, times out or is cut mid-response.
CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                     urllib3.exceptions.HTTPError, OSError)

Body = bytes | Callable[[], Any] | None


@dataclass(frozen=True)
class TransportOptions:
    """Everything that configures a Transport besides its host (see TLSOptions, RetryPolicy).

    ``credentials``: fixed credentials; None looks them up in config.json (auth.lookup) on the
    first challenge. ``timeout``: (connect, read) seconds.
    """

    tls: TLSOptions = field(default_factory=TLSOptions)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    credentials: Credentials | None = field(default=None, repr=False)
    timeout: tuple[float, float] = (10.0, 120.0)


class Transport:
    """Requests to one registry ``host[:port]``; shareable between threads."""

    def __init__(self, host: str, options: TransportOptions | None = None):
        self.host = host
        self.options = options or TransportOptions()
        self.session = _session(host, self.options.tls)
        creds = self.options.credentials
        self.auth = Authorizer(host, (lambda: creds) if creds is not None else (lambda: auth.lookup(host)),
                               self._plain_request, self.check_url)
        self._base: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transport({self.host!r})"

    def close(self) -> None:
        self.session.close()

    @property
    def base(self) -> str:
        """``https://host`` or, where allowed and HTTPS does not answer, ``http://host``."""
        with self._lock:
            if self._base is None:
                self._base = self._choose_scheme()
            return self._base

    def _choose_scheme(self) -> str:
        https = f"https://{self.host}"
        if not self.options.tls.allows_http(self.host):
            return https
        try:
            self.session.get(f"{https}/v2/", timeout=self.options.timeout, allow_redirects=False).close()
            return https
        except requests.exceptions.SSLError as e:
            if "WRONG_VERSION_NUMBER" not in str(e) and "record layer failure" not in str(e):
                return https  # it speaks TLS but cannot be verified: say so rather than downgrade
        except CONNECTION_ERRORS:
            pass
        log.debug("%s: no HTTPS answer, using plain HTTP (loopback or marked insecure)", self.host)
        return f"http://{self.host}"

    def check_url(self, url: str) -> None:
        """Refuse plain HTTP to a host that is neither loopback nor marked insecure (a realm, a redirect)."""
        parts = urlsplit(url)
        if parts.scheme == "http" and not (self.options.tls.insecure or is_loopback(parts.netloc)):
            raise RegistryError(f"refusing plain HTTP to {parts.netloc} (only loopback or insecure registries)")

    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path) if not path.startswith(("http://", "https://")) else path

    def request(self, method: str, path: str, *, what: str, scopes: tuple[str, ...] = (),
                headers: dict[str, str] | None = None, body: Body = None, params: Any = None,
                stream: bool = False, ok: tuple[int, ...] = (200,), allow: tuple[int, ...] = (),
                retry: bool = True) -> requests.Response:
        """Send a request and return the response when its status is in ``ok`` or ``allow``.

        ``what`` starts every error message. A 404 raises RegistryNotFound, 401/403 AuthError,
        an exhausted retry RegistryUnavailable, any other status RegistryError. The caller
        closes a ``stream=True`` response. With ``retry=False`` a retryable failure is raised
        as ``retry.Retryable`` so that the caller can retry a larger unit (an upload session).
        """
        url = self.url(path)
        self.check_url(url)

        def attempt() -> requests.Response:
            response = self._authorized(method, url, what, scopes, headers or {}, body, params, stream)
            if response.status_code in ok or response.status_code in allow:
                return response
            raise _status_error(response, what)

        if not retry:
            return attempt()
        return retrying(self.options.retry, attempt)

    def _authorized(self, method: str, url: str, what: str, scopes: tuple[str, ...], headers: dict,
                    body: Body, params: Any, stream: bool) -> requests.Response:
        """One attempt, plus one repeat after answering a 401 challenge."""
        response = self._send(method, url, what, {**headers, **self.auth.header(scopes)}, body, params, stream)
        if response.status_code != 401:
            return response
        _discard(response)
        self.auth.answer(response, scopes, what)
        response = self._send(method, url, what, {**headers, **self.auth.header(scopes)}, body, params, stream)
        if response.status_code == 401:
            detail = _error_detail(response)
            raise AuthError(f"{what}: {self.host} refused the credentials or the access asked for"
                            f"{': ' + detail if detail else ''}", status=401)
        return response

    def _send(self, method: str, url: str, what: str, headers: dict, body: Body, params: Any,
              stream: bool) -> requests.Response:
        data = body() if callable(body) else body
        try:
            response = self.session.request(method, url, headers=headers, data=data, params=params,
                                            stream=stream, timeout=self.options.timeout)
        except requests.exceptions.SSLError as e:
            raise RegistryUnavailable(f"{what}: TLS with {self.host} failed: {_ssl_reason(e)}") from None
        except CONNECTION_ERRORS as e:
            raise Retryable(RegistryUnavailable(f"{what}: connection to {self.host} failed: "
                                                f"{_connection_reason(e)}")) from None
        finally:
            if hasattr(data, "close"):
                data.close()
        log.debug("%s %s -> %d", method, urlsplit(url).path, response.status_code)
        return response

    def _plain_request(self, method: str, url: str, **kw) -> requests.Response:
        """A request without our auth (the token server), with the transport's TLS and timeout."""
        return self.session.request(method, url, timeout=self.options.timeout, **kw)


def _session(host: str, tls: TLSOptions) -> requests.Session:
    if tls.insecure:
        # The user marked the host insecure; urllib3 would warn on every single request.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        log.info("%s is marked insecure: TLS certificates are not verified", host)
    session = requests.Session()
    session.trust_env = False  # no ~/.netrc credentials leaking into registry requests
    session.headers["User-Agent"] = USER_AGENT
    # Registries setting cookies treat the client as a browser (Harbor's CSRF); oras-py does the same.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.mount("https://", ContextAdapter(ssl_context(host, tls), pool_maxsize=16))
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))
    return session


def _status_error(response: requests.Response, what: str) -> Exception:
    """The error for an unexpected status; a retryable one wrapped in Retryable."""
    status = response.status_code
    detail = _error_detail(response)
    message = f"{what}: registry answered {status}" + (f": {detail}" if detail else "")
    if status in RETRY_STATUSES:
        return Retryable(RegistryUnavailable(message, status=status),
                         parse_retry_after(response.headers.get("Retry-After")))
    if status == 404:
        return RegistryNotFound(message, status=status)
    if status in (401, 403):
        return AuthError(message, status=status)
    return RegistryError(message, status=status)


def _error_detail(response: requests.Response) -> str:
    """The registry's ``errors[].code: message`` (distribution's error format), bounded, else ""."""
    try:
        if response._content_consumed:  # read already (stream=False): requests keeps it in .content
            raw = response.content[:ERROR_BODY_LIMIT]
        else:
            raw = response.raw.read(ERROR_BODY_LIMIT, decode_content=True) if response.raw is not None else b""
        errors = json.loads(raw or b"{}").get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
        return "; ".join(p for p in parts if p)[:500]
    except Exception:  # noqa: BLE001 - a detail for a message; the status alone still says enough
        return ""
    finally:
        response.close()


def _discard(response: requests.Response) -> None:
    try:
        response.close()
    except CONNECTION_ERRORS:
        pass


def _connection_reason(e: Exception) -> str:
    reason = str(e.args[0]) if e.args else type(e).__name__
    if "Read timed out" in reason:
        return "read timed out"
    for marker in ("Connection refused", "Connection reset", "Connection aborted", "IncompleteRead",
                   "Remote end closed connection", "Name or service not known", "timed out"):
        if marker in reason:
            return marker.lower()
    return type(e).__name__


def _ssl_reason(e: Exception) -> str:
    text = str(e)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "hostname mismatch",
                   "certificate has expired", "self-signed certificate", "unable to get local issuer certificate"):
        if marker in text:
            return marker.replace("_", " ").lower()
    return "handshake failed"
