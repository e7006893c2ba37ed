"""Snapshots of the caches, so a restart replays only the journal's tail.

A snapshot is the whole engine at one journal position, pickled, in one file:

    header  68 bytes: magic b"OCS1", u32 format version, u64 journal position (records it
            covers), 16-byte chain value of the last record it covers, 32-byte keyed
            BLAKE2b-256 (journal key) of the header's first 36 bytes and the payload
    payload one Zstandard frame (format 5; 3 and 4 are not compressed) of the engine,
            pickled (protocol 5), with its two bulk tables (the cards and the e-card
            bindings, one object each per card) as MessagePack rows of their slot values
            inside it

The MAC is checked before anything is decompressed or unpickled: a snapshot is only ever
read back if the holder of the journal key wrote it, which is what makes pickle safe here.
Terminal keys are not in it (they stay in keys.json); they are re-attached on load. The
chain value ties the snapshot to the journal: recovery resumes from it only if the
journal holds that record with that chain value (switch.journal.recovery.recover,
`resume`), else it replays in full.

Why rows: pickle takes ~20 µs of CPU per card (a slotted object and its memoised strings,
one by one), so a million cards kept a core busy for half a minute, during which the
snapshot child competed with the switch for the machine (docs/performance.md). As rows
encoded by msgspec the same tables take a fraction of that, and load faster too.

Snapshots are written atomically (temporary file, fsync, rename, fsync the directory) by a
forked child of the running switch, so the pickling never pauses the event loop (the
child has a copy-on-write view of the engine at the fork), at a graceful stop, and by
`onecard snapshot` while the switch is stopped.
"""

from __future__ import annotations

import gc
import hashlib
import io
import logging
import operator
import pickle
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.terminal.mac import MacKey
from switch.domain.model import Card, CardCategory, CardStatus
from switch.durable import fsync_directory, remove_paced, write_atomically
from switch.ecard.state import Binding, EcardLevel, EcardState
from switch.engine import Engine
from switch.transit.rides import TransitState

log = logging.getLogger("onecard.snapshot")

DIRECTORY = "snapshots"
SUFFIX = ".snapshot"
MAGIC = b"OCS1"
# Raised whenever a class the pickled engine holds changes shape (2: transit's Place became
# a msgspec Struct; 3: cards and e-card bindings as rows; 4: the transit states as one
# MessagePack map; 5: the payload compressed): a snapshot of a shape not in
# READABLE_VERSIONS is ignored and the journal replayed.
FORMAT_VERSION = 5
# Version 3 differs from 4 only in holding the transit states pickled, which loads as it
# is; 4 differs from 5 only in its payload not being compressed.
READABLE_VERSIONS = frozenset({3, 4, FORMAT_VERSION})
UNCOMPRESSED_VERSIONS = frozenset({3, 4})
# Zstandard's fastest level. What a snapshot costs the switch's tail is mostly its write
# beside the journal, not its CPU (docs/performance.md, Eighth round): a million cards'
# 165 MB become 60 MB for 0.25 s of the child's CPU, and a restart decompresses them in
# 0.13 s. Higher levels cost more CPU for a few percent fewer bytes (level 3: 64 MB,
# 0.56 s: the rows compress less well with its longer matches).
COMPRESSION_LEVEL = 1
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


class RowsError(Exception):
    """A class the snapshot encodes as rows changed shape: raise FORMAT_VERSION."""


class Rows:
    """Objects of one slotted class as MessagePack rows of their slot values. `slots`
    names each slot's type: decoding checks every value against it, and a class that
    gains or loses a slot fails at import (RowsError) instead of losing the slot silently."""

    def __init__(self, cls: type, slots: Mapping[str, type]) -> None:
        self.cls = cls
        self.slots = tuple(slots)
        if sorted(self.slots) != sorted(cls.__dict__["__slots__"]):
            # At import: a slot added to the class without a row type here fails every test.
            raise RowsError(f"{cls.__name__}: slots {cls.__dict__['__slots__']} != {self.slots}")
        self._get = operator.attrgetter(*self.slots)
        row = tuple.__class_getitem__(tuple(slots.values()))
        self._decoder = msgspec.msgpack.Decoder(list[row])  # type: ignore[valid-type]
        self._encoder = msgspec.msgpack.Encoder()
        self._build = self._builder(self.slots)

    def encode(self, objects: Iterable[Any]) -> bytes:
        get = self._get
        return self._encoder.encode([get(o) for o in objects])

    def decode(self, data: bytes) -> list[Any]:
        return self._build(self._decoder.decode(data), object.__new__, self.cls)

    @staticmethod
    def _builder(slots: tuple[str, ...]) -> Callable[[list[Any], Any, type], list[Any]]:
        # Generated, as dataclasses generates __init__: one tuple unpacking into the slots
        # per row is a few times faster than a setattr per value, which for a million
        # cards is seconds of a restart.
        targets = "".join(f"obj.{slot}, " for slot in slots)
        source = (
            "def build(rows, new, cls):\n"
            "    objects = []\n"
            "    for row in rows:\n"
            "        obj = new(cls)\n"
            f"        {targets}= row\n"
            "        objects.append(obj)\n"
            "    return objects\n"
        )
        namespace: dict[str, Any] = {}
        # The source holds nothing but our own classes' slot names (identifiers).
        exec(source, namespace)
        build: Callable[[list[Any], Any, type], list[Any]] = namespace["build"]
        return build


CARD_ROWS = Rows(
    Card,
    {
        "number": str,
        "holder_token": str,
        "holder_masked": str,
        "category": CardCategory,
        "status": CardStatus,
        "purse_fen": int,
        "debt_fen": int,
        "medical_fen": int,
        "bank_id": str,
        "bank_account_masked": str,
    },
)
BINDING_ROWS = Rows(Binding, {"card": str, "token": bytes, "level": EcardLevel})
# The transit state of every card that has travelled (most of them, after a busy day): as
# one msgspec map 0.14-0.31 s for 720,000 cards, against 2.1-3.4 s of pickling.
_TRANSIT_ENCODER = msgspec.msgpack.Encoder()
_TRANSIT_DECODER = msgspec.msgpack.Decoder(dict[str, TransitState])


def _terminal_key(terminal_id: str) -> MacKey:
    """Stands in the pickle for a terminal's key; _Unpickler resolves it from keys.json."""
    raise pickle.UnpicklingError("a terminal key is only ever loaded by snapshot.read")


def _engine() -> Engine:
    """Stands in the pickle for the engine's constructor; _Unpickler gives it the keys."""
    raise pickle.UnpicklingError("an engine is only ever loaded by snapshot.read")


def _set_engine_state(engine: Engine, state: dict[str, Any]) -> None:
    cards = CARD_ROWS.decode(state["cards"])
    if isinstance(state["transit"], bytes):  # version 3 pickled the states themselves
        state["transit"] = _TRANSIT_DECODER.decode(state["transit"])
    engine.__dict__.update(state)
    engine.cards = {card.number: card for card in cards}


def _ecard_state() -> EcardState:
    return EcardState.__new__(EcardState)


def _set_ecard_state(ecard: EcardState, state: dict[str, Any]) -> None:
    bindings = BINDING_ROWS.decode(state.pop("by_card"))
    for name, value in state.items():
        setattr(ecard, name, value)
    ecard.by_card = {binding.card: binding for binding in bindings}
    ecard.by_token = {binding.token: binding for binding in bindings}


class _Pickler(pickle.Pickler):
    """Keeps terminal keys out of the file, writes the bulk tables as rows and pickles
    what the stdlib cannot."""

    def __init__(self, file: io.BytesIO, engine: Engine) -> None:
        super().__init__(file, protocol=5)
        self._key_owner = {id(t.key): tid for tid, t in engine.terminals.items()}
        # reducer_override sees every object of a class pickle does not know natively
        # (millions): the verdict is taken once per type.
        self._reducers: dict[type, Callable[[Any], Any] | None] = {
            MacKey: self._reduce_key,
            Engine: self._reduce_engine,
            EcardState: self._reduce_ecard,
        }

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        try:
            reducer = self._reducers[kind]
        except KeyError:
            reducer = self._reduce_public_key if isinstance(obj, Ed25519PublicKey) else None
            self._reducers[kind] = reducer
        return NotImplemented if reducer is None else reducer(obj)

    def _reduce_key(self, key: MacKey) -> Any:
        return (_terminal_key, (self._key_owner[id(key)],))

    @staticmethod
    def _reduce_engine(engine: Engine) -> Any:
        state = dict(engine.__dict__)
        del state["_keys"]
        state["cards"] = CARD_ROWS.encode(engine.cards.values())
        state["transit"] = _TRANSIT_ENCODER.encode(engine.transit)
        return (_engine, (), state, None, None, _set_engine_state)

    @staticmethod
    def _reduce_ecard(ecard: EcardState) -> Any:
        state = {name: getattr(ecard, name) for name in EcardState.__slots__}
        del state["by_token"]  # the same bindings as by_card, rebuilt from it
        state["by_card"] = BINDING_ROWS.encode(ecard.by_card.values())
        return (_ecard_state, (), state, None, None, _set_ecard_state)

    @staticmethod
    def _reduce_public_key(key: Ed25519PublicKey) -> Any:
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return (Ed25519PublicKey.from_public_bytes, (raw,))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, keys: Mapping[str, bytes]) -> None:
        super().__init__(file)
        self._keys = keys

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == _terminal_key.__name__:
            return self._terminal_key
        if module == __name__ and name == _engine.__name__:
            return self._engine
        return super().find_class(module, name)

    def _terminal_key(self, terminal_id: str) -> MacKey:
        return MacKey(self._keys[terminal_id])

    def _engine(self) -> Engine:
        engine = Engine.__new__(Engine)
        engine._keys = self._keys
        return engine


def _mac(key: bytes, covered: bytes, payload: bytes) -> bytes:
    h = hashlib.blake2b(key=key, digest_size=MAC_SIZE)
    h.update(covered)
    h.update(payload)
    return h.digest()


def encode(engine: Engine, position: int, chain: bytes, key: bytes) -> bytes:
    # The rows of a million cards are a million new tuples, and each batch of them set off
    # the cyclic collector, whose full passes walked them all again: with the collector on,
    # encoding took 9-13 s instead of 5.3 (docs/performance.md, Eighth round). Nothing here
    # makes a reference cycle.
    collecting = gc.isenabled()
    gc.disable()
    try:
        buffer = io.BytesIO()
        _Pickler(buffer, engine).dump(engine)
        payload = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL).compress(buffer.getbuffer())
        return sealed(FORMAT_VERSION, position, chain, key, payload)
    finally:
        if collecting:
            gc.enable()


def sealed(version: int, position: int, chain: bytes, key: bytes, payload: bytes) -> bytes:
    """A snapshot file's bytes: the header, its MAC, the payload."""
    covered = _COVERED.pack(MAGIC, version, position, chain)
    return covered + _mac(key, covered, payload) + payload


def write(directory: Path, engine: Engine, position: int, chain: bytes, key: bytes) -> Path:
    """Write a snapshot atomically; keeps the newest KEEP. Returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = encode(engine, position, chain, key)
    path = directory / f"{position:020d}{SUFFIX}"
    write_atomically(path, data, paced=True)  # beside a serving journal
    fsync_directory(directory)
    for old in sorted(directory.glob("*" + SUFFIX))[:-KEEP]:
        remove_paced(old)  # tens of MB freed at once would stall the journal's sync
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
    if magic != MAGIC or version not in READABLE_VERSIONS or mac != _mac(key, covered, payload):
        log.error("snapshot %s: not a snapshot this journal key wrote; ignored", path.name)
        return None
    if version not in UNCOMPRESSED_VERSIONS:
        # Its frame states the decompressed size (the writer's default): one allocation.
        payload = zstandard.ZstdDecompressor().decompress(payload)
    engine = _Unpickler(io.BytesIO(payload), keys).load()
    if not isinstance(engine, Engine):
        log.error("snapshot %s: holds no engine; ignored", path.name)
        return None
    return Snapshot(engine, position, chain)


def candidates(directory: Path) -> list[Path]:
    """Snapshot files, newest first."""
    return sorted(directory.glob("*" + SUFFIX), reverse=True)
