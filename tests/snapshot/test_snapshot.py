"""Snapshots: a restart resumes from one and replays only the tail; a snapshot that does not
fit (tampered, ahead of the journal, another configuration) is never used."""

from __future__ import annotations

import gc
import logging
import os
import re
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import zstandard

from protocols.terminal.mac import MacKey
from switch import snapshot
from switch.background import NICENESS
from switch.client import TerminalClient
from switch.config import Config, EngineConfig, ServerConfig, SnapshotConfig, load_config
from switch.core import open_switch
from switch.domain.model import Card, CardStatus
from switch.errors import ConfigError
from switch.journal.records import CardStatusChanged
from switch.keystore import KeyStore
from switch.service import run_service
from switch.snapshotter import SnapshotStatistics, take_snapshots
from switch.transit.rides import TransitState
from tests.conftest import FakeClock

# Linux's lowest priority: niceness stops there however much is added.
NICENESS_MAX = 19

pytestmark = pytest.mark.anyio
CONFIG = Config(engine=EngineConfig(), server=ServerConfig(port=0, metrics_port=0))
DEFAULT_GC_THRESHOLDS = gc.get_threshold()
# A journey under way, with a transfer chain and free rides used: every field set.
TRANSIT = TransitState("L1", "S03", 1_796_004_000_000, "L1", 1_796_004_000_000, 0, 7, 1, 202611, 2)


async def serve_some_taps(data_dir: Path, clock: FakeClock, cards: range) -> list[int]:
    """Run the switch, tap each card at gate G0001, stop gracefully; returns balances."""
    switch = open_switch(data_dir, CONFIG, clock)
    keys = KeyStore.load(data_dir)
    stop = anyio.Event()
    balances = []
    async with anyio.create_task_group() as group:
        port, _ = await group.start(run_service, switch, CONFIG, stop)
        async with await TerminalClient.connect(
            "127.0.0.1", port, "G0001", keys.terminals["G0001"], clock.now_ms
        ) as client:
            for serial in cards:
                answer = await client.request(client.tap(f"X{serial:08d}"))
                balances.append(answer.balance_fen or 0)
        stop.set()
    return balances


def purses(data_dir: Path, clock: FakeClock) -> tuple[dict[str, int], int]:
    switch = open_switch(data_dir, CONFIG, clock)
    try:
        return {n: c.purse_fen for n, c in switch.engine.cards.items()}, switch.recovery.records
    finally:
        switch.journal.close()


def pickled(data: bytes) -> bytes:
    """What a format-5 snapshot's compressed payload holds: the pickled engine."""
    return zstandard.ZstdDecompressor().decompress(data[snapshot.HEADER.size :])


async def test_a_graceful_stop_leaves_a_snapshot_the_next_start_resumes_from(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await serve_some_taps(data_dir, clock, range(10, 20))
    [written] = snapshot.candidates(data_dir / snapshot.DIRECTORY)
    caplog.set_level(logging.INFO, "onecard.switch")
    state, _records = purses(data_dir, clock)
    assert f"snapshot at {int(written.stem)} + 0 replayed" in caplog.text
    assert state["X00000010"] == 20_000 - 200
    # More traffic, then a restart without a new snapshot: the tail is replayed on top.
    clock.advance(minutes=5)
    await serve_some_taps(data_dir, clock, range(10, 12))
    for path in snapshot.candidates(data_dir / snapshot.DIRECTORY)[:1]:
        path.unlink()  # keep only the older snapshot
    caplog.clear()
    state, _ = purses(data_dir, clock)
    assert "replayed" in caplog.text and "all replayed" not in caplog.text
    assert state["X00000010"] == 20_000 - 200 - 100  # the second ride is a transfer


async def test_the_retry_window_survives_a_snapshot(data_dir: Path, clock: FakeClock) -> None:
    first = await serve_some_taps(data_dir, clock, range(30, 31))
    again = await serve_some_taps(data_dir, clock, range(30, 31))  # same seq: a retry
    assert again == first  # the original answer, the fare charged once


def test_a_tampered_snapshot_is_ignored(data_dir: Path, clock: FakeClock) -> None:
    anyio.run(serve_some_taps, data_dir, clock, range(40, 45))
    [written] = snapshot.candidates(data_dir / snapshot.DIRECTORY)
    expected, _ = purses(data_dir, clock)
    data = bytearray(written.read_bytes())
    data[-10] ^= 0x40
    written.write_bytes(bytes(data))
    assert purses(data_dir, clock)[0] == expected  # full replay, same state


def test_a_snapshot_ahead_of_the_journal_is_not_used(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    keys = KeyStore.load(data_dir)
    # As if the records after the fork never reached the disk: the snapshot claims more.
    snapshot.write(
        data_dir / snapshot.DIRECTORY,
        switch.engine,
        switch.journal.appended_position + 5,
        bytes(16),
        keys.journal,
    )
    switch.journal.close()
    caplog.set_level(logging.WARNING)
    state, _ = purses(data_dir, clock)
    assert "does not fit the journal" in caplog.text
    assert state["X00000050"] == 20_000


def test_a_snapshot_under_another_configuration_is_not_used(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    anyio.run(serve_some_taps, data_dir, clock, range(50, 51))
    other = msgspec.structs.replace(CONFIG.engine, idempotency_window=2048)
    caplog.set_level(logging.WARNING)
    switch = open_switch(data_dir, msgspec.structs.replace(CONFIG, engine=other), clock)
    switch.journal.close()
    assert "another engine configuration" in caplog.text
    assert switch.engine.cards["X00000050"].purse_fen == 20_000 - 200


async def test_a_forked_child_writes_snapshots_while_the_switch_serves(
    data_dir: Path, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    directory = data_dir / snapshot.DIRECTORY
    statistics = SnapshotStatistics()
    policy = SnapshotConfig(records=0, check_seconds=0.01)
    async with anyio.create_task_group() as group:
        group.start_soon(switch.journal.run)
        group.start_soon(take_snapshots, switch, policy, statistics)
        with anyio.fail_after(20):
            while not statistics.written_total:
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    switch.journal.close()
    keys = KeyStore.load(data_dir)
    found = snapshot.read(snapshot.candidates(directory)[0], keys.journal, keys.terminals)
    assert found is not None and found.position == switch.journal.appended_position
    assert found.engine.cards.keys() == switch.engine.cards.keys()
    # What the metrics read (onecard_snapshot_records and the rest).
    assert statistics.position == found.position and statistics.failed_total == 0
    assert statistics.seconds > 0


async def test_a_failed_snapshot_is_counted_and_its_child_says_why(
    data_dir: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_space(*_args: Any) -> Path:  # runs in the forked child
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot, "write", no_space)
    switch = open_switch(data_dir, CONFIG, clock)
    statistics = SnapshotStatistics(position=5)
    caplog.set_level(logging.ERROR, "onecard.snapshot")
    async with anyio.create_task_group() as group:
        group.start_soon(switch.journal.run)
        policy = SnapshotConfig(records=0, check_seconds=0.01)
        group.start_soon(take_snapshots, switch, policy, statistics)
        with anyio.fail_after(20):
            while statistics.failed_total < 2:  # and it tries again
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    switch.journal.close()
    assert (statistics.position, statistics.written_total) == (5, 0)
    assert "snapshot child: OSError: [Errno 28] No space left on device" in capfd.readouterr().err
    assert re.search(r"snapshot at record \d+ failed \(child \d+, status 256\)", caplog.text)
    assert not snapshot.candidates(data_dir / snapshot.DIRECTORY)


async def test_the_snapshot_child_runs_at_the_lowest_priority_and_idle_policy(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = data_dir / "child-niceness"
    write = snapshot.write
    parent = os.nice(0)

    def write_noting_niceness(*args: Any) -> Path:
        # Runs in the forked child.
        seen.write_text(f"{os.nice(0)} {os.sched_getscheduler(0)}")
        return write(*args)

    monkeypatch.setattr(snapshot, "write", write_noting_niceness)
    switch = open_switch(data_dir, CONFIG, clock)
    async with anyio.create_task_group() as group:
        group.start_soon(switch.journal.run)
        group.start_soon(take_snapshots, switch, SnapshotConfig(records=0, check_seconds=0.01))
        with anyio.fail_after(20):
            while not snapshot.candidates(data_dir / snapshot.DIRECTORY):
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    switch.journal.close()
    niceness, policy = map(int, seen.read_text().split())
    assert niceness == min(parent + NICENESS, NICENESS_MAX)
    assert policy == os.SCHED_IDLE  # runs only when the CPU would otherwise idle
    # The switch itself keeps its priority and policy.
    assert os.nice(0) == parent
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_a_snapshot_holds_every_card_and_e_card_binding_as_it_was(
    data_dir: Path, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    keys = KeyStore.load(data_dir)
    engine = switch.engine
    card = engine.cards["X00000007"]
    card.debt_fen, card.purse_fen = 130, 77  # values the demo data never has
    card.status = CardStatus.SUSPENDED
    engine.transit = {"X00000007": TRANSIT, "X00000008": TransitState(rides_month=202611)}
    data = snapshot.encode(engine, 1, bytes(16), keys.journal)
    switch.journal.close()
    path = data_dir / "copy.snapshot"
    path.write_bytes(data)

    loaded = snapshot.read(path, keys.journal, keys.terminals)

    assert loaded is not None
    again = loaded.engine
    slots = Card.__slots__
    assert {n: [getattr(c, s) for s in slots] for n, c in again.cards.items()} == {
        n: [getattr(c, s) for s in slots] for n, c in engine.cards.items()
    }
    assert type(again.cards["X00000007"].status) is CardStatus
    assert again.transit == engine.transit
    assert type(again.transit["X00000007"]) is TransitState
    bindings = again.ecard.by_card
    assert {n: (b.token, b.level) for n, b in bindings.items()} == {
        n: (b.token, b.level) for n, b in engine.ecard.by_card.items()
    }
    # One binding object per e-card, reachable by card and by token, as before the snapshot.
    assert all(again.ecard.by_token[b.token] is b for b in bindings.values())
    assert len(again.ecard.by_token) == len(bindings) > 0
    # The terminal keys come from keys.json, not from the file.
    assert again.terminals["G0001"].key.verify(b"x", MacKey(keys.terminals["G0001"]).sign(b"x"))
    assert keys.terminals["G0001"] not in pickled(data)


def test_a_class_that_changes_shape_cannot_be_written_as_rows() -> None:
    class Moved:
        __slots__ = ("card", "level", "pin", "token")

    with pytest.raises(snapshot.RowsError):
        snapshot.Rows(Moved, {"card": str, "token": bytes, "level": int})


def test_the_snapshot_policy_comes_from_the_configuration_file(tmp_path: Path) -> None:
    path = tmp_path / "switch.toml"
    path.write_text("[snapshots]\nrecords = 100000\ncheck_seconds = 5\n")
    assert load_config(path).snapshots == SnapshotConfig(records=100_000, check_seconds=5.0)
    assert load_config(None).snapshots.records == 500_000
    for bad in ("records = -1", "check_seconds = 0", 'records = "many"', "every = 3"):
        path.write_text(f"[snapshots]\n{bad}\n")
        with pytest.raises(ConfigError, match="snapshots"):
            load_config(path)


async def test_no_snapshot_before_the_configured_number_of_records(
    data_dir: Path, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    policy = SnapshotConfig(records=2, check_seconds=0.01)
    directory = data_dir / snapshot.DIRECTORY
    async with anyio.create_task_group() as group:
        group.start_soon(switch.journal.run)
        group.start_soon(take_snapshots, switch, policy)
        await anyio.sleep(0.2)  # twenty checks with nothing journalled
        assert not snapshot.candidates(directory)
        switch.submit([CardStatusChanged(clock(), "X00000001", CardStatus.SUSPENDED.value, "desk")])
        await anyio.sleep(0.2)  # one record is still one short
        assert not snapshot.candidates(directory)
        switch.submit([CardStatusChanged(clock(), "X00000001", CardStatus.ACTIVE.value, "desk")])
        with anyio.fail_after(20):
            while not snapshot.candidates(directory):
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    switch.journal.close()


def test_a_version_3_snapshot_with_pickled_transit_states_is_still_read(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    switch.engine.transit = {"X00000009": TRANSIT}
    keys = KeyStore.load(data_dir)

    class Unencoded:  # version 3 left the states to pickle
        @staticmethod
        def encode(transit: dict[str, TransitState]) -> dict[str, TransitState]:
            return transit

    position, chain = switch.journal.appended_position, switch.journal.last_chain
    with monkeypatch.context() as patch:
        patch.setattr(snapshot, "_TRANSIT_ENCODER", Unencoded)
        current = snapshot.encode(switch.engine, position, chain, keys.journal)
    switch.journal.close()
    path = data_dir / snapshot.DIRECTORY / f"{position:020d}{snapshot.SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Version 3's payload was not compressed either.
    path.write_bytes(snapshot.sealed(3, position, chain, keys.journal, pickled(current)))
    assert snapshot.HEADER.unpack_from(path.read_bytes(), 0)[1] == 3
    loaded = snapshot.read(path, keys.journal, keys.terminals)
    assert loaded is not None and loaded.engine.transit == {"X00000009": TRANSIT}
    again = open_switch(data_dir, CONFIG, clock)  # and a restart resumes from it
    again.journal.close()
    assert again.engine.transit == {"X00000009": TRANSIT}


def test_snapshots_are_compressed_and_an_uncompressed_version_4_is_still_read(
    data_dir: Path, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    switch.engine.transit = {"X00000009": TRANSIT}
    switch.engine.cards["X00000009"].purse_fen = 4321
    keys = KeyStore.load(data_dir)
    position, chain = switch.journal.appended_position, switch.journal.last_chain
    current = snapshot.encode(switch.engine, position, chain, keys.journal)
    switch.journal.close()
    assert snapshot.HEADER.unpack_from(current, 0)[1] == snapshot.FORMAT_VERSION == 5
    # One Zstandard frame, and much smaller than what it holds (the demo's rows repeat).
    payload = current[snapshot.HEADER.size :]
    assert payload.startswith(b"\x28\xb5\x2f\xfd")
    assert len(payload) * 2 < len(pickled(current))

    path = data_dir / snapshot.DIRECTORY / f"{position:020d}{snapshot.SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(snapshot.sealed(4, position, chain, keys.journal, pickled(current)))
    loaded = snapshot.read(path, keys.journal, keys.terminals)
    assert loaded is not None and loaded.engine.transit == {"X00000009": TRANSIT}
    again = open_switch(data_dir, CONFIG, clock)  # and a restart resumes from it
    again.journal.close()
    assert again.snapshot_position == position
    assert again.engine.cards["X00000009"].purse_fen == 4321


def test_a_compressed_payload_is_authenticated_before_it_is_decompressed(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    keys = KeyStore.load(data_dir)
    data = snapshot.encode(switch.engine, 1, bytes(16), keys.journal)
    switch.journal.close()
    path = data_dir / "forged.snapshot"
    # 64 MiB of zeros in a few kilobytes, under a MAC made with another key.
    bomb = zstandard.ZstdCompressor().compress(bytes(64 * 1024 * 1024))
    path.write_bytes(snapshot.sealed(5, 1, bytes(16), b"x" * 32, bomb))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("decompressed before its MAC was checked")

    monkeypatch.setattr(zstandard.ZstdDecompressor, "decompress", refuse)
    assert snapshot.read(path, keys.journal, keys.terminals) is None
    monkeypatch.undo()
    path.write_bytes(data)
    assert snapshot.read(path, keys.journal, keys.terminals) is not None


def test_encoding_a_snapshot_sets_off_no_garbage_collection(
    data_dir: Path, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    switch.journal.close()
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.set_threshold(1)  # as if each row tuple were the one that sets a pass off
    gc.callbacks.append(count)
    try:
        snapshot.encode(switch.engine, 1, bytes(16), b"k" * 32)
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*DEFAULT_GC_THRESHOLDS)
    assert passes == []
    assert gc.isenabled()  # and the collector is back on afterwards
