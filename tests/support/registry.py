"""Run the reference registry (`docker-registry serve`, distribution 2.8) for tests.

``start_registry(folder, ...)`` writes a config (filesystem storage under ``folder``, deletes
enabled), picks a free loopback port, starts the registry and waits until ``/v2/`` answers.
Variants: plain HTTP; TLS (a test CA and a server certificate for 127.0.0.1/localhost);
htpasswd Basic auth (bcrypt, which is all distribution's htpasswd accepts); bearer tokens
from a ``TokenServer``. ``Registry.stop()`` ends the process (and only it).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from support.registry_certs import KeyPair, make_ca, make_server_cert
from support.tokenserver import ISSUER, SERVICE, TokenServer

START_TIMEOUT = 20.0


@dataclass
class Registry:
    process: subprocess.Popen
    port: int
    folder: Path
    scheme: str = "http"
    ca: KeyPair | None = None
    users: dict[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.token_server is not None:
            self.token_server.stop()

    def log(self) -> str:
        path = self.folder / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def htpasswd(users: dict[str, str], path: Path) -> Path:
    """An htpasswd file with bcrypt hashes (distribution refuses every other scheme)."""
    import bcrypt  # a test extra; imported here so that conftest loads without it
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(folder: Path, port: int, auth: dict | None, tls: KeyPair | None) -> Path:
    http: dict = {"addr": f"127.0.0.1:{port}", "secret": "ocibuild-test-secret",
                  "headers": {"X-Content-Type-Options": ["nosniff"]}}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert_path), "key": str(tls.key_path)}
    config = {"version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
              "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True},
                          "maintenance": {"uploadpurging": {"enabled": False}}},
              "http": http}
    if auth:
        config["auth"] = auth
    path = folder / "config.yml"
    path.write_text(json.dumps(config, indent=1))  # YAML is a superset of JSON
    return path


def start_registry(folder: Path, *, tls: bool = False, users: dict[str, str] | None = None,
                   token_server: TokenServer | None = None) -> Registry:
    """Start docker-registry in ``folder`` (created); see the module docstring for the variants."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(folder / "pki") if tls else None
    server = make_server_cert(ca, folder / "pki") if ca else None
    auth = None
    if users and token_server is None:
        auth = {"htpasswd": {"realm": "ocibuild-test", "path": str(htpasswd(users, folder / "htpasswd"))}}
    if token_server is not None:
        auth = {"token": {"realm": token_server.realm, "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(token_server.root_bundle)}}
    for _ in range(5):  # the free port may be taken between probing and binding
        port = free_port()
        config = _config(folder, port, auth, server)
        log = open(folder / "registry.log", "ab")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=folder)
        log.close()
        registry = Registry(process, port, folder, "https" if tls else "http", ca, dict(users or {}), token_server)
        if _wait_ready(registry):
            return registry
        registry.token_server = None  # keep it for the next attempt
        registry.stop()
    raise RuntimeError(f"docker-registry did not start in {folder}:\n{registry.log()[-3000:]}")


def _wait_ready(registry: Registry) -> bool:
    context = ssl.create_default_context(cafile=str(registry.ca.cert_path)) if registry.ca else None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            return False
        try:
            urllib.request.urlopen(f"{registry.url}/v2/", timeout=2, context=context).close()
            return True
        except urllib.error.HTTPError:
            return True  # 401: up, and asking for credentials
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False
