"""Snapshots of the caches, so a restart replays only the journal's tail.

A snapshot is the whole engine at one journal position, pickled, in one file:

    header  68 bytes: magic b"OCS1", u32 format version, u64 journal position (records it
            covers), 16-byte chain value of the last record it covers, 32-byte keyed
            BLAKE2b-256 (journal key) of the header's first 36 bytes and the payload
    payload the engine, pickled (protocol 5)

The MAC is checked before anything is unpickled: a snapshot is only ever read back if the
holder of the journal key wrote it, which is what makes pickle safe here. Terminal keys
are not in it (they stay in keys.json); they are re-attached on load. The chain value ties
the snapshot to the journal: recovery resumes from it only if the journal holds that
record with that chain value (switch.journal.recovery.recover, `resume`), else it replays
in full.

Snapshots are written atomically (temporary file, fsync, rename, fsync the directory) by a
forked child of the running switch, so the pickling never pauses the event loop (the
child has a copy-on-write view of the engine at the fork), at a graceful stop, and by
`onecard snapshot` while the switch is stopped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.terminal.mac import MacKey
from switch.durable import fsync_directory, write_atomically
from switch.engine import Engine

log = logging.getLogger("onecard.snapshot")

DIRECTORY = "snapshots"
SUFFIX = ".snapshot"
MAGIC = b"OCS1"
# Raised whenever a class the pickled engine holds changes shape (2: transit's Place became
# a msgspec Struct): a snapshot of another shape is ignored and the journal replayed.
FORMAT_VERSION = 2
_COVERED = struct.Struct(">4sIQ16s")
MAC_SIZE = 32
HEADER = struct.Struct(f">4sIQ16s{MAC_SIZE}s")
# Snapshots kept: the newest may cover records a crash kept from the disk (it is taken at
# the appended position), so the one before it must still be there to fall back on.
KEEP = 3


@dataclass(frozen=True)
class Snapshot:
    engine: Engine
    position: int  # journal records it covers
    chain: bytes  # chain value of the last of them


class _Pickler(pickle.Pickler):
    """Keeps terminal keys out of the file and pickles what the stdlib cannot."""

    def __init__(self, file: io.BytesIO, engine: Engine) -> None:
        super().__init__(file, protocol=5)
        self._engine = engine
        self._key_owner = {id(t.key): tid for tid, t in engine.terminals.items()}

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is MacKey:
            return ("terminal-key", self._key_owner[id(obj)])
        if obj is self._engine._keys:
            return ("terminal-keys",)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Ed25519PublicKey):
            raw = obj.public_bytes(Encoding.Raw, PublicFormat.Raw)
            return (Ed25519PublicKey.from_public_bytes, (raw,))
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, keys: Mapping[str, bytes]) -> None:
        super().__init__(file)
        self._keys = keys

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "terminal-key":
            return MacKey(self._keys[pid[1]])
        if pid[0] == "terminal-keys":
            return self._keys
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def _mac(key: bytes, covered: bytes, payload: bytes) -> bytes:
    h = hashlib.blake2b(key=key, digest_size=MAC_SIZE)
    h.update(covered)
    h.update(payload)
    return h.digest()


def encode(engine: Engine, position: int, chain: bytes, key: bytes) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, engine).dump(engine)
    payload = buffer.getvalue()
    covered = _COVERED.pack(MAGIC, FORMAT_VERSION, position, chain)
    return covered + _mac(key, covered, payload) + payload


def write(directory: Path, engine: Engine, position: int, chain: bytes, key: bytes) -> Path:
    """Write a snapshot atomically; keeps the newest KEEP. Returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = encode(engine, position, chain, key)
    path = directory / f"{position:020d}{SUFFIX}"
    write_atomically(path, data)
    fsync_directory(directory)
    for old in sorted(directory.glob("*" + SUFFIX))[:-KEEP]:
        old.unlink()
    return path


def read(path: Path, key: bytes, keys: Mapping[str, bytes]) -> Snapshot | None:
    """The snapshot in `path`, or None (logged) if it is not one we wrote whole."""
    data = path.read_bytes()
    if len(data) < HEADER.size:
        log.error("snapshot %s: shorter than its header; ignored", path.name)
        return None
    magic, version, position, chain, mac = HEADER.unpack_from(data, 0)
    covered = data[: _COVERED.size]
    payload = data[HEADER.size :]
    if magic != MAGIC or version != FORMAT_VERSION or mac != _mac(key, covered, payload):
        log.error("snapshot %s: not a snapshot this journal key wrote; ignored", path.name)
        return None
    engine = _Unpickler(io.BytesIO(payload), keys).load()
    if not isinstance(engine, Engine):
        log.error("snapshot %s: holds no engine; ignored", path.name)
        return None
    return Snapshot(engine, position, chain)


def candidates(directory: Path) -> list[Path]:
    """Snapshot files, newest first."""
    return sorted(directory.glob("*" + SUFFIX), reverse=True)
