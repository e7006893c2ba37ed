"""Deterministic simulation: the engine and the journal under faults, from one seed.

The real engine decides requests that simulated terminals send through the real codec; the
real journal writes them to files whose durability the simulation controls (its own sync
function records exactly which bytes a crash may keep). One random generator, seeded,
chooses every step, so a failing seed reproduces exactly and prints the steps that led
there. Faults: crashes at any point (losing unsynced bytes, or keeping a random torn prefix
of them with garbage), fsync failures (which must stop the switch), clock jumps forward and
back, retries of answered and unanswered requests (duplicates), requests reordered within
a batch, and loss reports arriving between batches.

Invariants, checked as the run goes:
    - an answer a terminal received never changes: a retry gets it again, byte for byte;
    - every answer a terminal received is in the journal after any crash, exactly as sent;
    - no (terminal, seq) is decided twice; no reversal returns money twice;
    - money is conserved: each purse is its issue amount plus what its decisions moved;
    - no purse is ever negative; the caches are exactly a replay of the journal.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from protocols.terminal import (
    Balance,
    ClientCodec,
    MacKey,
    Purchase,
    Request,
    Response,
    Reversal,
    ServerCodec,
    Tap,
)
from protocols.terminal.codec import encode_request
from protocols.terminal.mac import key_check_value
from switch.config import EngineConfig
from switch.demo import DemoSpec, card_number, demo_records
from switch.engine import Engine
from switch.errors import JournalFailed
from switch.journal import Journal, Record, recover
from switch.journal.records import CardIssued, CardStatusChanged, Decision, TerminalRegistered
from switch.journal.segment import segment_paths
from switch.keystore import KeyStore

CARDS = 24
GATES = ("G0001", "G0002", "G0003")
POS = ("P0001", "P0002")
# Small on purpose: retries and reversals then meet the window's edge often.
IDEMPOTENCY_WINDOW = 64
BATCH_MAX = 8
TRACE_SHOWN = 40
# Monday 2026-11-30 10:00 in Shiyan.
START_MS = 1_796_004_000_000


class InvariantViolation(AssertionError):
    pass


class SimulatedCrash(Exception):
    """Power lost while the writer was syncing."""


@dataclass
class Faults:
    """How often each fault strikes, per step or per sync (0..1)."""

    crash: float = 0.003
    crash_during_sync: float = 0.01
    fsync_failure: float = 0.005
    torn_garbage: float = 0.5
    clock_jump: float = 0.05
    loss_report: float = 0.02


@dataclass
class Statistics:
    steps: int = 0
    crashes: int = 0
    torn_tails: int = 0
    fsync_failures: int = 0
    clock_jumps: int = 0
    retries: int = 0
    requests: int = 0
    acknowledged: int = 0
    decisions: int = 0


@dataclass
class _Terminal:
    terminal_id: str
    key: bytes
    next_seq: int = 1
    sent: dict[int, Request] = field(default_factory=dict)
    answered: dict[int, Response] = field(default_factory=dict)


class _SimulatedDisk:
    """The sync function the journal calls, and what a crash keeps of each file."""

    def __init__(self, rng: random.Random, faults: Faults, statistics: Statistics) -> None:
        self.rng = rng
        self.faults = faults
        self.statistics = statistics
        self.durable_bytes: dict[str, int] = {}
        # Off while the genesis is written: a run starts from a journal on disk.
        self.armed = False

    def sync(self, fd: int) -> None:
        roll = self.rng.random()
        if self.armed and roll < self.faults.crash_during_sync:
            raise SimulatedCrash
        if self.armed and roll < self.faults.crash_during_sync + self.faults.fsync_failure:
            self.statistics.fsync_failures += 1
            raise OSError(5, "simulated EIO on fdatasync")
        path = os.readlink(f"/proc/self/fd/{fd}")
        # The writer writes at the file's position: everything before it is now on disk
        # (the file itself is longer: its segment is preallocated).
        self.durable_bytes[path] = os.lseek(fd, 0, os.SEEK_CUR)

    def crash(self, directory: Path) -> None:
        """Each file keeps its synced bytes and, maybe, a torn prefix of the rest; the
        preallocated space after that reads as zeros, as a real crash leaves it."""
        for path in segment_paths(directory):
            data = bytearray(path.read_bytes())
            # The end of what was written: zeros after it are preallocated space. (A record
            # ending in zero bytes makes this short, which only ever shortens the torn part.)
            written = len(data.rstrip(b"\0"))
            durable = self.durable_bytes.get(str(path), written)  # created and synced whole
            if written <= durable:
                continue
            kept = durable + self.rng.randrange(written - durable + 1)
            data[kept:] = bytes(len(data) - kept)
            if kept > durable and self.rng.random() < self.faults.torn_garbage:
                at = self.rng.randrange(durable, kept)
                data[at] ^= 1 + self.rng.randrange(255)
            path.write_bytes(bytes(data))
            if kept > durable:
                self.statistics.torn_tails += 1
            self.durable_bytes[str(path)] = kept


class Simulator:
    # What replays a run (printed with a failure).
    COMMAND = "onecard simulate"

    def __init__(
        self,
        seed: int,
        directory: Path,
        *,
        faults: Faults | None = None,
        engine_factory: Callable[[EngineConfig, dict[str, bytes]], Engine] = Engine,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.directory = directory
        self.faults = faults or Faults()
        self.engine_factory = engine_factory
        self.statistics = Statistics()
        self.trace: list[str] = []
        self.config = EngineConfig(idempotency_window=IDEMPOTENCY_WINDOW)
        self.keys = KeyStore(holder_secret=self.rng.randbytes(32), journal=self.rng.randbytes(32))
        # Demo keys come from the system's random source: replace them with seeded ones
        # after the records are made, so that only the seed decides a run.
        genesis = demo_records(
            DemoSpec(cards=CARDS, gates=len(GATES), pos=len(POS), seed=seed), self.keys, self.config
        )
        self.keys.terminals = {tid: self.rng.randbytes(16) for tid in sorted(self.keys.terminals)}
        self.genesis = [_rekeyed(record, self.keys) for record in genesis]
        self.issued_fen = {r.card: r.purse_fen for r in self.genesis if type(r) is CardIssued}
        self.terminals = {tid: _Terminal(tid, self.keys.terminals[tid]) for tid in (*GATES, *POS)}
        self.now_ms = START_MS
        self.disk = _SimulatedDisk(self.rng, self.faults, self.statistics)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        self.unanswered: list[tuple[str, Response, int]] = []
        self.engine, self.journal = self._open()
        for record in self.genesis:
            self.engine.apply(record)
        self.journal.append(self.genesis)
        self.journal.write_now()  # the genesis is on disk before any fault may strike
        self.disk.armed = True

    # -- running ---------------------------------------------------------------------------

    def run(self, steps: int) -> Statistics:
        for _ in range(steps):
            self.step()
        self._crash_and_recover("final check")
        return self.statistics

    def step(self) -> None:
        self.statistics.steps += 1
        roll = self.rng.random()
        faults = self.faults
        if roll < faults.crash:
            self._crash_and_recover("crash")
        elif roll < faults.crash + faults.clock_jump:
            self._jump_clock()
        elif roll < faults.crash + faults.clock_jump + faults.loss_report:
            self._status_change()
        else:
            self._traffic(roll)
        for card in self.engine.cards.values():
            if card.purse_fen < 0:
                self._fail(f"card {card.number} purse is negative: {card.purse_fen}")

    def _traffic(self, roll: float) -> None:
        """A step without a fault: the writer writes a group, or a terminal sends."""
        if roll < 0.45:
            self._write()
        else:
            self._send(self.rng.choice(list(self.terminals.values())))

    # -- steps -----------------------------------------------------------------------------

    def _send(self, terminal: _Terminal) -> None:
        rng = self.rng
        requests: list[Request] = []
        for _ in range(rng.randint(1, BATCH_MAX)):
            if terminal.sent and rng.random() < 0.25:
                old = terminal.sent[rng.choice(list(terminal.sent))]
                requests.append(old)  # a retry, answered or not
                self.statistics.retries += 1
            else:
                requests.append(self._new_request(terminal))
        rng.shuffle(requests)  # pipelined requests may be decided in any order
        self.statistics.requests += len(requests)
        self.trace.append(
            f"{terminal.terminal_id} sends {[(type(r).__name__, r.seq) for r in requests]}"
        )
        key = MacKey(terminal.key)
        codec = ServerCodec()
        codec.receive_data(b"".join(encode_request(r, key) for r in requests))
        records: list[Record] = []
        out = self.engine.authorise(codec.next_frames(), self.now_ms, records)
        position = self.journal.append(records)
        client = ClientCodec(key)
        client.receive_data(out)
        for response, mac_ok in client.next_responses():
            if not mac_ok:
                self._fail(f"{terminal.terminal_id} seq {response.seq}: answer MAC failed")
            self.unanswered.append((terminal.terminal_id, response, position))

    def _new_request(self, terminal: _Terminal) -> Request:
        rng = self.rng
        seq = terminal.next_seq
        terminal.next_seq += 1
        card = card_number(rng.randint(1, CARDS + 1))  # one past the last: unknown card
        tid = terminal.terminal_id
        request: Request
        choice = rng.random()
        if choice < 0.15 and terminal.sent:
            request = Reversal(tid, seq, self.now_ms, rng.choice(list(terminal.sent)))
        elif choice < 0.25:
            request = Balance(tid, seq, self.now_ms, card)
        elif tid in GATES:
            request = Tap(tid, seq, self.now_ms, card)
        else:
            amount = rng.choice([rng.randint(1, 3000), 0, -5, 25_000])
            request = Purchase(tid, seq, self.now_ms, card, amount)
        terminal.sent[seq] = request
        return request

    def _write(self) -> None:
        try:
            self.journal.write_now()
        except SimulatedCrash:
            self._crash_and_recover("crash during sync")
            return
        except JournalFailed:
            self._crash_and_recover("fsync failed: the switch stops")
            return
        self._deliver()

    def _deliver(self) -> None:
        durable = self.journal.durable_position
        still = []
        for terminal_id, response, position in self.unanswered:
            if position > durable:
                still.append((terminal_id, response, position))
                continue
            terminal = self.terminals[terminal_id]
            before = terminal.answered.get(response.seq)
            if response.code in ("30", "03", "63"):
                continue  # unauthenticated answers are not decisions
            if before is not None and before != response and response.code != "94":
                self._fail(
                    f"{terminal_id} seq {response.seq} answered {before} and then {response}"
                )
            if before is None and response.code != "94":
                terminal.answered[response.seq] = response
                self.statistics.acknowledged += 1
        self.unanswered = still

    def _jump_clock(self) -> None:
        self.statistics.clock_jumps += 1
        jump = self.rng.choice([1_000, 25_000, 4 * 60_000, 3 * 3_600_000, 40 * 86_400_000, -3_000])
        self.now_ms += jump
        self.trace.append(f"clock {jump:+d} ms")

    def _status_change(self) -> None:
        card = card_number(self.rng.randint(1, CARDS))
        status = self.rng.choice(["lost", "active", "temporarily_lost"])
        record = CardStatusChanged(self.now_ms, card, status, "simulated desk")
        self.trace.append(f"status {card} -> {status}")
        self.engine.apply(record)
        self.journal.append([record])

    # -- crash and the checks --------------------------------------------------------------

    def _open(
        self, audit: Callable[[Record], None] = lambda _record: None
    ) -> tuple[Engine, Journal]:
        engine = self.engine_factory(self.config, self.keys.terminals)

        def apply(_index: int, record: Record) -> None:
            audit(record)
            engine.apply(record)

        report = recover(self.directory, apply, self.keys.journal)
        return engine, Journal(self.directory, report, sync=self.disk.sync)

    def _crash_and_recover(self, why: str) -> None:
        self.statistics.crashes += 1
        self.trace.append(f"{why}: recover")
        self.journal.close()
        self.disk.crash(self.directory)
        self.unanswered = []  # answers not yet sent are lost with the process
        decisions: dict[tuple[str, int], list[Decision]] = defaultdict(list)
        moved: Counter[str] = Counter()

        def audit(record: Record) -> None:
            self._audit(record)
            if type(record) is Decision:
                decisions[record.terminal_id, record.seq].append(record)
                moved[record.card] += record.moved_fen

        self.engine, self.journal = self._open(audit)
        self.statistics.decisions = sum(len(found) for found in decisions.values())
        for key, found in decisions.items():
            if len(found) > 1:
                self._fail(f"{key} decided {len(found)} times")
        for terminal in self.terminals.values():
            for seq, response in terminal.answered.items():
                found = decisions.get((terminal.terminal_id, seq), [])
                if not found:
                    self._fail(f"{terminal.terminal_id} seq {seq} was answered but is lost")
                decision = found[0]
                said = (
                    response.code,
                    response.amount_fen,
                    response.balance_fen,
                    response.reference,
                )
                recorded = (
                    decision.code,
                    abs(decision.moved_fen),
                    decision.balance_fen,
                    decision.reference,
                )
                if said != recorded:
                    self._fail(f"{terminal.terminal_id} seq {seq}: told {said}, journal {recorded}")
        for number, issued in self.issued_fen.items():
            expected = issued + moved[number]
            actual = self.engine.cards[number].purse_fen
            if actual != expected:
                self._fail(f"card {number}: purse {actual}, issue + movements = {expected}")
        reversed_originals = Counter(
            (d.terminal_id, d.original_seq)
            for found in decisions.values()
            for d in found
            if d.kind == "reversal" and d.code == "00"
        )
        for original, count in reversed_originals.items():
            if count > 1:
                self._fail(f"{original} reversed {count} times")

    def _audit(self, record: Record) -> None:
        """Sees every record recovery replays after a crash (subclasses check more)."""

    def _fail(self, message: str) -> NoReturn:
        shown = "\n    ".join(self.trace[-TRACE_SHOWN:])
        raise InvariantViolation(
            f"seed {self.seed}, step {self.statistics.steps}: {message}\n"
            f"  last steps:\n    {shown}\n"
            f"  reproduce: {self.COMMAND} --seed {self.seed} --steps {self.statistics.steps}"
        )


def _rekeyed(record: Record, keys: KeyStore) -> Record:
    if type(record) is TerminalRegistered:
        check_value = key_check_value(keys.terminals[record.terminal_id])
        return msgspec.structs.replace(record, key_check_value=check_value)
    return record


def add_simulate_command(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate", help="deterministic simulation of the engine and journal under faults"
    )
    simulate.add_argument("--seed", type=int, default=1, help="first seed")
    simulate.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed on")
    simulate.add_argument("--steps", type=int, default=10_000, help="steps per seed")
    simulate.add_argument(
        "--banks",
        action="store_true",
        help="also merchants over ISO 8583 and partner banks under faults (bank_simulation)",
    )
    simulate.set_defaults(handler=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from switch.bank_simulation import BankPathSimulator  # noqa: PLC0415 - it imports this module

    # Torn tails, link losses and late replies are the point: their log lines are noise.
    logging.getLogger("onecard.journal").setLevel(logging.CRITICAL)
    logging.getLogger("onecard.banks").setLevel(logging.CRITICAL)
    simulator = BankPathSimulator if args.banks else Simulator
    with tempfile.TemporaryDirectory(prefix="onecard-sim-") as scratch:
        for seed in range(args.seed, args.seed + args.seeds):
            run = simulator(seed, Path(scratch) / str(seed))
            try:
                statistics = run.run(args.steps)
            except InvariantViolation as violation:
                print(f"FAILED {violation}")
                return 1
            print(f"seed {seed}: ok {statistics}")
            if isinstance(run, BankPathSimulator):
                print(f"  banks: {run.bank_statistics}")
    return 0
