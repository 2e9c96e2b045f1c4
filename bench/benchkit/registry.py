"""A loopback registry for the push benchmarks: Debian's `docker-registry` (distribution 2.x).

Plain HTTP on 127.0.0.1 and a free port, filesystem storage in a directory of the
benchmark's own, no blob-descriptor cache (so emptying the storage between runs
leaves no stale "this blob exists" answers behind), deletes enabled.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""


class Registry:
    """`docker-registry serve` in the background; use as a context manager."""

    def __init__(self, home: Path, binary: str = "docker-registry"):
        self.home = home
        self.binary = binary
        self.storage = home / "storage"
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "Registry":
        if not shutil.which(self.binary):
            raise SystemExit(f"{self.binary} is not installed (apt-get install docker-registry)")
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "config.yml"
        config.write_text(CONFIG.format(root=self.storage, port=self.port))
        log = open(self.home / "registry.log", "wb")
        self.proc = subprocess.Popen([self.binary, "serve", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def empty(self) -> None:
        """Forget every blob and manifest: the next push uploads everything."""
        shutil.rmtree(self.storage, ignore_errors=True)

    def _wait(self, seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"docker-registry exited: see {self.home / 'registry.log'}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"docker-registry did not answer on {self.host} within {seconds:.0f} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
