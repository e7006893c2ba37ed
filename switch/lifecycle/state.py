"""What the engine keeps about the lifecycle beyond each card's status; changed only by
journal records, so a restart rebuilds it exactly.

The card's status itself stays where authorisation reads it (`Engine.cards`); the stage of
a card that exists is derived from it. Applications (cards not produced yet), suspension
flags, PIN hashes and tries, the bank function's status, pending temporary-loss expiries
and replacement links live here.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from switch.errors import StateError
from switch.lifecycle.machine import STAGE_OF_STATUS, Command, Stage
from switch.lifecycle.pins import PIN_TRIES_MAX
from switch.lifecycle.records import (
    BalancesCarried,
    BankFunctionChanged,
    CardApplied,
    LifecycleRecord,
    LifecycleStep,
    MedicalSettled,
    PinSet,
    PinTried,
    PurseRefunded,
)

if TYPE_CHECKING:
    from switch.engine import Engine


class BankStatus:
    ACTIVE = "active"
    LOST = "lost"
    SETTLED = "settled"  # the bank account is closed: what cancellation needs
    ALL = frozenset({ACTIVE, LOST, SETTLED})


@dataclass
class Application:
    card: str
    holder_token: str
    holder_masked: str
    category: str
    basis: str
    time_ms: int


@dataclass
class StoredPin:
    salt: bytes
    digest: bytes
    cost_log2: int
    failures: int = 0

    @property
    def locked(self) -> bool:
        return self.failures >= PIN_TRIES_MAX


@dataclass
class CardFile:
    """Per-card lifecycle facts beyond the status."""

    suspended: bool = False
    bank: str = BankStatus.ACTIVE
    pins: dict[str, StoredPin] = field(default_factory=dict)
    temporary_loss_until_ms: int = 0
    replaced_by: str = ""
    replaces: str = ""
    activated_ms: int = 0


class LifecycleState:
    def __init__(self) -> None:
        self.applications: dict[str, Application] = {}
        self.withdrawn: set[str] = set()
        self.files: dict[str, CardFile] = {}
        # (until_ms, card) of temporary loss reports; stale entries are skipped when due.
        self._expiries: list[tuple[int, str]] = []
        self._by_holder: dict[str, list[str]] | None = None  # built on first use
        self.serial_high = 0
        self.steps_total = 0

    # -- reading -------------------------------------------------------------------------

    def file(self, card: str) -> CardFile:
        found = self.files.get(card)
        if found is None:
            found = self.files[card] = CardFile()
        return found

    def current_card(self, card: str) -> str:
        """The card that holds `card`'s purse now: itself, or the last of its replacements
        (a replacement carries the balances over, BalancesCarried)."""
        found = self.files.get(card)
        while found is not None and found.replaced_by:
            card = found.replaced_by
            found = self.files.get(card)
        return card

    def stage(self, engine: Engine, card: str) -> Stage | None:
        if card in self.applications:
            return Stage.APPLIED
        if card in self.withdrawn:
            return Stage.CANCELLED
        cached = engine.cards.get(card)
        return None if cached is None else STAGE_OF_STATUS[cached.status]

    def cards_of(self, engine: Engine, holder_token: str) -> list[str]:
        """Every card (and application) of a holder, oldest first."""
        if self._by_holder is None:
            index: dict[str, list[str]] = {}
            for number, card in engine.cards.items():
                index.setdefault(card.holder_token, []).append(number)
            for number, application in self.applications.items():
                index.setdefault(application.holder_token, []).append(number)
            self._by_holder = index
        return list(self._by_holder.get(holder_token, ()))

    def _index(self, holder_token: str, card: str) -> None:
        if self._by_holder is not None:
            self._by_holder.setdefault(holder_token, []).append(card)

    def due_expiries(self, now_ms: int) -> list[str]:
        """Cards whose temporary loss report has run out by `now_ms` (pure)."""
        due = []
        for until_ms, card in sorted(self._expiries):
            if until_ms > now_ms:
                break
            if self.files.get(card, CardFile()).temporary_loss_until_ms == until_ms:
                due.append(card)
        return due

    # -- applying ------------------------------------------------------------------------

    def apply(self, record: LifecycleRecord, engine: Engine) -> None:
        if type(record) is LifecycleStep:
            self._step(record, engine)
        elif type(record) is CardApplied:
            if self.stage(engine, record.card) is not None:
                raise StateError(f"card number {record.card} applied for twice")
            self.applications[record.card] = Application(
                record.card,
                record.holder_token,
                record.holder_masked,
                record.category,
                record.basis,
                record.time_ms,
            )
            self._index(record.holder_token, record.card)
            self.serial_high = max(self.serial_high, serial_of(record.card))
        elif type(record) is PinSet:
            self.file(record.card).pins[record.function] = StoredPin(
                record.salt, record.digest, record.cost_log2
            )
        elif type(record) is PinTried:
            pin = self.file(record.card).pins.get(record.function)
            if pin is None:
                raise StateError(f"PIN try on card {record.card} without a PIN")
            pin.failures = 0 if record.ok else pin.failures + 1
        elif type(record) is BankFunctionChanged:
            self.file(record.card).bank = record.status
        elif type(record) is MedicalSettled:
            card = engine.cards[record.card]
            if card.medical_fen != record.amount_fen:
                raise StateError(
                    f"card {record.card}: medical settlement of {record.amount_fen} fen "
                    f"leaves {card.medical_fen - record.amount_fen}"
                )
            card.medical_fen = 0
        elif type(record) is PurseRefunded:
            card = engine.cards[record.card]
            if (card.purse_fen, card.debt_fen) != (record.purse_fen, record.debt_fen):
                raise StateError(f"card {record.card}: refund does not match the purse")
            card.purse_fen = card.debt_fen = 0
            engine.denylist.set_blocked(card.number, engine._blocked(card))
        elif type(record) is BalancesCarried:
            self._carry(record, engine)
        else:
            raise AssertionError(f"unhandled lifecycle record {type(record).__name__}")

    def _step(self, step: LifecycleStep, engine: Engine) -> None:
        # Paired with the check commands.py made before journalling: the stage the step
        # says it left must be the stage the card is in.
        stage = self.stage(engine, step.card)
        if stage is None or stage.value != step.before:
            raise StateError(
                f"card {step.card}: step {step.command} from {step.before}, is {stage}"
            )
        self.steps_total += 1
        command = Command(step.command)
        card_file = self.file(step.card)
        card_file.temporary_loss_until_ms = 0
        if command is Command.ISSUE:
            del self.applications[step.card]
        elif command is Command.WITHDRAW:
            del self.applications[step.card]
            self.withdrawn.add(step.card)
        elif command is Command.ACTIVATE:
            card_file.activated_ms = step.time_ms
        elif command is Command.REPORT_TEMPORARY_LOSS:
            card_file.temporary_loss_until_ms = step.until_ms
            heapq.heappush(self._expiries, (step.until_ms, step.card))
        elif command is Command.SUSPEND:
            card_file.suspended = True
        elif command is Command.RESTORE:
            card_file.suspended = False
        elif command is Command.REPLACE:
            card_file.replaced_by = step.other_card
            self.serial_high = max(self.serial_high, serial_of(step.other_card))
            new_file = self.file(step.other_card)
            new_file.replaces = step.card
            new_file.suspended = card_file.suspended
            new_file.bank = card_file.bank
            new_file.activated_ms = step.time_ms
            new_file.pins = {
                function: StoredPin(pin.salt, pin.digest, pin.cost_log2, pin.failures)
                for function, pin in card_file.pins.items()
            }
            holder = engine.cards[step.card].holder_token
            self._index(holder, step.other_card)
        if self._expiries and len(self._expiries) > 2 * len(self.files) + 64:
            live = {(f.temporary_loss_until_ms, c) for c, f in self.files.items()}
            self._expiries = [entry for entry in self._expiries if entry in live]
            heapq.heapify(self._expiries)

    def _carry(self, record: BalancesCarried, engine: Engine) -> None:
        old = engine.cards[record.old_card]
        new = engine.cards[record.new_card]
        if (old.purse_fen, old.debt_fen, old.medical_fen) != (
            record.purse_fen,
            record.debt_fen,
            record.medical_fen,
        ):
            raise StateError(f"card {record.old_card}: carried balances do not match")
        new.purse_fen += old.purse_fen
        new.debt_fen += old.debt_fen
        new.medical_fen += old.medical_fen
        old.purse_fen = old.debt_fen = old.medical_fen = 0
        transit = engine.transit.pop(record.old_card, None)
        if transit is not None:
            engine.transit[record.new_card] = transit
        engine.denylist.set_blocked(new.number, engine._blocked(new))


def serial_of(card: str) -> int:
    """The numeric part of a card number issued by the lifecycle (S + 8 digits), else 0."""
    return int(card[1:]) if card[:1] == "S" and card[1:].isdigit() else 0
