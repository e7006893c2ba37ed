"""Deterministic simulation of the partner-bank path, on top of the engine and journal's.

`BankPathSimulator` runs everything `switch.simulation.Simulator` runs (terminals, the
journal on a simulated disk, crashes, torn writes, fsync failures, clock jumps) and adds
merchants speaking ISO 8583 to the real acquirer and bank core (switch.banks.core), which
talks to simulated bank hosts (switch.banks.simulator.BankHost, the same bank the tests and
`onecard banksim` use) over simulated links. Every message goes through the real codec and
MAC both ways. As in the runtime (switch.banks.runtime), the core's records are journalled
and its answers and bank messages leave only once they are durable.

Bank faults, all chosen by the one seeded generator:
    - requests and store-and-forward messages the bank never acts on;
    - answers lost, duplicated, and delivered in any order and at any later time, so that
      many arrive after their request timed out (late replies);
    - the bank acting on messages in any order (a reversal before its original);
    - links going down and coming back (what was on the wire may or may not have reached
      the bank; its answers are lost), which makes the core stand in and queue advices;
    - crashes of the switch in the middle of all this: what was on the wire still reaches
      the bank, the answers are lost, and the next run must finish what the journal holds.

Invariants, on top of the engine and journal's:
    - an answer a merchant received never changes, and after any crash the journal holds
      it exactly as sent; no ISO request (terminal, DE11, DE7) is decided twice;
    - every reversal or advice a bank receives was journalled first, and every request a
      bank receives was journalled as sent; a store-and-forward message is sent with the
      original MTI at most once, every later send carries the repeat MTI;
    - the switch never queues two reversals of one bank payment (no double reversal), and
      advises each stand-in approval exactly once;
    - queues stay within their bounds (SAF_ENTRIES_MAX, PENDING_PER_BANK_MAX);
    - money: whenever a bank has nothing pending and its store-and-forward queue is
      empty, its ledger for every card equals what the switch's journal says the card's
      bank account moved;
    - at the end, with faults stopped, every queue drains within a bounded time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protocols.iso8583.codec import IsoCodec, IsoMessage, decode_message, encode_message
from protocols.iso8583.mac import MacKey
from protocols.iso8583.messages import (
    STAN_MODULUS,
    TERMINAL_ID_LENGTH,
    Mti,
    base_mti,
    is_repeat,
    original_data,
    transmission_time,
)
from switch.banks.config import BankLink, BanksConfig, OnTimeout
from switch.banks.core import PENDING_PER_BANK_MAX, SAF_ENTRIES_MAX, Acquirer, Effects
from switch.banks.records import BankRequestSent, IsoPayment, SafQueued
from switch.banks.simulator import BankHost
from switch.demo import PARTNER_BANKS, card_number
from switch.engine import Engine
from switch.journal.records import Record
from switch.simulation import CARDS, POS, Faults, Simulator, Statistics

BANKS = tuple(sorted(PARTNER_BANKS))
# Short, so that timeouts, late replies and stand-in are common in a few thousand steps.
BANK_TIMEOUT_MS = 2_000
# Low, so that the floor is reached and stand-in also declines.
STANDIN_FLOOR_FEN = 20_000
# Two banks decline on a timeout, two stand in: both paths run in every simulation.
BANKS_CONFIG = BanksConfig(
    links=[
        BankLink(
            bank,
            timeout_ms=BANK_TIMEOUT_MS,
            on_timeout=OnTimeout.STANDIN if number % 2 else OnTimeout.DECLINE,
            standin_floor_fen=STANDIN_FLOOR_FEN,
        )
        for number, bank in enumerate(BANKS)
    ],
    default_route=BANKS[0],
)
# A merchant retransmits or reverses only one of its latest requests: well inside the
# switch's per-terminal window of ISO outcomes (the simulator's IDEMPOTENCY_WINDOW, 64), as
# a real terminal retransmits within seconds.
RECENT_REQUESTS = 12
MESSAGES_PER_READ_MAX = 3
# How long time moves in one step; the bank timeout (2 s) falls among them.
TIME_STEPS_MS = (50, 300, 900, 1_800, 2_500, 7_000)
# With faults stopped at the end, every queue must drain within this many rounds (each
# round moves the clock by a minute, the store-and-forward backoff's ceiling).
DRAIN_ROUNDS_MAX = 20
DRAIN_ROUND_MS = 60_000

AcquirerFactory = Callable[[Engine, BanksConfig], Acquirer]


@dataclass
class BankFaults:
    """How often each bank fault strikes (0..1), per message or per step."""

    ignored: float = 0.04  # the bank never acts on a message
    answer_lost: float = 0.08
    answer_duplicated: float = 0.08
    link_toggle: float = 0.04  # per bank step: a link goes down, or comes back
    reaches_bank_anyway: float = 0.5  # what was on the wire when the link broke


@dataclass
class BankStatistics:
    iso_requests: int = 0
    iso_retransmissions: int = 0
    iso_reversals: int = 0
    iso_answers: int = 0
    bank_messages: int = 0
    bank_answers: int = 0
    ignored: int = 0
    answers_lost: int = 0
    answers_duplicated: int = 0
    links_down: int = 0
    saf_sent: int = 0
    saf_repeats: int = 0
    drained_checks: int = 0


@dataclass
class _Merchant:
    """A POS speaking ISO 8583: its latest requests and every answer it was given."""

    terminal_id: str
    key: MacKey
    stan: int = 0
    recent: list[dict[str, str]] = field(default_factory=list)
    answered: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    inbox: list[bytes] = field(default_factory=list)

    def deliver(self, data: bytes) -> None:
        self.inbox.append(data)

    def next_stan(self) -> str:
        self.stan += 1
        return f"{self.stan:06d}"


@dataclass
class _Bank:
    host: BankHost
    key: MacKey
    up: bool = True
    to_bank: list[dict[str, str]] = field(default_factory=list)
    to_switch: list[dict[str, str]] = field(default_factory=list)


class _Ledger:
    """What the journal says about the bank path, built from its records: live as they are
    appended, and again from the replay after each crash. Adding a record checks the rules
    one record can break."""

    def __init__(self) -> None:
        # Every ISO request decided: (terminal, DE11, DE7) → (DE39, DE37) of its answer.
        self.answers: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.bank_moved_fen: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.sent: set[tuple[str, int]] = set()  # (bank, RRN) of requests sent
        self.saf: dict[tuple[str, str], SafQueued] = {}  # (bank, DE11) → entry
        self.reversals: set[tuple[str, int]] = set()  # (bank, RRN reversed)
        self.advices: set[tuple[str, int]] = set()
        self.standins: list[IsoPayment] = []

    def add(self, record: Record) -> str | None:
        """The first rule `record` breaks, or None."""
        if type(record) is IsoPayment:
            key = (record.terminal_id, record.stan, record.transmission)
            if key in self.answers:
                return f"ISO request {key} decided twice"
            self.answers[key] = (record.code, f"{record.reference:012d}")
            if record.bank_fen:
                self.bank_moved_fen[record.bank_id][record.card] += record.bank_fen
            if record.standin and record.code == "00":
                self.standins.append(record)
        elif type(record) is BankRequestSent:
            self.sent.add((record.bank_id, record.reference))
        elif type(record) is SafQueued:
            self.saf[record.bank_id, f"{record.entry % STAN_MODULUS:06d}"] = record
            about = (record.bank_id, record.reference)
            if record.mti == Mti.REVERSAL:
                if about in self.reversals:
                    return f"bank payment {about} reversed twice"
                self.reversals.add(about)
            else:
                if about in self.advices:
                    return f"bank payment {about} advised twice"
                self.advices.add(about)
        return None


class BankPathSimulator(Simulator):
    COMMAND = "onecard simulate --banks"

    def __init__(
        self,
        seed: int,
        directory: Path,
        *,
        faults: Faults | None = None,
        bank_faults: BankFaults | None = None,
        acquirer_factory: AcquirerFactory = Acquirer,
    ) -> None:
        super().__init__(seed, directory, faults=faults)
        self.bank_faults = bank_faults or BankFaults()
        self.acquirer_factory = acquirer_factory
        self.bank_statistics = BankStatistics()
        self.ledger = _Ledger()  # the genesis holds no bank records
        self._replayed = _Ledger()
        self.merchants = [_Merchant(tid, MacKey(self.keys.terminals[tid])) for tid in POS]
        self.banks = {
            link.id: _Bank(BankHost(link.id), MacKey(link.mac_key)) for link in BANKS_CONFIG.links
        }
        # (bank, DE11) of every store-and-forward message that went out, in any run.
        self.saf_ever_sent: set[tuple[str, str]] = set()
        # Effects waiting for their journal position to be durable.
        self.outbox: list[tuple[int, Effects]] = []
        self.acquirer = self._start_acquirer()

    # -- steps -----------------------------------------------------------------------------

    def _traffic(self, roll: float) -> None:
        if roll < 0.3:
            self._write()
        elif roll < 0.5:
            self._send(self.rng.choice(list(self.terminals.values())))
        else:
            self._bank_step()

    def _bank_step(self) -> None:
        rng = self.rng
        roll = rng.random()
        bank_id = rng.choice(BANKS)
        if roll < self.bank_faults.link_toggle:
            self._toggle_link(bank_id)
        elif roll < 0.35:
            self._merchant_sends(rng.choice(self.merchants))
        elif roll < 0.55:
            self._bank_acts(bank_id)
        elif roll < 0.8:
            self._bank_answers(bank_id)
        else:
            step_ms = rng.choice(TIME_STEPS_MS)
            self.now_ms += step_ms
            self.trace.append(f"time +{step_ms} ms")
            self._dispatch(self.acquirer.tick(self.now_ms))

    def step(self) -> None:
        super().step()
        self._check_bounds()
        self._check_money(drained_only=True)

    def _merchant_sends(self, merchant: _Merchant) -> None:
        rng = self.rng
        requests: list[dict[str, str]] = []
        for _ in range(rng.randint(1, MESSAGES_PER_READ_MAX)):
            roll = rng.random()
            if merchant.recent and roll < 0.2:
                requests.append(rng.choice(merchant.recent))
                self.bank_statistics.iso_retransmissions += 1
                continue
            request = {
                "t": Mti.FINANCIAL,
                "7": transmission_time(self.now_ms),
                "11": merchant.next_stan(),
                "41": merchant.terminal_id.ljust(TERMINAL_ID_LENGTH),
            }
            purchases = [r for r in merchant.recent if r["t"] == Mti.FINANCIAL]
            if purchases and roll < 0.35:
                original = rng.choice(purchases)
                request["t"] = Mti.REVERSAL
                request["90"] = original_data(original["t"], original["11"], original["7"])
                self.bank_statistics.iso_reversals += 1
            else:
                amount = rng.choice([rng.randint(1, 3_000), rng.randint(3_000, 30_000)])
                request["2"] = card_number(rng.randint(1, CARDS + 1))  # one past: unknown
                request["3"] = "000000"  # purchase from the default account: the bank's
                request["4"] = f"{amount:012d}"
            merchant.recent = [*merchant.recent, request][-RECENT_REQUESTS:]
            requests.append(request)
        self.bank_statistics.iso_requests += len(requests)
        self.trace.append(
            f"{merchant.terminal_id} ISO {[(r['t'], r['11'], r.get('4', '')) for r in requests]}"
        )
        codec = IsoCodec()
        codec.receive_data(b"".join(encode_message(r, merchant.key) for r in requests))
        self._dispatch(self.acquirer.requests(codec.next_messages(), merchant, self.now_ms))

    def _bank_acts(self, bank_id: str) -> None:
        """The bank takes some of what is on the wire, in any order, and answers."""
        bank = self.banks[bank_id]
        if not bank.to_bank:
            return
        self.rng.shuffle(bank.to_bank)
        count = self.rng.randint(1, len(bank.to_bank))
        taken, bank.to_bank = bank.to_bank[:count], bank.to_bank[count:]
        self.trace.append(f"{bank_id} acts on {[(m['t'], m.get('37')) for m in taken]}")
        for fields in taken:
            answer = self._bank_handles(bank, fields)
            if answer is None:
                continue
            roll = self.rng.random()
            if roll < self.bank_faults.answer_lost:
                self.bank_statistics.answers_lost += 1
                continue
            bank.to_switch.append(answer)
            if roll < self.bank_faults.answer_lost + self.bank_faults.answer_duplicated:
                self.bank_statistics.answers_duplicated += 1
                bank.to_switch.append(answer)

    def _bank_handles(self, bank: _Bank, fields: dict[str, str]) -> dict[str, str] | None:
        if self.rng.random() < self.bank_faults.ignored:
            self.bank_statistics.ignored += 1
            return None
        message = self._on_the_wire(fields, bank.key)
        self.bank_statistics.bank_messages += 1
        return bank.host.handle(message)

    def _bank_answers(self, bank_id: str) -> None:
        """Some of the bank's answers reach the switch, in any order."""
        bank = self.banks[bank_id]
        if not bank.up or not bank.to_switch:
            return
        self.rng.shuffle(bank.to_switch)
        count = self.rng.randint(1, len(bank.to_switch))
        taken, bank.to_switch = bank.to_switch[:count], bank.to_switch[count:]
        self.trace.append(
            f"{bank_id} answers {[(m['t'], m.get('37'), m.get('39')) for m in taken]}"
        )
        for fields in taken:
            self.bank_statistics.bank_answers += 1
            message = self._on_the_wire(fields, bank.key)
            self._dispatch(self.acquirer.bank_message(bank_id, message, self.now_ms))

    def _toggle_link(self, bank_id: str) -> None:
        bank = self.banks[bank_id]
        if bank.up:
            bank.up = False
            self.bank_statistics.links_down += 1
            self.trace.append(f"{bank_id} link down")
            self._connection_lost(bank)
            self._dispatch(self.acquirer.link_down(bank_id, self.now_ms))
        else:
            bank.up = True
            self.trace.append(f"{bank_id} link up")
            self._dispatch(self.acquirer.link_up(bank_id, self.now_ms))

    def _connection_lost(self, bank: _Bank) -> None:
        """What was on the wire may reach the bank, which acts on it; its answers are lost
        with the connection."""
        on_the_wire, bank.to_bank = bank.to_bank, []
        for fields in on_the_wire:
            if self.rng.random() < self.bank_faults.reaches_bank_anyway:
                self._bank_handles(bank, fields)
        bank.to_switch.clear()

    def _on_the_wire(self, fields: dict[str, str], key: MacKey) -> IsoMessage:
        """A message as the other end reads it: encoded, signed, decoded, verified."""
        message = decode_message(encode_message(fields, key)[2:])
        if not message.verify(key):
            self._fail(f"{fields['t']} does not verify with its link's key")
        return message

    # -- the runtime's part: journal first, then send ---------------------------------------

    def _dispatch(self, effects: Effects) -> None:
        if not effects:
            return
        for record in effects.records:
            self._ledger_add(self.ledger, record)
        position = self.journal.append(effects.records)
        if effects.answers or effects.to_banks:
            self.outbox.append((position, effects))

    def _deliver(self) -> None:
        super()._deliver()
        durable = self.journal.durable_position
        waiting = []
        for position, effects in self.outbox:
            if position > durable:
                waiting.append((position, effects))
                continue
            for sink, data in effects.answers:
                sink.deliver(data)
            for bank_id, fields in effects.to_banks:
                self._to_bank(bank_id, fields)
        self.outbox = waiting
        for merchant in self.merchants:
            for data in merchant.inbox:
                self._merchant_receives(merchant, data)
            merchant.inbox.clear()

    def _merchant_receives(self, merchant: _Merchant, data: bytes) -> None:
        message = decode_message(data[2:])
        if not message.verify(merchant.key):
            self._fail(f"{merchant.terminal_id}: answer MAC failed: {message.fields}")
        fields = message.fields
        key = (fields["11"], fields["7"])
        told = (fields["39"], fields.get("37", ""))
        before = merchant.answered.setdefault(key, told)
        self.bank_statistics.iso_answers += 1
        if before != told:
            self._fail(f"{merchant.terminal_id} ISO {key} answered {before} and then {told}")

    def _to_bank(self, bank_id: str, fields: dict[str, str]) -> None:
        """The link writes a message: first, what it may carry."""
        mti, stan, rrn = fields["t"], fields["11"], int(fields["37"])
        if base_mti(mti) in (Mti.AUTHORISATION, Mti.FINANCIAL):
            if (bank_id, rrn) not in self.ledger.sent:
                self._fail(f"request {rrn} went to {bank_id} before it was journalled")
        else:
            entry = self.ledger.saf.get((bank_id, stan))
            if entry is None or entry.reference != rrn or entry.mti != base_mti(mti):
                self._fail(f"{mti} {stan} for {rrn} went to {bank_id} but was never journalled")
            first_time = (bank_id, stan) not in self.saf_ever_sent
            if not first_time and not is_repeat(mti):
                self._fail(f"{mti} {stan} for {rrn} sent to {bank_id} again without repeat MTI")
            self.saf_ever_sent.add((bank_id, stan))
            self.bank_statistics.saf_sent += 1
            self.bank_statistics.saf_repeats += is_repeat(mti)
        bank = self.banks[bank_id]
        if bank.up:  # a link that is down drops what it is given (BankLinkRunner.send_nowait)
            bank.to_bank.append(fields)

    # -- crash and the checks --------------------------------------------------------------

    def _ledger_add(self, ledger: _Ledger, record: Record) -> None:
        broken = ledger.add(record)
        if broken is not None:
            self._fail(broken)

    def _audit(self, record: Record) -> None:
        self._ledger_add(self._replayed, record)

    def _crash_and_recover(self, why: str) -> None:
        self._replayed = _Ledger()
        super()._crash_and_recover(why)
        self.ledger, self._replayed = self._replayed, _Ledger()
        self.outbox = []  # answers and bank messages not yet sent died with the process
        for bank in self.banks.values():
            self._connection_lost(bank)
        for merchant in self.merchants:
            for key, told in merchant.answered.items():
                recorded = self.ledger.answers.get((merchant.terminal_id, *key))
                if recorded != told:
                    self._fail(
                        f"{merchant.terminal_id} ISO {key} was answered {told}; journal: {recorded}"
                    )
        advised = self.ledger.advices
        for payment in self.ledger.standins:
            if (payment.bank_id, payment.bank_reference) not in advised:
                self._fail(f"stand-in approval {payment.reference} is never advised")
        self.acquirer = self._start_acquirer()

    def _start_acquirer(self) -> Acquirer:
        """A new process's bank core: requests left at a bank are reversed, links sign on."""
        acquirer = self.acquirer_factory(self.engine, BANKS_CONFIG)
        self._dispatch(acquirer.recover(self.now_ms))
        for bank_id, bank in self.banks.items():
            if bank.up:
                self._dispatch(acquirer.link_up(bank_id, self.now_ms))
        return acquirer

    def _check_bounds(self) -> None:
        state = self.engine.payments
        pending = Counter(sent.bank_id for sent in state.pending.values())
        for bank_id in BANKS:
            if len(state.saf.get(bank_id, {})) > SAF_ENTRIES_MAX:
                self._fail(f"{bank_id}: store-and-forward queue over {SAF_ENTRIES_MAX}")
            if pending[bank_id] > PENDING_PER_BANK_MAX:
                self._fail(f"{bank_id}: {pending[bank_id]} requests pending")

    def _check_money(self, *, drained_only: bool) -> None:
        """Each bank that owes nothing more (no request pending, its queue empty) holds
        exactly what the switch says it moved, card by card."""
        state = self.engine.payments
        busy = {sent.bank_id for sent in state.pending.values()}
        for bank_id, bank in self.banks.items():
            drained = bank_id not in busy and not state.saf.get(bank_id)
            if not drained:
                if drained_only:
                    continue
                self._fail(f"{bank_id}: still owed {len(state.saf.get(bank_id, {}))} messages")
            self.bank_statistics.drained_checks += 1
            moved = self.ledger.bank_moved_fen[bank_id]
            host = bank.host
            for card in set(moved) | set(host.balances):
                at_bank = host.balance(card) - host.balance_fen_default
                if at_bank != moved[card]:
                    self._fail(
                        f"{bank_id} card {card}: the bank moved {at_bank} fen, "
                        f"the switch's journal {moved[card]}"
                    )

    # -- the end ---------------------------------------------------------------------------

    def run(self, steps: int) -> Statistics:
        for _ in range(steps):
            self.step()
        self._drain()
        self._crash_and_recover("final check")
        self._check_money(drained_only=False)
        return self.statistics

    def _drain(self) -> None:
        """Faults stop and every link comes up: within DRAIN_ROUNDS_MAX minutes, every
        request must be decided and every reversal and advice acknowledged."""
        self.trace.append("faults stop: drain")
        self.faults = self.disk.faults = Faults(0, 0, 0, 0, 0, 0)
        self.bank_faults = BankFaults(0, 0, 0, 0, 1)
        for bank_id, bank in self.banks.items():
            if not bank.up:
                self._toggle_link(bank_id)
        for _ in range(DRAIN_ROUNDS_MAX):
            self._write()
            while self.outbox or any(b.to_bank or b.to_switch for b in self.banks.values()):
                for bank_id in BANKS:
                    self._bank_acts(bank_id)
                    self._bank_answers(bank_id)
                self._write()
            state = self.engine.payments
            if not state.pending and not state.saf_depth():
                return
            self.now_ms += DRAIN_ROUND_MS
            self.trace.append(f"time +{DRAIN_ROUND_MS} ms")
            self._dispatch(self.acquirer.tick(self.now_ms))
        self._fail(
            f"queues did not drain in {DRAIN_ROUNDS_MAX} rounds without faults: "
            f"{len(self.engine.payments.pending)} pending, {self.engine.payments.saf_depth()} "
            "reversals and advices queued"
        )
