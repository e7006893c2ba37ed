"""Lifecycle commands: a request from the service desk (or a partner system) and the time
in, the records that carry it out back — or a ServiceError saying why not.

Pure: nothing here reads the clock, hashes a PIN (slow: the API does that in a thread and
passes the hash in) or writes anything. Every check that replaying the records would make
is made here first, so the engine never meets a record it must refuse halfway through a
batch. The records go to Switch.submit together: the step (evidence: who, what, from which
stage) and the records that change the authorisation caches and the deny-list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from switch.domain.identifiers import mask_bank_account, validate_bank_account
from switch.domain.model import Card, CardCategory
from switch.ecard.records import EcardBound, EcardUnbound
from switch.ecard.state import EcardLevel
from switch.errors import IllegalTransition, InvalidIdentifier, NotFound, Refused
from switch.journal.records import CardIssued, CardStatusChanged, Record
from switch.lifecycle.config import LifecycleConfig
from switch.lifecycle.machine import CARD_STATUS, Command, Stage, next_stage
from switch.lifecycle.pins import PinFunction
from switch.lifecycle.records import (
    BalancesCarried,
    BankFunctionChanged,
    CardApplied,
    LifecycleStep,
    MedicalSettled,
    PinSet,
    PinTried,
    PurseRefunded,
)
from switch.lifecycle.state import BankStatus, LifecycleState, StoredPin

if TYPE_CHECKING:
    from switch.engine import Engine

DAY_MS = 86_400_000
# The actor of what the switch does by itself (a temporary loss report running out).
SWITCH_ACTOR = "switch"
# Lifecycle-issued card numbers: S and 8 digits (demo cards are X........).
CARD_PREFIX = "S"
CARD_SERIAL_MAX = 99_999_999
# Age from which a holder may hold the elderly (寿星卡) category in Shiyan (facts.md).
ELDERLY_AGE_YEARS = 65


class EligibilityBasis(enum.StrEnum):
    """Who may apply (regulation art. 6): registered residents and others entitled to the
    city's public services."""

    REGISTERED_RESIDENT = "registered_resident"  # 户籍 in Shiyan
    RESIDENCE_PERMIT = "residence_permit"  # 居住证 holders
    INSURED_LOCALLY = "insured_locally"  # insured with Shiyan's social insurance


class CancelReason(enum.StrEnum):
    TRANSFER_OUT = "transfer_out"
    EMIGRATION = "emigration"
    DEATH = "death"


# Bank function: the steps a partner bank may report.
BANK_STEPS: dict[str, frozenset[str]] = {
    BankStatus.ACTIVE: frozenset({BankStatus.LOST, BankStatus.SETTLED}),
    BankStatus.LOST: frozenset({BankStatus.ACTIVE, BankStatus.SETTLED}),
    BankStatus.SETTLED: frozenset(),
}
# Stages in which a card is in someone's hands and usable in some way: PINs can be tried
# and e-cards bound.
IN_USE = frozenset({Stage.ACTIVE, Stage.SUSPENDED})
# Stages after which a holder may apply again: the card is gone for good.
FINISHED = frozenset({Stage.CANCELLED, Stage.REPLACED})


@dataclass(frozen=True)
class PinHash:
    salt: bytes
    digest: bytes
    cost_log2: int


class Lifecycle:
    """The commands, over an engine whose caches are current (the event loop's thread)."""

    def __init__(self, engine: Engine, config: LifecycleConfig) -> None:
        self.engine = engine
        self.config = config

    @property
    def state(self) -> LifecycleState:
        return self.engine.lifecycle

    def stage(self, card: str) -> Stage:
        stage = self.state.stage(self.engine, card)
        if stage is None:
            raise NotFound(f"no card or application {card}")
        return stage

    def _step(
        self,
        now_ms: int,
        card: str,
        command: Command,
        actor: str,
        reason: str = "",
        *,
        until_ms: int = 0,
        other_card: str = "",
    ) -> tuple[LifecycleStep, Stage]:
        before = self.stage(card)
        after = next_stage(
            before,
            command,
            suspended=self._file_flag(card),
            formal_loss_liftable=self.config.formal_loss_liftable,
        )
        step = LifecycleStep(
            now_ms,
            card,
            command.value,
            before.value,
            after.value,
            actor,
            reason,
            until_ms,
            other_card,
        )
        return step, after

    def _file_flag(self, card: str) -> bool:
        card_file = self.state.files.get(card)
        return card_file is not None and card_file.suspended

    def bank_status(self, card: str) -> str:
        card_file = self.state.files.get(card)
        return BankStatus.ACTIVE if card_file is None else card_file.bank

    def _status(self, now_ms: int, card: str, stage: Stage, reason: str) -> CardStatusChanged:
        return CardStatusChanged(now_ms, card, CARD_STATUS[stage].value, reason)

    def _change(
        self,
        now_ms: int,
        card: str,
        command: Command,
        actor: str,
        reason: str = "",
        *,
        until_ms: int = 0,
    ) -> list[Record]:
        step, after = self._step(now_ms, card, command, actor, reason, until_ms=until_ms)
        return [step, self._status(now_ms, card, after, reason or command.value)]

    # -- application and issuance ----------------------------------------------------------

    def apply_for(
        self,
        now_ms: int,
        actor: str,
        holder_token: str,
        holder_masked: str,
        category: CardCategory,
        basis: EligibilityBasis,
        age_years: int,
    ) -> list[Record]:
        if category is CardCategory.ELDERLY and age_years < ELDERLY_AGE_YEARS:
            raise Refused(f"the elderly category needs an age of {ELDERLY_AGE_YEARS} or more")
        for card in self.state.cards_of(self.engine, holder_token):
            stage = self.stage(card)
            if stage not in FINISHED:
                # Regulation art. 16 sanctions issuing duplicate cards.
                raise Refused(f"the holder already has card {card} ({stage.value})")
        serial = self.state.serial_high + 1
        if serial > CARD_SERIAL_MAX:
            raise Refused("card numbers of this prefix are used up")
        card = f"{CARD_PREFIX}{serial:08d}"
        return [
            CardApplied(
                now_ms, card, holder_token, holder_masked, category.value, basis.value, actor
            )
        ]

    def withdraw(self, now_ms: int, actor: str, card: str) -> list[Record]:
        step, _ = self._step(now_ms, card, Command.WITHDRAW, actor)
        return [step]

    def issue(
        self, now_ms: int, actor: str, card: str, bank_id: str, bank_account: str
    ) -> list[Record]:
        step, after = self._step(now_ms, card, Command.ISSUE, actor)
        application = self.state.applications[card]
        masked = ""
        if bank_account:
            try:
                masked = mask_bank_account(validate_bank_account(bank_account))
            except InvalidIdentifier as exc:
                raise Refused(str(exc)) from None
        issued = CardIssued(
            card=card,
            holder_token=application.holder_token,
            holder_masked=application.holder_masked,
            category=application.category,
            status=CARD_STATUS[after].value,
            purse_fen=0,
            medical_fen=0,
            bank_id=bank_id,
            bank_account_masked=masked,
        )
        return [step, issued]

    def activate(
        self, now_ms: int, actor: str, card: str, social: PinHash, financial: PinHash | None
    ) -> list[Record]:
        records = self._change(now_ms, card, Command.ACTIVATE, actor)
        records.append(self._pin_set(now_ms, card, PinFunction.SOCIAL_SECURITY, social, actor))
        if financial is not None:
            records.append(self._pin_set(now_ms, card, PinFunction.FINANCIAL, financial, actor))
        return records

    @staticmethod
    def _pin_set(now_ms: int, card: str, function: PinFunction, pin: PinHash, actor: str) -> PinSet:
        return PinSet(now_ms, card, function.value, pin.salt, pin.digest, pin.cost_log2, actor)

    # -- loss, lifting, suspension -----------------------------------------------------------

    def report_loss(self, now_ms: int, actor: str, card: str, temporary: bool) -> list[Record]:
        if temporary:
            until_ms = now_ms + self.config.temporary_loss_days * DAY_MS
            return self._change(
                now_ms,
                card,
                Command.REPORT_TEMPORARY_LOSS,
                actor,
                "temporary loss report",
                until_ms=until_ms,
            )
        return self._change(now_ms, card, Command.REPORT_LOSS, actor, "formal loss report")

    def lift_loss(self, now_ms: int, actor: str, card: str) -> list[Record]:
        return self._change(now_ms, card, Command.LIFT_LOSS, actor, "loss report lifted")

    def expired_losses(self, now_ms: int) -> list[Record]:
        """Temporary loss reports that have run out by `now_ms`, lifted."""
        records: list[Record] = []
        for card in self.state.due_expiries(now_ms):
            records += self._change(
                now_ms,
                card,
                Command.EXPIRE_TEMPORARY_LOSS,
                SWITCH_ACTOR,
                "temporary loss report expired",
            )
        return records

    def suspend(self, now_ms: int, actor: str, card: str, reason: str) -> list[Record]:
        return self._change(now_ms, card, Command.SUSPEND, actor, reason)

    def restore(self, now_ms: int, actor: str, card: str, reason: str) -> list[Record]:
        return self._change(now_ms, card, Command.RESTORE, actor, reason)

    # -- replacement and cancellation --------------------------------------------------------

    def replace(self, now_ms: int, actor: str, card: str, reason: str) -> tuple[str, list[Record]]:
        """A new card number for the holder; everything the old card held moves to it."""
        serial = self.state.serial_high + 1
        if serial > CARD_SERIAL_MAX:
            raise Refused("card numbers of this prefix are used up")
        new = f"{CARD_PREFIX}{serial:08d}"
        while new in self.engine.cards:  # a number taken outside the lifecycle
            serial += 1
            new = f"{CARD_PREFIX}{serial:08d}"
        step, after = self._step(now_ms, card, Command.REPLACE, actor, reason, other_card=new)
        old = self.engine.cards[card]
        suspended = self.stage(card) is Stage.SUSPENDED or self._file_flag(card)
        new_stage = Stage.SUSPENDED if suspended else Stage.ACTIVE
        records: list[Record] = [
            step,
            self._status(now_ms, card, after, f"replaced by {new}"),
            CardIssued(
                card=new,
                holder_token=old.holder_token,
                holder_masked=old.holder_masked,
                category=old.category.value,
                status=CARD_STATUS[new_stage].value,
                purse_fen=0,
                medical_fen=0,
                bank_id=old.bank_id,
                bank_account_masked=old.bank_account_masked,
            ),
            BalancesCarried(now_ms, card, new, old.purse_fen, old.debt_fen, old.medical_fen),
        ]
        binding = self.engine.ecard.by_card.get(card)
        if binding is not None:
            # The same token: the holder's phone keeps showing codes that now reach the new
            # card ("same state, same functions").
            records.append(EcardUnbound(now_ms, card, f"card replaced by {new}"))
            records.append(EcardBound(now_ms, new, binding.token, int(binding.level)))
        return new, records

    def settle_medical(self, now_ms: int, actor: str, card: str, amount_fen: int) -> list[Record]:
        self.stage(card)
        cached = self._card(card)
        if amount_fen != cached.medical_fen:
            raise Refused(
                f"the medical account holds {cached.medical_fen} fen; a settlement takes it all"
            )
        return [MedicalSettled(now_ms, card, amount_fen, actor)]

    def set_bank_function(self, now_ms: int, actor: str, card: str, status: str) -> list[Record]:
        self.stage(card)
        cached = self._card(card)
        if not cached.bank_id:
            raise Refused(f"card {card} has no financial function")
        current = self.bank_status(card)
        if status not in BANK_STEPS.get(current, frozenset()):
            raise IllegalTransition(f"bank function {current}", f"set {status}")
        return [BankFunctionChanged(now_ms, card, status, actor)]

    def cancel(self, now_ms: int, actor: str, card: str, reason: CancelReason) -> list[Record]:
        stage = self.stage(card)
        if stage is Stage.APPLIED:
            return self.withdraw(now_ms, actor, card)
        step, after = self._step(now_ms, card, Command.CANCEL, actor, reason.value)
        cached = self._card(card)
        if cached.medical_fen:
            raise Refused(
                f"the medical account still holds {cached.medical_fen} fen: settle it first"
            )
        bank = self.bank_status(card)
        if cached.bank_id and bank != BankStatus.SETTLED:
            raise Refused("the financial account is not settled: the partner bank closes it first")
        if cached.debt_fen > cached.purse_fen:
            raise Refused(
                f"offline fares of {cached.debt_fen} fen are owed and the purse holds "
                f"{cached.purse_fen}: pay the difference first"
            )
        records: list[Record] = []
        if cached.purse_fen or cached.debt_fen:
            records.append(
                PurseRefunded(
                    now_ms,
                    card,
                    cached.purse_fen,
                    cached.debt_fen,
                    cached.purse_fen - cached.debt_fen,
                    actor,
                )
            )
        records += [step, self._status(now_ms, card, after, reason.value)]
        return records

    # -- PINs and e-cards ---------------------------------------------------------------------

    def stored_pin(self, card: str, function: PinFunction) -> StoredPin:
        stage = self.stage(card)
        if stage not in IN_USE:
            raise Refused(f"card {card} is {stage.value}: its PIN cannot be used")
        pin = self.state.files.get(card)
        stored = None if pin is None else pin.pins.get(function.value)
        if stored is None:
            raise NotFound(f"card {card} has no {function.value} PIN")
        return stored

    def pin_tried(
        self, now_ms: int, actor: str, card: str, function: PinFunction, ok: bool
    ) -> list[Record]:
        if self.stored_pin(card, function).locked:
            raise Refused("the PIN is locked after 3 wrong tries: reset it at the desk")
        return [PinTried(now_ms, card, function.value, ok, actor)]

    def reset_pin(
        self, now_ms: int, actor: str, card: str, function: PinFunction, pin: PinHash
    ) -> list[Record]:
        stage = self.stage(card)
        if stage not in IN_USE:
            raise Refused(f"card {card} is {stage.value}: no PIN can be set")
        return [self._pin_set(now_ms, card, function, pin, actor)]

    def bind_ecard(self, now_ms: int, card: str, level: EcardLevel, token: bytes) -> list[Record]:
        """`token`: the existing binding's (a level change) or a fresh one (a new e-card)."""
        stage = self.stage(card)
        if stage not in IN_USE:
            raise Refused(f"card {card} is {stage.value}: no e-card can be bound to it")
        bank = self.bank_status(card)
        if level is EcardLevel.PAYMENT and (
            not self._card(card).bank_id or bank != BankStatus.ACTIVE
        ):
            raise Refused("a level-2 e-card needs an active financial (bank) function")
        return [EcardBound(now_ms, card, token, int(level))]

    def unbind_ecard(self, now_ms: int, card: str, reason: str) -> list[Record]:
        self.stage(card)
        if card not in self.engine.ecard.by_card:
            raise NotFound(f"card {card} has no e-card")
        return [EcardUnbound(now_ms, card, reason)]

    def _card(self, card: str) -> Card:
        cached = self.engine.cards.get(card)
        if cached is None:
            raise Refused(f"{card} is an application: no card has been issued yet")
        return cached
