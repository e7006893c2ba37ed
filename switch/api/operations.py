"""What each endpoint does, over the engine, the journal and the store.

Every change follows one path: decide the records on the engine's current state (pure
commands, switch/lifecycle and switch/casework), `Switch.submit` them — the caches and the
deny-list change at once, so the very next batch of terminal requests sees a lost card as
lost — and answer once `journal.wait_durable` says they are on disk. Slow work (PIN hashes)
happens before the decision, in a worker thread, and the decision is then made on the
state as it is after that wait: nothing is decided on a stale view.

Every read of personal data journals a `PersonalDataRead` and waits for it to be durable
before the data leaves: no read goes unrecorded, even if the switch dies a moment later.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import anyio

from switch.api import schemas as s
from switch.api.auth import Principal
from switch.casework.commands import Casework
from switch.casework.config import CaseworkConfig
from switch.casework.state import ComplaintState
from switch.core import Switch
from switch.domain.identifiers import mask_citizen_id
from switch.ecard.issue import new_token
from switch.ecard.state import EcardLevel
from switch.errors import NotFound, Refused
from switch.journal.records import Record
from switch.lifecycle.commands import CancelReason, Lifecycle, PinHash
from switch.lifecycle.config import LifecycleConfig
from switch.lifecycle.machine import Stage
from switch.lifecycle.pins import PIN_TRIES_MAX, PinFunction, check_pin_rules, hash_pin, pin_matches
from switch.privacy.holders import HolderSealer, PersonalData, validated
from switch.privacy.masking import mask_text
from switch.privacy.purposes import Purpose, Role, may_unmask
from switch.privacy.records import PersonalDataRead
from switch.privacy.seal import Sealer
from switch.store.base import ComplaintRow, Store
from switch.store.tail import read_records

CST = datetime.timezone(datetime.timedelta(hours=8))


@dataclass(frozen=True)
class Secrets:
    holders: HolderSealer
    texts: Sealer  # complaint texts and answers
    pin_pepper: bytes


def age_years(citizen_id: str, today: datetime.date) -> int:
    birth = datetime.date(int(citizen_id[6:10]), int(citizen_id[10:12]), int(citizen_id[12:14]))
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


class Operations:
    def __init__(
        self,
        switch: Switch,
        store: Store,
        secrets: Secrets,
        lifecycle: LifecycleConfig,
        casework: CaseworkConfig,
    ) -> None:
        self.switch = switch
        self.store = store
        self.secrets = secrets
        self.config = lifecycle
        self.lifecycle = Lifecycle(switch.engine, lifecycle)
        self.casework = Casework(switch.engine.casework, casework)

    @property
    def now_ms(self) -> int:
        return self.switch.clock()

    async def commit(self, records: list[Record]) -> int:
        """Apply and journal `records` in one group; returns once they are durable."""
        position = self.switch.submit(records)
        await self.switch.journal.wait_durable(position)
        return position

    async def current(self) -> None:
        """Before a query: everything appended so far is durable and in the store."""
        journal = self.switch.journal
        position = journal.appended_position
        await journal.wait_durable(position)
        await self.store.wait_current(position)

    # -- cards -------------------------------------------------------------------------------

    def card_view(self, card: str) -> s.CardView:
        engine = self.switch.engine
        stage = self.lifecycle.stage(card)
        files = engine.lifecycle.files.get(card)
        cached = engine.cards.get(card)
        binding = engine.ecard.by_card.get(card)
        if cached is None:
            application = engine.lifecycle.applications.get(card)
            holder_token = "" if application is None else application.holder_token
            holder_masked = "" if application is None else application.holder_masked
            category = "" if application is None else application.category
            purse = debt = medical = 0
            bank = "none"
        else:
            holder_token, holder_masked = cached.holder_token, cached.holder_masked
            category = cached.category.value
            purse, debt, medical = cached.purse_fen, cached.debt_fen, cached.medical_fen
            bank = self.lifecycle.bank_status(card) if cached.bank_id else "none"
        return s.CardView(
            card=card,
            stage=stage,
            holder_token=holder_token,
            holder_masked=holder_masked,
            category=category,
            purse_fen=purse,
            debt_fen=debt,
            medical_fen=medical,
            bank_function=bank,
            suspended=stage is Stage.SUSPENDED or (files is not None and files.suspended),
            pin_locked=files is not None and any(pin.locked for pin in files.pins.values()),
            ecard_level=0 if binding is None else int(binding.level),
            replaced_by="" if files is None else files.replaced_by,
            replaces="" if files is None else files.replaces,
            temporary_loss_until_ms=0 if files is None else files.temporary_loss_until_ms,
        )

    async def current_card(self, card: str) -> s.CardView:
        await self.switch.journal.wait_durable(self.switch.journal.appended_position)
        return self.card_view(card)

    async def apply(self, who: Principal, body: s.ApplicationRequest) -> s.ApplicationAnswer:
        try:
            data = validated(body.name, body.citizen_id, body.contact)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        secrets = self.secrets.holders
        token = secrets.token(data.citizen_id)
        today = datetime.datetime.fromtimestamp(self.now_ms / 1000, CST).date()
        age = age_years(data.citizen_id, today)
        masked = mask_citizen_id(data.citizen_id)
        # Checked before anything is written; then the personal data goes first (the
        # journal must never name a holder whose data was lost), and the application is
        # decided again: another one may have come in during the write.
        self.lifecycle.apply_for(
            self.now_ms, who.name, token, masked, body.category, body.basis, age
        )
        await self.store.put_holder(token, secrets.seal(token, data))
        records = self.lifecycle.apply_for(
            self.now_ms, who.name, token, masked, body.category, body.basis, age
        )
        await self.commit(records)
        card = self.switch.engine.lifecycle.cards_of(self.switch.engine, token)[-1]
        return s.ApplicationAnswer(card, token, masked, Stage.APPLIED)

    async def issue(self, who: Principal, card: str, body: s.IssueRequest) -> s.CardView:
        if bool(body.bank_id) != bool(body.bank_account):
            raise Refused("a financial function needs both the bank and the account")
        await self.commit(
            self.lifecycle.issue(self.now_ms, who.name, card, body.bank_id, body.bank_account)
        )
        return self.card_view(card)

    async def _pin_hash(self, card: str, function: PinFunction, pin: str) -> PinHash:
        cost = self.config.pin_cost_log2
        salt, digest = await anyio.to_thread.run_sync(
            hash_pin, self.secrets.pin_pepper, card, function.value, pin, cost
        )
        return PinHash(salt, digest, cost)

    async def activate(self, who: Principal, card: str, body: s.ActivateRequest) -> s.CardView:
        check_pin_rules(body.pin)
        if body.financial_pin is not None:
            check_pin_rules(body.financial_pin)
            if body.financial_pin == body.pin:
                raise Refused("the social-security PIN must differ from the financial PIN")
        if self.lifecycle.stage(card) is not Stage.ISSUED:  # fail fast, before hashing
            self.lifecycle.activate(self.now_ms, who.name, card, PinHash(b"", b"", 0), None)
        social = await self._pin_hash(card, PinFunction.SOCIAL_SECURITY, body.pin)
        financial = None
        if body.financial_pin is not None:
            financial = await self._pin_hash(card, PinFunction.FINANCIAL, body.financial_pin)
        await self.commit(self.lifecycle.activate(self.now_ms, who.name, card, social, financial))
        return self.card_view(card)

    async def report_loss(self, who: Principal, card: str, body: s.LossRequest) -> s.CardView:
        await self.commit(
            self.lifecycle.report_loss(self.now_ms, who.name, card, body.kind == "temporary")
        )
        return self.card_view(card)

    async def lift_loss(self, who: Principal, card: str) -> s.CardView:
        await self.commit(self.lifecycle.lift_loss(self.now_ms, who.name, card))
        return self.card_view(card)

    async def expire_losses(self) -> int:
        """Lift the temporary loss reports that have run out; returns how many."""
        records = self.lifecycle.expired_losses(self.now_ms)
        if records:
            await self.commit(records)
        return len(records) // 2

    async def suspend(self, who: Principal, card: str, body: s.SanctionRequest) -> s.CardView:
        await self.commit(self.lifecycle.suspend(self.now_ms, who.name, card, body.reference))
        return self.card_view(card)

    async def restore(self, who: Principal, card: str, body: s.SanctionRequest) -> s.CardView:
        await self.commit(self.lifecycle.restore(self.now_ms, who.name, card, body.reference))
        return self.card_view(card)

    async def replace(self, who: Principal, card: str, body: s.ReplaceRequest) -> s.ReplaceAnswer:
        new, records = self.lifecycle.replace(self.now_ms, who.name, card, body.reason)
        await self.commit(records)
        return s.ReplaceAnswer(card, self.card_view(new))

    async def settle_medical(
        self, who: Principal, card: str, body: s.MedicalSettlementRequest
    ) -> s.CardView:
        await self.commit(
            self.lifecycle.settle_medical(self.now_ms, who.name, card, body.amount_fen)
        )
        return self.card_view(card)

    async def bank_function(
        self, who: Principal, card: str, body: s.BankFunctionRequest
    ) -> s.CardView:
        await self.commit(
            self.lifecycle.set_bank_function(self.now_ms, who.name, card, body.status)
        )
        return self.card_view(card)

    async def cancel(self, who: Principal, card: str, body: s.CancelRequest) -> s.CardView:
        await self.commit(
            self.lifecycle.cancel(self.now_ms, who.name, card, CancelReason(body.reason))
        )
        return self.card_view(card)

    # -- PINs and e-cards -------------------------------------------------------------------

    async def verify_pin(
        self, who: Principal, card: str, body: s.PinVerifyRequest
    ) -> s.PinVerifyAnswer:
        stored = self.lifecycle.stored_pin(card, body.function)
        if stored.locked:
            raise Refused("the PIN is locked after 3 wrong tries: reset it at the desk")
        ok = await anyio.to_thread.run_sync(
            pin_matches,
            self.secrets.pin_pepper,
            card,
            body.function.value,
            body.pin,
            stored.salt,
            stored.digest,
            stored.cost_log2,
        )
        await self.commit(self.lifecycle.pin_tried(self.now_ms, who.name, card, body.function, ok))
        after = self.lifecycle.stored_pin(card, body.function)
        return s.PinVerifyAnswer(ok, PIN_TRIES_MAX - after.failures, after.locked)

    async def reset_pin(self, who: Principal, card: str, body: s.PinResetRequest) -> s.CardView:
        check_pin_rules(body.pin)
        self.lifecycle.reset_pin(self.now_ms, who.name, card, body.function, PinHash(b"", b"", 0))
        other = (
            PinFunction.FINANCIAL
            if body.function is PinFunction.SOCIAL_SECURITY
            else PinFunction.SOCIAL_SECURITY
        )
        files = self.switch.engine.lifecycle.files.get(card)
        stored = None if files is None else files.pins.get(other.value)
        if stored is not None and await anyio.to_thread.run_sync(
            pin_matches,
            self.secrets.pin_pepper,
            card,
            other.value,
            body.pin,
            stored.salt,
            stored.digest,
            stored.cost_log2,
        ):
            raise Refused("the social-security PIN must differ from the financial PIN")
        pin = await self._pin_hash(card, body.function, body.pin)
        await self.commit(self.lifecycle.reset_pin(self.now_ms, who.name, card, body.function, pin))
        return self.card_view(card)

    async def bind_ecard(self, who: Principal, card: str, body: s.EcardRequest) -> s.CardView:
        ecard = self.switch.engine.ecard
        binding = ecard.by_card.get(card)
        token = new_token(ecard) if binding is None else binding.token
        await self.commit(
            self.lifecycle.bind_ecard(self.now_ms, card, EcardLevel(body.level), token)
        )
        return self.card_view(card)

    async def unbind_ecard(self, who: Principal, card: str) -> s.CardView:
        await self.commit(self.lifecycle.unbind_ecard(self.now_ms, card, f"unbound by {who.name}"))
        return self.card_view(card)

    # -- personal data -----------------------------------------------------------------------

    async def _read(
        self, who: Principal, holder_token: str, purpose: Purpose, what: str, unmasked: bool
    ) -> None:
        await self.commit(
            [
                PersonalDataRead(
                    self.now_ms,
                    who.name,
                    who.role.value,
                    holder_token,
                    purpose.value,
                    what,
                    unmasked,
                )
            ]
        )

    async def holder(self, who: Principal, holder_token: str, purpose: Purpose) -> s.HolderAnswer:
        sealed = await self.store.holder(holder_token)
        if sealed is None:
            raise NotFound("no such holder")
        unmasked = may_unmask(who.role, purpose)
        await self._read(who, holder_token, purpose, "holder", unmasked)
        data = self.secrets.holders.open(holder_token, sealed)
        return self._holder_answer(holder_token, data, unmasked)

    def _holder_answer(self, token: str, data: PersonalData, unmasked: bool) -> s.HolderAnswer:
        shown = data if unmasked else data.masked()
        cards = self.switch.engine.lifecycle.cards_of(self.switch.engine, token)
        return s.HolderAnswer(token, shown.name, shown.citizen_id, shown.contact, unmasked, cards)

    async def lookup(self, who: Principal, body: s.LookupRequest) -> s.HolderAnswer:
        try:
            token = self.secrets.holders.token(body.citizen_id)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        sealed = await self.store.holder(token)
        if sealed is None and not self.switch.engine.lifecycle.cards_of(self.switch.engine, token):
            raise NotFound("no holder with this ID number")
        unmasked = may_unmask(who.role, body.purpose)
        await self._read(who, token, body.purpose, "lookup", unmasked)
        if sealed is None:  # a holder enrolled before the registry: masked form only
            return s.HolderAnswer(
                token,
                "",
                mask_citizen_id(body.citizen_id.upper()),
                "",
                False,
                self.switch.engine.lifecycle.cards_of(self.switch.engine, token),
            )
        return self._holder_answer(token, self.secrets.holders.open(token, sealed), unmasked)

    async def access_report(self, who: Principal, holder_token: str) -> s.AccessReport:
        await self.current()
        reads = await self.store.access_report(holder_token)
        # Reading the report is itself a read of the holder's data: the holder sees it too.
        purpose = Purpose.AUDIT if who.role is Role.AUDITOR else Purpose.HOLDER_REQUEST
        await self._read(who, holder_token, purpose, "access_report", False)
        return s.AccessReport(holder_token, reads)

    # -- casework ---------------------------------------------------------------------------

    async def _check_evidence(self, card: str, evidence: list[int]) -> None:
        """Each cited record exists, is durable, and concerns `card`."""
        journal = self.switch.journal
        end = journal.appended_position
        await journal.wait_durable(end)
        if any(not 0 <= index < end for index in evidence):
            raise Refused("evidence cites a journal record that does not exist")
        found = await anyio.to_thread.run_sync(
            read_records, journal.directory, evidence, journal.durable_position
        )
        engine = self.switch.engine
        for index, record in found.items():
            cards = {getattr(record, name, None) for name in ("card", "old_card", "new_card")}
            if card not in cards:
                raise Refused(f"journal record {index} does not concern card {card}")
        if card not in engine.cards:
            raise NotFound(f"no card {card}")

    def _holder_of(self, card: str) -> str:
        cached = self.switch.engine.cards.get(card)
        if cached is None:
            raise NotFound(f"no card {card}")
        return cached.holder_token

    async def add_integrity_entry(
        self, who: Principal, body: s.IntegrityRequest
    ) -> s.IntegrityFile:
        await self._check_evidence(body.card, body.evidence)
        holder = self._holder_of(body.card)
        await self.commit(
            self.casework.add_integrity_entry(
                self.now_ms,
                who.name,
                holder,
                body.card,
                body.violation,
                body.evidence,
                body.reference,
                self.switch.journal.appended_position,
            )
        )
        return await self.integrity_file(who, holder)

    async def integrity_file(self, who: Principal, holder_token: str) -> s.IntegrityFile:
        await self.current()
        return s.IntegrityFile(holder_token, await self.store.integrity_file(holder_token))

    async def order_recovery(self, who: Principal, body: s.RecoveryRequest) -> s.RecoveryOrders:
        await self._check_evidence(body.card, body.evidence)
        holder = self._holder_of(body.card)
        await self.commit(
            self.casework.order_recovery(
                self.now_ms,
                who.name,
                holder,
                body.card,
                body.amount_fen,
                body.fine_fen,
                body.evidence,
                body.reference,
                self.switch.journal.appended_position,
            )
        )
        return await self.recovery_orders(who, holder)

    async def recovery_orders(self, who: Principal, holder_token: str) -> s.RecoveryOrders:
        await self.current()
        return s.RecoveryOrders(holder_token, await self.store.recovery_orders(holder_token))

    async def file_complaint(self, who: Principal, body: s.ComplaintRequest) -> s.ComplaintView:
        holder = self._holder_of(body.card) if body.card else ""
        complaint_id = self.casework.next_complaint_id()
        sealed = self.secrets.texts.seal(body.text.encode(), b"complaint %d" % complaint_id)
        await self.commit(
            self.casework.file_complaint(
                self.now_ms,
                who.name,
                body.kind,
                body.channel,
                holder,
                body.card,
                sealed,
                complaint_id,
            )
        )
        return await self.complaint(who, complaint_id, Purpose.COMPLAINT_HANDLING, read=False)

    async def complaints(self, who: Principal, overdue: bool) -> s.ComplaintList:
        await self.current()
        now = self.now_ms
        rows = await self.store.complaints(now if overdue else None)
        return s.ComplaintList([self._complaint_view(row, now, None, None) for row in rows])

    async def complaint(
        self, who: Principal, complaint_id: int, purpose: Purpose, *, read: bool = True
    ) -> s.ComplaintView:
        await self.current()
        row = await self.store.complaint(complaint_id)
        if row is None:
            raise NotFound(f"no complaint {complaint_id}")
        context = b"complaint %d" % complaint_id
        text = self.secrets.texts.open(row.text_sealed, context).decode()
        answer = (
            self.secrets.texts.open(row.answer_sealed, context).decode()
            if row.answer_sealed
            else None
        )
        unmasked = may_unmask(who.role, purpose)
        if not unmasked:
            text = mask_text(text)
            answer = None if answer is None else mask_text(answer)
        if read and row.holder_token:
            await self._read(who, row.holder_token, purpose, "complaint", unmasked)
        return self._complaint_view(row, self.now_ms, text, answer)

    @staticmethod
    def _complaint_view(
        row: ComplaintRow, now_ms: int, text: str | None, answer: str | None
    ) -> s.ComplaintView:
        return s.ComplaintView(
            row.complaint_id,
            row.time_ms,
            row.kind,
            row.channel,
            row.card,
            row.holder_token,
            row.state,
            row.assignee,
            row.due_ms,
            row.answered_ms,
            row.state != ComplaintState.ANSWERED and now_ms > row.due_ms,
            text,
            answer,
        )

    async def assign_complaint(
        self, who: Principal, complaint_id: int, body: s.AssignRequest
    ) -> s.ComplaintView:
        await self.commit(self.casework.assign(self.now_ms, who.name, complaint_id, body.assignee))
        return await self.complaint(who, complaint_id, Purpose.COMPLAINT_HANDLING, read=False)

    async def answer_complaint(
        self, who: Principal, complaint_id: int, body: s.AnswerRequest
    ) -> s.ComplaintView:
        sealed = self.secrets.texts.seal(body.text.encode(), b"complaint %d" % complaint_id)
        await self.commit(self.casework.answer(self.now_ms, who.name, complaint_id, sealed))
        return await self.complaint(who, complaint_id, Purpose.COMPLAINT_HANDLING, read=False)

    async def review_flags(self, who: Principal, open_only: bool) -> s.ReviewFlags:
        await self.current()
        return s.ReviewFlags(await self.store.review_flags(open_only))

    async def resolve_flag(
        self, who: Principal, flag_id: int, body: s.FlagResolveRequest
    ) -> s.ReviewFlags:
        await self.commit(self.casework.resolve_flag(self.now_ms, who.name, flag_id, body.outcome))
        return await self.review_flags(who, open_only=False)
