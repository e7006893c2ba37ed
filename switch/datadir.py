"""The data directory's lock: one writer of the journal at a time.

`onecard run` holds an exclusive advisory lock (flock) on `switch.lock` in the data
directory for as long as it serves. Offline commands that append to the journal (`onecard qr
rotate`) take the same lock without waiting, and refuse with an explanation when the switch
holds it: two writers would interleave records and corrupt the journal. The kernel releases
the lock when its holder exits, however it exits, so a crash leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from switch.errors import ConfigError

LOCK_NAME = "switch.lock"


@contextmanager
def hold_data_dir(data_dir: Path, purpose: str) -> Iterator[None]:
    """Hold the data directory's lock for `purpose` (said in the other holder's refusal);
    ConfigError at once if another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise ConfigError(
                f"{data_dir} is in use ({holder}); stop the switch first: only one process "
                "may append to the journal"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {purpose}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
