"""TLS for registries: which CAs are trusted and when plain HTTP is allowed.

Trust, as Docker's daemon builds it for a registry ``host[:port]``:

- the system store (``ssl.create_default_context``, i.e. OpenSSL's default paths);
- every ``*.crt`` in ``/etc/docker/certs.d/<host[:port]>/`` (Docker loads them as CAs), and a
  client certificate pair ``*.cert`` + ``*.key`` there for mutual TLS;
- an explicit CA file the caller names (``--ca-file``).

Plain HTTP is never used for a registry unless it is on the loopback interface
(``localhost``, ``127.0.0.0/8``, ``::1``) or the user marked it insecure, as Docker's
``insecure-registries`` does. An insecure-marked registry also accepts an unverifiable
certificate; a loopback one does not (it falls back to HTTP instead, see Transport).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from requests.adapters import HTTPAdapter

from ocibuild.errors import RegistryError

CERTS_DIR = Path("/etc/docker/certs.d")


def host_name(host: str) -> str:
    """``host`` without its port (``[::1]:5000`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TLSOptions:
    """How to talk to one registry host.

    ``insecure``: the user marked it insecure (plain HTTP and unverified TLS allowed).
    ``ca_file``: an extra CA bundle to trust. ``certs_dir``: Docker's certs.d root.
    """

    insecure: bool = False
    ca_file: str | None = None
    certs_dir: Path = field(default=CERTS_DIR)

    def allows_http(self, host: str) -> bool:
        return self.insecure or is_loopback(host)


def ssl_context(host: str, options: TLSOptions) -> ssl.SSLContext:
    """The context to verify ``host`` with (see the module docstring for what is trusted)."""
    ctx = ssl.create_default_context()
    if options.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        for ca in _host_files(host, options.certs_dir, "*.crt"):
            ctx.load_verify_locations(cafile=str(ca))
        if options.ca_file:
            ctx.load_verify_locations(cafile=options.ca_file)
        for cert in _host_files(host, options.certs_dir, "*.cert"):
            key = cert.with_suffix(".key")
            if key.is_file():
                ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise RegistryError(f"configure TLS for {host}: {getattr(e, 'strerror', None) or e}") from None
    return ctx


def _host_files(host: str, certs_dir: Path, pattern: str) -> list[Path]:
    folder = certs_dir / host  # Docker names the folder host[:port], as written in the reference
    try:
        return sorted(folder.glob(pattern)) if folder.is_dir() else []
    except OSError:
        return []


class ContextAdapter(HTTPAdapter):
    """A requests adapter that verifies with our SSLContext instead of requests' certifi bundle.

    requests only takes a CA *path* (``verify=``), which replaces the system store rather than
    adding to it; the context lets us trust the system store plus certs.d plus a CA file.
    """

    def __init__(self, context: ssl.SSLContext, **kw):
        self._context = context
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["ssl_context"] = self._context
        return super().init_poolmanager(*args, **kw)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["ssl_context"] = self._context
        pool_kwargs["cert_reqs"] = "CERT_NONE" if self._context.verify_mode == ssl.CERT_NONE else "CERT_REQUIRED"
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert):
        return  # the context decides; requests would otherwise load certifi over it
