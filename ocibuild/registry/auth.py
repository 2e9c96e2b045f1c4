"""Registry credentials as Docker and Podman keep them: ``config.json`` and credential helpers.

Where credentials are looked up, first match wins:

1. ``$REGISTRY_AUTH_FILE`` (Podman/skopeo's auth.json, the same ``auths`` format), when set;
2. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.

Within one file: ``credHelpers[host]``, then an inline ``auths[host].auth`` (base64
``user:password``, or an ``identitytoken``), then the global ``credsStore`` -- Docker's order.
A helper is run as ``docker-credential-<name> get`` with the server name on stdin. Docker Hub
is keyed ``https://index.docker.io/v1/``; other registries by ``host[:port]``; keys written as
URLs (``https://host/v2/``) match too.

``login``/``logout`` write the file Docker would (``$DOCKER_CONFIG/config.json``): into the
``credsStore`` helper when one is configured, inline otherwise, file mode 0600, replaced
atomically. Secrets never appear in ``repr``, in log records or in error messages.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from oras.auth.utils import get_basic_auth  # base64("user:password"), as config.json stores it

from ocibuild.errors import AuthError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_HELPER_TIMEOUT = 30


@dataclass(frozen=True)
class Credentials:
    """A username and a secret; ``identity_token`` is an OAuth2 refresh token (Docker's
    ``identitytoken``, or a helper answering username ``<token>``)."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<hidden>)"

    def basic(self) -> str:
        """The value of a ``Basic`` Authorization header."""
        return get_basic_auth(self.username, self.password)


def config_path() -> Path:
    """Docker's config.json: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def auth_files() -> list[Path]:
    """The files credentials are read from, in order of precedence."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    files.append(config_path())
    return files


def server_key(host: str) -> str:
    """The key config.json uses for ``host`` (Docker Hub's historical URL for docker.io)."""
    return DOCKER_HUB_KEY if host in _DOCKER_HUB_NAMES else host


def lookup(host: str) -> Credentials | None:
    """Credentials for ``host`` (``registry[:port]``), or None when none are configured."""
    for path in auth_files():
        config = _read_config(path)
        found = _from_config(config, host, path)
        if found is not None:
            return found
    return None


def _from_config(config: dict, host: str, path: Path) -> Credentials | None:
    key = server_key(host)
    helper = (config.get("credHelpers") or {}).get(key) or (config.get("credHelpers") or {}).get(host)
    if helper:
        return helper_get(helper, key)
    entry = _auth_entry(config.get("auths") or {}, host)
    if entry is not None:
        creds = _decode_entry(entry, host, path)
        if creds is not None:
            return creds
    if config.get("credsStore"):
        return helper_get(config["credsStore"], key)
    return None


def _auth_entry(auths: dict, host: str) -> dict | None:
    key = server_key(host)
    if key in auths:
        return auths[key]
    for name, entry in auths.items():  # "https://host/v2/", "http://host" ...
        bare = name.split("://", 1)[-1].split("/", 1)[0]
        if bare == host or (host in _DOCKER_HUB_NAMES and bare in _DOCKER_HUB_NAMES):
            return entry
    return None


def _decode_entry(entry: dict, host: str, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") or ""
    encoded = entry.get("auth") or ""
    if not encoded:
        return Credentials("", identity_token=token) if token else None
    try:
        user, sep, password = base64.b64decode(encoded, validate=False).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise AuthError(f"read credentials for {host} from {path}: the 'auth' entry is not base64 'user:password'")
    return Credentials(user, password, token)


def helper_get(helper: str, server: str) -> Credentials | None:
    """Ask ``docker-credential-<helper> get``; None when it knows no credentials for ``server``."""
    out = _run_helper(helper, "get", server)
    if out is None:
        return None
    try:
        data = json.loads(out)
        user, secret = data["Username"], data["Secret"]
    except (ValueError, KeyError, TypeError):
        raise AuthError(f"credential helper docker-credential-{helper}: unreadable answer for {server}") from None
    if user == "<token>":
        return Credentials("", identity_token=secret)
    return Credentials(user, secret)


def _run_helper(helper: str, verb: str, stdin: str) -> str | None:
    """Run a helper verb; None for "credentials not found". Its stderr is not echoed (it may hold secrets)."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, verb], input=stdin.encode(), capture_output=True,
                              timeout=_HELPER_TIMEOUT, check=False)
    except FileNotFoundError:
        raise AuthError(f"credential helper {program}: not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {program} {verb}: no answer within {_HELPER_TIMEOUT}s") from None
    if proc.returncode != 0:
        if b"credentials not found" in proc.stdout.lower() + proc.stderr.lower():
            return None
        raise AuthError(f"credential helper {program} {verb}: exit status {proc.returncode}")
    return proc.stdout.decode()


def login(host: str, username: str, password: str, *, path: Path | None = None) -> Path:
    """Record credentials for ``host`` as ``docker login`` does; returns the file written.

    Does not contact the registry (``ocibuild.registry.check_login`` does). With a ``credsStore``
    the secret goes to the helper and config.json only gets an empty ``auths`` entry.
    """
    path = path or config_path()
    config = _read_config(path)
    key = server_key(host)
    auths = config.setdefault("auths", {})
    store = config.get("credsStore")
    if store:
        payload = json.dumps({"ServerURL": key, "Username": username, "Secret": password})
        _run_helper(store, "store", payload)
        auths[key] = {}
    else:
        auths[key] = {"auth": get_basic_auth(username, password)}
    _write_config(path, config)
    return path


def logout(host: str, *, path: Path | None = None) -> bool:
    """Forget credentials for ``host``; False when there were none (idempotent)."""
    path = path or config_path()
    config = _read_config(path)
    key = server_key(host)
    auths = config.get("auths") or {}
    removed = auths.pop(key, None) is not None
    store = config.get("credsStore")
    if store:
        removed = _run_helper(store, "erase", key) is not None or removed
    if removed:
        _write_config(path, config)
    return removed


def _read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise AuthError(f"read {path}: {e.strerror}") from None
    except ValueError:
        raise AuthError(f"read {path}: not valid JSON") from None
    if not isinstance(data, dict):
        raise AuthError(f"read {path}: not a JSON object")
    return data


def _write_config(path: Path, config: dict) -> None:
    """Replace ``path`` atomically, readable by its owner only (it holds secrets)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(config, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise AuthError(f"write {path}: {e.strerror}") from None
