"""Registries: the only network code of ocibuild, and the only importer of oras.

    auth.py       credentials: config.json (``$DOCKER_CONFIG``, ``$REGISTRY_AUTH_FILE``), credential
                  helpers, login/logout writing config.json as docker does
    tls.py        trust (system store + /etc/docker/certs.d/<host>/ + a CA file); when HTTP is allowed
    retry.py      RetryPolicy: bounded exponential backoff with jitter, Retry-After honoured
    tokens.py     Authorizer: answers Basic and Bearer challenges; tokens cached per scope
    transport.py  Transport: one host; scheme, auth, retries, errors translated into RegistryError
    client.py     RepositoryClient: manifests (verified), tags, blob existence
    blobs.py      blob download (verified, resumed with Range) and upload (HEAD, mount, PUT/PATCH)
    source.py     RegistrySource (an ImageSource), open_image, pull_image (FROM)
    push.py       push_image: blobs, then documents, then tags

From oras-py (0.2.43) we use ``oras.auth.utils.parse_auth_header`` and ``get_basic_auth``;
its ``Registry.do_request`` is not used: its retry decorator sleeps 2+3^n seconds on any
exception (including ones a retry cannot fix), ignores Retry-After, and its TokenAuth keeps
one token for all scopes. Manifests there are dicts, which loses the exact bytes a digest covers.
"""

from __future__ import annotations

from dataclasses import replace

from ocibuild.errors import AuthError
from ocibuild.registry import auth
from ocibuild.registry.auth import Credentials, login, logout
from ocibuild.registry.client import RepositoryClient, api_host
from ocibuild.registry.push import push_image, push_reference
from ocibuild.registry.retry import RetryPolicy
from ocibuild.registry.source import RegistrySource, open_image, pull_image
from ocibuild.registry.tls import TLSOptions
from ocibuild.registry.transport import Transport, TransportOptions


def check_login(host: str, credentials: Credentials, options: TransportOptions | None = None) -> None:
    """Ask ``host`` whether ``credentials`` are good (``GET /v2/``, answering its challenge).

    AuthError when they are refused; other RegistryErrors when the registry cannot be reached.
    A registry that asks for no authentication at all accepts anything, as with ``docker login``.
    """
    opts = replace(options or TransportOptions(), credentials=credentials)
    transport = Transport(api_host(host), opts)
    try:
        transport.request("GET", "/v2/", what=f"log in to {host}").close()
    finally:
        transport.close()


__all__ = ["auth", "AuthError", "Credentials", "login", "logout", "check_login", "RepositoryClient", "api_host",
           "push_image", "push_reference", "RetryPolicy", "RegistrySource", "open_image", "pull_image",
           "TLSOptions", "Transport", "TransportOptions"]
