"""Credentials: config.json, credential helpers, login/logout, and that secrets never leak.

The leak test runs pushes that succeed and pushes that fail with DEBUG logging on for every
logger, then greps the log and the exception text for the password, its base64 form and the
tokens the token server issued.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest

from conftest import USERS, options, repo_name
from ocibuild.errors import AuthError, OcibuildError
from ocibuild.oci import Reference
from ocibuild.registry import Credentials, auth, check_login, push_image

pytestmark = pytest.mark.needs_registry


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    folder = tmp_path / "docker"
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return folder


@pytest.fixture
def helper_bin(tmp_path, monkeypatch):
    """A fake ``docker-credential-fake`` on PATH that stores secrets in a JSON file."""
    folder = tmp_path / "bin"
    folder.mkdir()
    store = tmp_path / "helper-store.json"
    script = folder / "docker-credential-fake"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys, pathlib
store = pathlib.Path({str(store)!r})
data = json.loads(store.read_text()) if store.exists() else {{}}
verb, arg = sys.argv[1], sys.stdin.read().strip()
if verb == "get":
    if arg not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": arg, "Username": data[arg][0], "Secret": data[arg][1]}}))
elif verb == "store":
    req = json.loads(arg); data[req["ServerURL"]] = [req["Username"], req["Secret"]]
    store.write_text(json.dumps(data))
elif verb == "erase":
    if arg not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    del data[arg]; store.write_text(json.dumps(data))
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return store


def test_login_writes_config_json_as_docker_does(docker_config):
    path = auth.login("127.0.0.1:5000", "alice", "p4ss:word")
    assert path == docker_config / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert base64.b64decode(data["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:p4ss:word"
    assert auth.lookup("127.0.0.1:5000") == Credentials("alice", "p4ss:word")
    auth.login("docker.io", "bob", "x")
    assert "https://index.docker.io/v1/" in json.loads(path.read_text())["auths"]
    assert auth.lookup("registry-1.docker.io").username == "bob"
    assert auth.logout("127.0.0.1:5000") is True
    assert auth.logout("127.0.0.1:5000") is False
    assert auth.lookup("127.0.0.1:5000") is None


def test_registry_auth_file_takes_precedence(docker_config, tmp_path, monkeypatch):
    auth.login("r.example:5000", "docker-user", "a")
    auth.login("other.example", "docker-only", "c")
    podman = tmp_path / "auth.json"
    podman.write_text(json.dumps({"auths": {"r.example:5000": {"auth": base64.b64encode(b"podman-user:b").decode()}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))
    assert auth.lookup("r.example:5000").username == "podman-user"
    assert auth.lookup("other.example").username == "docker-only"  # falls through to config.json


def test_url_shaped_keys_match(docker_config):
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps(
        {"auths": {"https://r.example:5000/v2/": {"auth": base64.b64encode(b"u:p").decode()}}}))
    assert auth.lookup("r.example:5000") == Credentials("u", "p")


def test_cred_helpers_and_creds_store(docker_config, helper_bin):
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    auth.login("r.example", "carol", "helper-secret")
    config = json.loads((docker_config / "config.json").read_text())
    assert config["auths"]["r.example"] == {}  # the secret went to the helper
    assert "helper-secret" not in (docker_config / "config.json").read_text()
    assert auth.lookup("r.example") == Credentials("carol", "helper-secret")
    assert auth.lookup("unknown.example") is None
    config["credHelpers"] = {"special.example": "fake"}
    (docker_config / "config.json").write_text(json.dumps(config))
    assert auth.lookup("special.example") is None
    assert auth.logout("r.example") is True
    assert auth.lookup("r.example") is None


def test_missing_helper_is_a_clear_error(docker_config):
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {"r.example": "nope-not-here"}}))
    with pytest.raises(AuthError, match="docker-credential-nope-not-here: not found on PATH"):
        auth.lookup("r.example")


def test_credentials_repr_hides_the_secret():
    creds = Credentials("alice", "hunter2-secret", "id-token-secret")
    assert "hunter2" not in repr(creds) and "id-token" not in repr(creds) and "alice" in repr(creds)


def test_check_login(htpasswd_registry, token_registry):
    check_login(htpasswd_registry.host, Credentials("alice", USERS["alice"]))
    check_login(token_registry.host, Credentials("reader", USERS["reader"]))
    with pytest.raises(AuthError):
        check_login(htpasswd_registry.host, Credentials("alice", "nope"))
    with pytest.raises(AuthError):
        check_login(token_registry.host, Credentials("alice", "nope"))


def test_push_with_credentials_from_config_json(htpasswd_registry, docker_config, make_image):
    auth.login(htpasswd_registry.host, "alice", USERS["alice"])
    layout, top = make_image()
    ref = Reference.parse(f"{htpasswd_registry.host}/{repo_name()}:v1")
    assert push_image(layout, top, ref).digest == top.digest


def _secrets(password: str) -> list[str]:
    return [password, base64.b64encode(f"alice:{password}".encode()).decode()]


def test_credentials_never_appear_in_logs_or_errors(htpasswd_registry, token_registry, make_image, caplog,
                                                    docker_config):
    caplog.set_level(logging.DEBUG)  # every logger: ours, urllib3's, oras's
    layout, top = make_image()
    texts: list[str] = []
    for registry in (htpasswd_registry, token_registry):
        push_image(layout, top, Reference.parse(f"{registry.host}/{repo_name()}:v1"),
                   options=options(creds=("alice", USERS["alice"])))
        for user, password in (("alice", "Wrong-Secret-4471"), ("reader", USERS["reader"])):
            with pytest.raises(OcibuildError) as info:
                push_image(layout, top, Reference.parse(f"{registry.host}/{repo_name()}:v1"),
                           options=options(creds=(user, password)))
            texts += [str(info.value), repr(info.value)]
    logged = caplog.text + "\n".join(texts)
    assert "GET /v2/" in caplog.text or "PUT" in caplog.text  # the log did record the requests
    for secret in (*_secrets(USERS["alice"]), *_secrets("Wrong-Secret-4471"), USERS["reader"],
                   base64.b64encode(f"reader:{USERS['reader']}".encode()).decode()):
        assert secret not in logged
    assert token_registry.token_server.issued
    for token in token_registry.token_server.issued:
        assert token.split(".")[2] not in logged  # the signature: the part only the holder knows
