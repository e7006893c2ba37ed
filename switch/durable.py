"""Files that survive a crash whole or not at all, for everything the switch writes beside
the journal (snapshots, keys, tokens, settlement files and reports).

A file is written under a temporary name beside its place, synced, then renamed over it:
a reader sees the old file or the new one, never half of one. The rename itself lives in
the directory, so callers that must know the new name survives a crash sync the directory
too (fsync_directory), once per batch of files.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

# A big file shares the disk with the journal, and every answer waits for a journal sync.
# Written in one go and synced at the end, a 165 MB snapshot held a journal `fdatasync`
# up for 200-240 ms on the bench machine; synced every 4 MiB with a pause between chunks,
# for 15-90 ms (docs/performance.md). Pacing costs the writer ~0.2 s per 165 MB.
PACED_CHUNK_BYTES = 4 * 1024 * 1024
PACED_PAUSE_SECONDS = 0.005


def write_atomically(path: Path, data: bytes, mode: int = 0o600, *, paced: bool = False) -> None:
    """Write `data` to `path` whole or not at all. `paced`: in synced chunks, for big files
    written beside a serving journal (snapshots)."""
    # Hidden and per-process: a temporary left by a crash is never taken for the file, and
    # two processes writing the same path never write into each other's temporary.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:PACED_CHUNK_BYTES] if paced else view) :]
            if paced and view:
                os.fdatasync(fd)
                time.sleep(PACED_PAUSE_SECONDS)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


# Freeing a big file's blocks in one unlink held a concurrent journal fdatasync for up to
# 17-21 ms on the bench machine (ext4, a 165 MB snapshot); shrunk in 8 MiB steps first,
# for at most 2 ms (docs/performance.md, "Fifth round").
REMOVE_STEP_BYTES = 8 * 1024 * 1024
REMOVE_PAUSE_SECONDS = 0.01


def remove_paced(path: Path) -> None:
    """Delete a big file beside a serving journal: shrink it in steps, then unlink. A
    crash half way leaves it shorter, which only a file's own check (a snapshot's MAC)
    has to catch."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        while size > REMOVE_STEP_BYTES:
            size -= REMOVE_STEP_BYTES
            os.ftruncate(fd, size)
            time.sleep(REMOVE_PAUSE_SECONDS)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)


def preallocate(fd: int, size: int) -> None:
    """Give the file `size` bytes of disk now (reading as zeros), so that the writes that
    later fill it change neither its size nor its block map: a sync after each then has
    only data to flush. Nothing happens where the OS or the filesystem cannot (the writes
    then simply extend the file); running out of space raises (OSError ENOSPC), now rather
    than at a later write."""
    try:
        os.posix_fallocate(fd, 0, size)
    except AttributeError:  # not on this OS (macOS)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def fsync_directory(directory: Path) -> None:
    """Make the names in `directory` (new, renamed, removed) survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
