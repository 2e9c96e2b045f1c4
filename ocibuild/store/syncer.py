"""Syncing a file to disk while it is still being written (the blob store's large blobs)."""

from __future__ import annotations

import os
import threading


class Syncer:
    """fdatasync a file being written, on a thread of its own, whenever ``request``ed.

    Why not sync_file_range: it only starts the writeback. The journal commit that allocates
    the blocks, and on a filesystem mounted with ``discard`` the trimming of what was deleted
    before, then all wait in the final fsync: measured here, 0.66 s for a 655 MB blob written
    after 1.3 GB had been deleted, against 0.03 s when the file is fdatasynced as it grows.
    On a thread, the writer never waits for the disk.
    """

    def __init__(self, fd: int):
        self._fd, self._stopping, self._error = fd, False, None
        self._wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blob-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        while self._wanted.wait() and not self._stopping:
            self._wanted.clear()
            try:
                os.fdatasync(self._fd)
            except OSError as e:
                self._error = e
                return

    def stop(self) -> OSError | None:
        """Wait for a sync under way; the error of one that failed."""
        self._stopping = True
        self._wanted.set()
        self._thread.join()
        return self._error
