"""The ISO 8583 acquirer and the partner-bank state machine: sans-I/O, time passed in.

Inputs are events with their time; outputs are `Effects`: journal records (already applied
to the engine's state, in order), answers for merchants' connections and messages for bank
links. The caller journals the records and sends nothing before they are durable: a bank
never hears of a request the switch could forget, and a merchant never gets an answer a
restart could undo.

    requests(messages, sink, now)     merchants' and acquirers' messages (one read's worth)
    bank_message(bank, message, now)  a bank's answer: to a request, or to a reversal/advice
    link_up(bank, now) / link_down    the link adapter signed on, or lost the connection
    tick(now)                         timeouts, store-and-forward retries, hold expiry
    recover(now)                      once at start: requests a previous run left at a bank

A request to a bank, step by step (docs/iso8583.md section 6):

    pending ──bank answers──────────► decided (answer = the bank's code)
       │
       └──deadline passes──► decided 91, or stood in (00) ──► 0400 queued [+ advice queued]
                                     late answer ─► matched, journalled; the reversal stands

The store-and-forward queue holds, per bank and in order, every reversal (0400) and advice
(0120, 0220) the bank must receive. Its head is sent when the link is up, and again with the
repeat MTI (0401, 0121, 0221) after a backoff until the bank acknowledges it.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from protocols.codes import ResponseCode
from protocols.errors import RemoteProtocolError
from protocols.iso8583.codec import IsoMessage, RejectedMessage, encode_message
from protocols.iso8583.mac import MacKey
from protocols.iso8583.messages import (
    AMOUNT_DIGITS,
    BANK_ACCOUNTS,
    CURRENCY_CNY,
    MERCHANT_ID_LENGTH,
    STAN_MODULUS,
    TERMINAL_ID_LENGTH,
    Account,
    AmountType,
    BillTag,
    IsoRequest,
    Mti,
    NetworkCode,
    TransactionType,
    additional_amounts,
    original_data,
    parse_additional_amounts,
    parse_request,
    response_fields,
    response_mti,
    tlv,
    transmission_time,
)
from switch.banks.config import BankLink, BanksConfig, MedicalRemainder, OnTimeout
from switch.banks.records import (
    BankLateReply,
    BankRequestSent,
    HoldExpired,
    IsoPayment,
    SafDelivered,
    SafQueued,
)
from switch.banks.routing import Router
from switch.banks.state import Kind, PaymentState, Route
from switch.banks.stats import BankStatistics
from switch.domain.model import Card, CardStatus, TerminalKind
from switch.engine import PURSE_REFUSAL, Engine, TerminalState
from switch.journal.records import Record
from switch.ops.logs import correlate

log = logging.getLogger("onecard.banks")

C = ResponseCode
APPROVED = C.APPROVED.value
# Requests one bank may have outstanding: past it new ones are declined 91 at once rather
# than queued behind a bank that is not keeping up (a bank host answers in tens of ms; 256
# in flight is seconds of a city's card traffic).
PENDING_PER_BANK_MAX = 256
# Reversals and advices one bank's queue may hold. When full, the switch declines (91)
# whatever would need one more, rather than promise a reversal it has no room to keep:
# 10,000 is hours of timeouts, and its depth and age are alerted on long before.
SAF_ENTRIES_MAX = 10_000
# Store-and-forward retries back off from 1 s to a minute: fast while a bank recovers from
# a blip, without hammering one that is struggling. There is no last try: a reversal is
# retried until the bank acknowledges it.
SAF_RETRY_MS_MIN = 1_000
SAF_RETRY_MS_MAX = 60_000
# A bank answering a reversal or advice with one of these has not taken it: try again.
SAF_RETRY_CODES = frozenset({C.ISSUER_UNAVAILABLE.value, C.SYSTEM_MALFUNCTION.value})
# Which requests each kind of terminal may send over ISO 8583.
ALLOWED: dict[TerminalKind, frozenset[Kind]] = {
    TerminalKind.POS: frozenset(
        {Kind.PURCHASE, Kind.PREAUTH, Kind.COMPLETION, Kind.BALANCE, Kind.BILL, Kind.REVERSAL}
    ),
    TerminalKind.MEDICAL: frozenset({Kind.MEDICAL, Kind.BALANCE, Kind.REVERSAL}),
    TerminalKind.GATE: frozenset(),
}
# Kinds that may be approved in stand-in: they move a bounded amount the bank can be told
# of later. A balance inquiry has nothing to stand in with.
STANDIN_KINDS = frozenset({Kind.PURCHASE, Kind.PREAUTH, Kind.BILL, Kind.MEDICAL})
# DE54 account type per route.
ACCOUNT_OF_ROUTE = {
    Route.PURSE: Account.TRANSIT_PURSE,
    Route.MEDICAL: Account.MEDICAL,
    Route.BANK: Account.DEFAULT,
}
# Where the switch is, for DE32 of what it sends banks: Shiyan's region code.
ACQUIRER_ID = "420300"
INVALID = "invalid"


class AnswerSink(Protocol):
    """Where a merchant's answers go (a connection's outbox)."""

    def deliver(self, data: bytes) -> None: ...


@dataclass
class Effects:
    records: list[Record] = field(default_factory=list)
    answers: list[tuple[AnswerSink, bytes]] = field(default_factory=list)
    to_banks: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records or self.answers or self.to_banks)


@dataclass
class _Waiter:
    sink: AnswerSink | None
    fields: dict[str, str]
    key: MacKey
    deferred: IsoMessage | None = None  # a reversal that arrived while its original waited


@dataclass
class _SafProgress:
    attempts: int = 0
    next_try_ms: int = 0
    in_flight: bool = False


def fingerprint(request: IsoRequest) -> str:
    """What a retransmission must repeat: the same DE11/DE41/DE7 with other content is not
    a retransmission (94)."""
    original = request.original
    return "|".join(
        (
            request.mti,
            request.card,
            request.transaction_type + request.account,
            str(request.amount_fen),
            str(request.pooled_fen),
            request.biller,
            request.bill_reference,
            "" if original is None else f"{original.mti}{original.stan}{original.transmission}",
        )
    )


def _stan(number: int) -> str:
    return f"{number % STAN_MODULUS:06d}"


def _amount(fen: int) -> str:
    return f"{fen:0{AMOUNT_DIGITS}d}"


class Acquirer:
    def __init__(self, engine: Engine, config: BanksConfig) -> None:
        self.engine = engine
        self.state: PaymentState = engine.payments
        self.config = config
        self.router = Router(config)
        self.links: dict[str, BankLink] = {link.id: link for link in config.links}
        self.statistics: BankStatistics = self.state.statistics
        for bank in self.links:
            self.statistics.add_bank(bank)
        self._waiters: dict[int, list[_Waiter]] = {}
        self._deadlines: list[tuple[int, int]] = [
            (sent.deadline_ms, ref) for ref, sent in self.state.pending.items()
        ]
        heapq.heapify(self._deadlines)
        self._expiries: list[tuple[int, int]] = [
            (hold.expires_ms, ref) for ref, hold in self.state.holds.items()
        ]
        heapq.heapify(self._expiries)
        self._saf_progress: dict[int, _SafProgress] = {}
        # Entries journalled by an earlier run may have reached the bank already: their
        # first send in this run is a repeat.
        self._saf_recovered = {entry for queue in self.state.saf.values() for entry in queue}

    # -- helpers ---------------------------------------------------------------------------

    def _commit(self, fx: Effects, record: Record) -> None:
        self.engine.apply(record)
        fx.records.append(record)

    def _reference(self) -> int:
        reference = max(self.engine.next_reference, self.state.next_reference)
        self.engine.next_reference = reference + 1
        self.state.next_reference = reference + 1
        return reference

    def _answer(
        self,
        fx: Effects,
        sink: AnswerSink | None,
        fields: dict[str, str],
        key: MacKey | None,
        kind: str,
    ) -> None:
        self.statistics.count(kind, fields.get("39", ""))
        if sink is not None:
            fx.answers.append((sink, encode_message(fields, key)))

    def _payment_fields(self, payment: IsoPayment, request: dict[str, str]) -> dict[str, str]:
        extra = {"37": f"{payment.reference:012d}"}
        approved = payment.code == APPROVED
        if approved and payment.kind not in (Kind.BALANCE, Kind.REVERSAL):
            extra["38"] = _stan(payment.reference)
        account = ACCOUNT_OF_ROUTE.get(Route(payment.route)) if payment.route else None
        entries: list[tuple[str, str, int]] = []
        if account is not None and payment.ledger_fen is not None:
            entries.append((account, AmountType.LEDGER_BALANCE, payment.ledger_fen))
        if account is not None and payment.balance_fen is not None:
            entries.append((account, AmountType.AVAILABLE_BALANCE, payment.balance_fen))
        if approved and payment.kind == Kind.MEDICAL:
            entries.append((Account.MEDICAL, AmountType.PERSONAL_ACCOUNT, -payment.medical_fen))
            entries.append((Account.DEFAULT, AmountType.BANK_ACCOUNT, -payment.bank_fen))
        if entries:
            extra["54"] = additional_amounts(entries)
        return response_fields(request, payment.code, extra)

    def _decided(self, fx: Effects, payment: IsoPayment, waiters: list[_Waiter], now: int) -> None:
        """Journal `payment` and answer everyone waiting for it; run deferred reversals."""
        self._commit(fx, payment)
        deferred = []
        for waiter in waiters:
            if waiter.deferred is not None:
                deferred.append(waiter)
                continue
            fields = self._payment_fields(payment, waiter.fields)
            self._answer(fx, waiter.sink, fields, waiter.key, payment.kind)
        for waiter in deferred:
            assert waiter.deferred is not None
            self._request(waiter.deferred, waiter.sink, now, fx)

    # -- merchants and acquirers -----------------------------------------------------------

    def requests(
        self, messages: list[IsoMessage | RejectedMessage], sink: AnswerSink, now_ms: int
    ) -> Effects:
        fx = Effects()
        for message in messages:
            self._request(message, sink, now_ms, fx)
        return fx

    def _request(
        self, message: IsoMessage | RejectedMessage, sink: AnswerSink | None, now: int, fx: Effects
    ) -> None:
        if type(message) is RejectedMessage:
            # Unsigned: its MAC was never checked, and signing answers to bytes anyone can
            # send would hand out MACs for free.
            fields = {"t": response_mti(message.mti or Mti.NETWORK), "39": message.error.code}
            self._answer(fx, sink, fields, None, INVALID)
            return
        assert type(message) is IsoMessage
        fields = message.fields
        terminal = self.engine.terminals.get(fields.get("41", "").rstrip(" "))
        if terminal is None:
            self._answer(fx, sink, response_fields(fields, C.INVALID_MERCHANT, {}), None, INVALID)
            return
        key = terminal.key
        if not message.verify(key):
            self._answer(fx, sink, response_fields(fields, C.SECURITY_VIOLATION, {}), None, INVALID)
            return
        try:
            request = parse_request(message)
        except RemoteProtocolError as exc:
            self._answer(fx, sink, response_fields(fields, exc.code, {}), key, INVALID)
            return
        if request.mti == Mti.NETWORK:
            known = request.network_code in NetworkCode._value2member_map_
            code = APPROVED if known else C.INVALID_TRANSACTION.value
            self._answer(fx, sink, response_fields(fields, code, {}), key, "network")
            return
        content = fingerprint(request)
        window_key = (request.stan, request.transmission)
        outcome = self.state.outcome(terminal.terminal_id, window_key)
        if outcome is not None:
            if outcome.payment.content == content:
                answer = self._payment_fields(outcome.payment, fields)
            else:
                answer = response_fields(fields, C.DUPLICATE_TRANSMISSION, {})
            self._answer(fx, sink, answer, key, outcome.payment.kind)
            return
        pending = self.state.pending_keys.get((terminal.terminal_id, *window_key))
        if pending is not None:
            if self.state.pending[pending].content == content:
                self._waiters.setdefault(pending, []).append(_Waiter(sink, fields, key))
            else:
                answer = response_fields(fields, C.DUPLICATE_TRANSMISSION, {})
                self._answer(fx, sink, answer, key, self.state.pending[pending].kind)
            return
        waiter = _Waiter(sink, fields, key)
        if request.mti in (Mti.REVERSAL, Mti.REVERSAL_ADVICE):
            self._reversal(terminal, request, content, message, waiter, now, fx)
        elif request.mti == Mti.FINANCIAL_ADVICE:
            self._completion(terminal, request, content, waiter, now, fx)
        else:
            self._new_payment(terminal, request, content, waiter, now, fx)

    def _declined(
        self,
        fx: Effects,
        waiter: _Waiter,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        kind: Kind,
        code: ResponseCode | str,
        now: int,
        *,
        route: str = "",
        balance_fen: int | None = None,
    ) -> None:
        payment = IsoPayment(
            now,
            terminal.terminal_id,
            request.stan,
            request.transmission,
            request.mti,
            kind,
            request.card,
            request.amount_fen,
            str(code),
            self._reference(),
            content,
            route=route,
            balance_fen=balance_fen,
        )
        self._decided(fx, payment, [waiter], now)

    def _kind(self, terminal: TerminalState, request: IsoRequest) -> Kind | None:
        tt = request.transaction_type
        if tt == TransactionType.BALANCE:
            return Kind.BALANCE
        if tt == TransactionType.PURCHASE:
            if request.mti == Mti.AUTHORISATION:
                return Kind.PREAUTH
            return Kind.MEDICAL if terminal.kind == TerminalKind.MEDICAL else Kind.PURCHASE
        if tt == TransactionType.BILL_PAYMENT and request.mti == Mti.FINANCIAL:
            return Kind.BILL
        return None

    def _route(self, terminal: TerminalState, kind: Kind, account: str) -> Route | ResponseCode:
        if kind == Kind.MEDICAL:
            return Route.MEDICAL
        if account == Account.TRANSIT_PURSE and kind != Kind.BILL:
            return Route.PURSE
        if account == Account.MEDICAL:
            if terminal.kind != TerminalKind.MEDICAL:
                return C.NOT_PERMITTED_TO_TERMINAL
            return Route.MEDICAL
        if account in BANK_ACCOUNTS:
            return Route.BANK
        return C.INVALID_TRANSACTION

    @staticmethod
    def _refusal(card: Card, route: Route) -> ResponseCode | None:
        if route == Route.MEDICAL and card.status == CardStatus.SUSPENDED:
            return C.RESTRICTED_CARD  # regulation art. 17: social-security functions stop
        return PURSE_REFUSAL[card.status]

    def _new_payment(
        self,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        waiter: _Waiter,
        now: int,
        fx: Effects,
    ) -> None:
        kind = self._kind(terminal, request)
        if kind is None:
            self._declined(
                fx, waiter, terminal, request, content, Kind.PURCHASE, C.INVALID_TRANSACTION, now
            )
            return

        def decline(code: ResponseCode) -> None:
            self._declined(fx, waiter, terminal, request, content, kind, code, now)

        if kind not in ALLOWED[terminal.kind]:
            decline(C.NOT_PERMITTED_TO_TERMINAL)
            return
        route = self._route(terminal, kind, request.account)
        if not isinstance(route, Route):
            decline(route)
            return
        card = self.engine.cards.get(request.card)
        if card is None:
            decline(C.INVALID_CARD)
            return
        refusal = self._refusal(card, route)
        if refusal is not None:
            decline(refusal)
            return
        if kind != Kind.BALANCE:
            if request.amount_fen <= 0 or request.currency != CURRENCY_CNY:
                decline(C.INVALID_AMOUNT)
                return
            limit = self.engine.config.purchase_amount_max_fen
            if route == Route.PURSE and request.amount_fen > limit:
                decline(C.EXCEEDS_AMOUNT_LIMIT)
                return
        if route == Route.PURSE:
            self._purse(terminal, request, content, kind, card, waiter, now, fx)
        elif kind == Kind.MEDICAL:
            self._medical(terminal, request, content, card, waiter, now, fx)
        elif kind == Kind.BILL:
            if not request.biller or not request.bill_reference:
                decline(C.FORMAT_ERROR)
                return
            bill = f"{request.biller}/{request.bill_reference}"
            if bill in self.state.bills or bill in self.state.pending_bills:
                decline(C.BILL_ALREADY_PAID)
                return
            self._to_bank(
                terminal, request, content, kind, card, request.amount_fen, 0, waiter, now, fx
            )
        elif kind == Kind.BALANCE and route == Route.MEDICAL:
            available = self.state.medical_available(card)
            payment = self._payment(terminal, request, content, kind, card, now, route=route)
            payment_fields = {"balance_fen": available, "ledger_fen": card.medical_fen}
            self._decided(fx, _replace(payment, **payment_fields), [waiter], now)
        else:
            self._to_bank(
                terminal, request, content, kind, card, request.amount_fen, 0, waiter, now, fx
            )

    def _payment(
        self,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        kind: Kind,
        card: Card,
        now: int,
        *,
        route: Route,
        reference: int | None = None,
    ) -> IsoPayment:
        """An approval moving nothing yet; callers add the legs."""
        return IsoPayment(
            now,
            terminal.terminal_id,
            request.stan,
            request.transmission,
            request.mti,
            kind,
            card.number,
            request.amount_fen,
            APPROVED,
            self._reference() if reference is None else reference,
            content,
            route=route,
            payee=self._payee(terminal, request, kind),
        )

    @staticmethod
    def _payee(terminal: TerminalState, request: IsoRequest, kind: Kind) -> str:
        if kind == Kind.BILL:
            return f"biller:{request.biller}"
        return terminal.owner

    def _purse(
        self,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        kind: Kind,
        card: Card,
        waiter: _Waiter,
        now: int,
        fx: Effects,
    ) -> None:
        available = self.state.purse_available(card)
        payment = self._payment(terminal, request, content, kind, card, now, route=Route.PURSE)
        amount = request.amount_fen
        if kind == Kind.BALANCE:
            payment = _replace(payment, balance_fen=available, ledger_fen=card.purse_fen)
        elif available < amount:
            payment = _replace(payment, code=C.INSUFFICIENT_FUNDS.value, balance_fen=available)
            payment = _replace(payment, payee="")
        elif kind == Kind.PREAUTH:
            expires = now + self.config.hold_expiry_s * 1000
            payment = _replace(payment, hold_fen=amount, hold_expires_ms=expires)
            heapq.heappush(self._expiries, (expires, payment.reference))
        else:
            payment = _replace(
                payment, purse_fen=-amount, payee_fen=amount, balance_fen=available - amount
            )
        self._decided(fx, payment, [waiter], now)

    def _medical(
        self,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        card: Card,
        waiter: _Waiter,
        now: int,
        fx: Effects,
    ) -> None:
        """The insurance platform decided the pooled-fund share; the holder's share is paid
        from the personal account as far as it goes, the rest from the bank account."""
        total, pooled = request.amount_fen, request.pooled_fen
        if not 0 <= pooled <= total:
            self._declined(
                fx, waiter, terminal, request, content, Kind.MEDICAL, C.INVALID_AMOUNT, now
            )
            return
        share = total - pooled
        personal = min(share, self.state.medical_available(card))
        remainder = share - personal
        if remainder == 0:
            payment = self._payment(
                terminal, request, content, Kind.MEDICAL, card, now, route=Route.MEDICAL
            )
            payment = _replace(payment, medical_fen=-personal, payee_fen=personal)
            self._decided(fx, payment, [waiter], now)
        elif self.config.medical_remainder == MedicalRemainder.REFUSE:
            self._declined(
                fx,
                waiter,
                terminal,
                request,
                content,
                Kind.MEDICAL,
                C.INSUFFICIENT_FUNDS,
                now,
                route=Route.MEDICAL,
                balance_fen=self.state.medical_available(card),
            )
        else:
            self._to_bank(
                terminal, request, content, Kind.MEDICAL, card, remainder, personal, waiter, now, fx
            )

    # -- to a bank -----------------------------------------------------------------------

    def _to_bank(
        self,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        kind: Kind,
        card: Card,
        bank_fen: int,
        medical_fen: int,
        waiter: _Waiter,
        now: int,
        fx: Effects,
    ) -> None:
        route = Route.MEDICAL if kind == Kind.MEDICAL else Route.BANK
        bank_id = self.router.route(card.number, card.bank_id)
        if bank_id is None:
            self._declined(
                fx, waiter, terminal, request, content, kind, C.NO_ROUTE, now, route=route
            )
            return
        link = self.links[bank_id]
        queue = self.state.saf.get(bank_id, {})
        pending = sum(1 for sent in self.state.pending.values() if sent.bank_id == bank_id)
        if len(queue) + 2 > SAF_ENTRIES_MAX or pending >= PENDING_PER_BANK_MAX:
            self._declined(
                fx, waiter, terminal, request, content, kind, C.ISSUER_UNAVAILABLE, now, route=route
            )
            return
        bill = f"{request.biller}/{request.bill_reference}" if kind == Kind.BILL else ""
        if not self.statistics.links_up[bank_id]:
            payment = self._payment(terminal, request, content, kind, card, now, route=route)
            payment = _replace(payment, bank_id=bank_id, bill=bill)
            if self._standin_allowed(link, kind, card, bank_fen, now):
                self._stand_in(fx, payment, bank_fen, medical_fen, [waiter], now)
            else:
                payment = _replace(payment, code=C.ISSUER_UNAVAILABLE.value, payee="")
                self._decided(fx, payment, [waiter], now)
            return
        reference = self._reference()
        mti = Mti.AUTHORISATION if request.mti == Mti.AUTHORISATION else Mti.FINANCIAL
        processing = f"{request.transaction_type}{Account.DEFAULT}00"
        sent = BankRequestSent(
            now,
            reference,
            bank_id,
            mti,
            _stan(reference),
            transmission_time(now),
            processing,
            bank_fen,
            now + link.timeout_ms,
            terminal.terminal_id,
            request.stan,
            request.transmission,
            request.mti,
            kind,
            card.number,
            request.amount_fen,
            content,
            medical_fen=medical_fen,
            payee=self._payee(terminal, request, kind),
            bill=bill,
        )
        self._commit(fx, sent)
        self._waiters[reference] = [waiter]
        heapq.heappush(self._deadlines, (sent.deadline_ms, reference))
        message = {
            "t": mti,
            "2": card.number,
            "3": processing,
            "4": _amount(bank_fen),
            "7": sent.bank_transmission,
            "11": sent.bank_stan,
            "32": ACQUIRER_ID,
            "37": f"{reference:012d}",
            "41": terminal.terminal_id.ljust(TERMINAL_ID_LENGTH)[:TERMINAL_ID_LENGTH],
            "42": sent.payee.ljust(MERCHANT_ID_LENGTH)[:MERCHANT_ID_LENGTH],
            "49": CURRENCY_CNY,
        }
        if bill:
            message["48"] = tlv(
                {BillTag.BILLER: request.biller, BillTag.BILL_REFERENCE: request.bill_reference}
            )
        fx.to_banks.append((bank_id, message))

    def _standin_allowed(
        self, link: BankLink, kind: Kind, card: Card, bank_fen: int, now: int
    ) -> bool:
        """Stand-in approves from the last known status: an active card, within the floor."""
        return (
            link.standin
            and kind in STANDIN_KINDS
            and card.status == CardStatus.ACTIVE
            and self.state.standin_used(card.number, now) + bank_fen <= link.standin_floor_fen
        )

    def _stand_in(
        self,
        fx: Effects,
        payment: IsoPayment,
        bank_fen: int,
        medical_fen: int,
        waiters: list[_Waiter],
        now: int,
        *,
        bank_reference: int | None = None,
    ) -> None:
        """Approve for the bank; the advice tells it once the link is back."""
        bank_reference = payment.reference if bank_reference is None else bank_reference
        kind = Kind(payment.kind)
        if kind == Kind.PREAUTH:
            expires = now + self.config.hold_expiry_s * 1000
            payment = _replace(payment, hold_fen=bank_fen, hold_expires_ms=expires)
            heapq.heappush(self._expiries, (expires, payment.reference))
        else:
            payment = _replace(
                payment,
                bank_fen=-bank_fen,
                medical_fen=-medical_fen,
                payee_fen=bank_fen + medical_fen,
            )
        payment = _replace(payment, code=APPROVED, standin=True, bank_reference=bank_reference)
        self._decided(fx, payment, waiters, now)
        advice = Mti.AUTHORISATION_ADVICE if kind == Kind.PREAUTH else Mti.FINANCIAL_ADVICE
        self._queue(
            fx, payment.bank_id, advice, bank_reference, payment.card, bank_fen, payment, now
        )

    def _queue(
        self,
        fx: Effects,
        bank_id: str,
        mti: str,
        reference: int,
        card: str,
        amount_fen: int,
        about: IsoPayment | BankRequestSent,
        now: int,
        original: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        tt = TransactionType.BILL_PAYMENT if about.kind == Kind.BILL else TransactionType.PURCHASE
        entry = SafQueued(
            now,
            self._reference(),
            bank_id,
            mti,
            reference,
            card,
            amount_fen,
            f"{tt}{Account.DEFAULT}00",
            about.terminal_id,
            *original,
        )
        self._commit(fx, entry)
        self._pump(bank_id, now, fx)

    def _reverse_at_bank(self, fx: Effects, sent: BankRequestSent, now: int) -> None:
        self._queue(
            fx,
            sent.bank_id,
            Mti.REVERSAL,
            sent.reference,
            sent.card,
            sent.bank_amount_fen,
            sent,
            now,
            (sent.bank_mti, sent.bank_stan, sent.bank_transmission),
        )

    # -- the bank answers ----------------------------------------------------------------

    def bank_message(self, bank_id: str, message: IsoMessage, now_ms: int) -> Effects:
        fx = Effects()
        fields = message.fields
        rrn = fields.get("37", "")
        reference = int(rrn) if rrn.isascii() and rrn.isdigit() else -1
        code = fields.get("39", C.SYSTEM_MALFUNCTION.value)
        mti = message.mti
        if mti in (Mti.AUTHORISATION_RESPONSE, Mti.FINANCIAL_RESPONSE):
            sent = self.state.pending.get(reference)
            if sent is not None and sent.bank_id == bank_id:
                self._bank_decided(sent, code, fields, now_ms, fx)
            elif self.state.timed_out.get(reference) == bank_id:
                amount = fields.get("4", "0")
                late = BankLateReply(
                    now_ms, bank_id, reference, code, int(amount) if amount.isdigit() else 0
                )
                self._commit(fx, late)
                log.warning(
                    "bank %s answered %s late (%s): reversal stands",
                    bank_id,
                    rrn,
                    code,
                    extra=correlate(bank=bank_id, rrn=rrn, stan=fields.get("11", "")),
                )
            else:
                self.statistics.unmatched_replies_total += 1
                log.warning(
                    "bank %s: answer %s %s matches nothing",
                    bank_id,
                    mti,
                    rrn,
                    extra=correlate(bank=bank_id, rrn=rrn, stan=fields.get("11", "")),
                )
        elif mti in (
            Mti.REVERSAL_RESPONSE,
            Mti.REVERSAL_ADVICE_RESPONSE,
            Mti.FINANCIAL_ADVICE_RESPONSE,
            Mti.AUTHORISATION_ADVICE_RESPONSE,
        ):
            self._acknowledged(bank_id, fields.get("11", ""), reference, code, now_ms, fx)
        else:
            self.statistics.unmatched_replies_total += 1
            log.warning("bank %s sent %s, which the switch does not expect", bank_id, mti)
        return fx

    def _bank_decided(
        self, sent: BankRequestSent, code: str, fields: dict[str, str], now: int, fx: Effects
    ) -> None:
        self.statistics.bank_seconds[sent.bank_id].observe((now - sent.time_ms) / 1000)
        kind = Kind(sent.kind)
        payment = _payment_from(
            sent,
            now,
            code if len(code) == 2 else C.SYSTEM_MALFUNCTION.value,
            bank_reference=sent.reference,
            payee=sent.payee if code == APPROVED else "",
        )
        if code == APPROVED:
            if kind == Kind.BALANCE:
                balances = _bank_balances(fields)
                payment = _replace(payment, ledger_fen=balances[0], balance_fen=balances[1])
            elif kind == Kind.PREAUTH:
                expires = now + self.config.hold_expiry_s * 1000
                payment = _replace(payment, hold_fen=sent.bank_amount_fen, hold_expires_ms=expires)
                heapq.heappush(self._expiries, (expires, sent.reference))
            else:
                payment = _replace(
                    payment,
                    bank_fen=-sent.bank_amount_fen,
                    medical_fen=-sent.medical_fen,
                    payee_fen=sent.bank_amount_fen + sent.medical_fen,
                )
        self._decided(fx, payment, self._waiters.pop(sent.reference, []), now)

    def _acknowledged(
        self, bank_id: str, stan: str, reference: int, code: str, now: int, fx: Effects
    ) -> None:
        queue = self.state.saf.get(bank_id, {})
        for entry in queue.values():
            if _stan(entry.entry) == stan and entry.reference == reference:
                break
        else:
            self.statistics.unmatched_replies_total += 1
            return
        progress = self._saf_progress.setdefault(entry.entry, _SafProgress())
        progress.in_flight = False
        if code in SAF_RETRY_CODES:
            return  # the retry timer set when it was sent brings it back
        self._commit(fx, SafDelivered(now, bank_id, entry.entry, code))
        self._saf_progress.pop(entry.entry, None)
        self._saf_recovered.discard(entry.entry)
        self._pump(bank_id, now, fx)

    # -- store and forward -----------------------------------------------------------------

    def _pump(self, bank_id: str, now: int, fx: Effects) -> None:
        """Send the head of the bank's queue if it is due: one at a time, in order, so a
        reversal always reaches the bank before the advice queued after it."""
        if not self.statistics.links_up.get(bank_id):
            return
        queue = self.state.saf.get(bank_id)
        if not queue:
            return
        entry = next(iter(queue.values()))
        progress = self._saf_progress.setdefault(entry.entry, _SafProgress())
        if progress.in_flight and now < progress.next_try_ms:
            return
        if not progress.in_flight and progress.attempts and now < progress.next_try_ms:
            return
        repeat = progress.attempts > 0 or entry.entry in self._saf_recovered
        progress.attempts += 1
        progress.in_flight = True
        backoff = min(SAF_RETRY_MS_MIN << min(progress.attempts - 1, 16), SAF_RETRY_MS_MAX)
        progress.next_try_ms = now + backoff
        mti = entry.mti[:3] + ("1" if repeat else "0")
        message = {
            "t": mti,
            "2": entry.card,
            "3": entry.processing,
            "4": _amount(entry.amount_fen),
            "7": transmission_time(now),
            "11": _stan(entry.entry),
            "32": ACQUIRER_ID,
            "37": f"{entry.reference:012d}",
            "41": entry.terminal_id.ljust(TERMINAL_ID_LENGTH)[:TERMINAL_ID_LENGTH],
            "49": CURRENCY_CNY,
        }
        if entry.original_mti:
            message["90"] = original_data(
                entry.original_mti,
                entry.original_stan,
                entry.original_transmission or "0" * 10,
                ACQUIRER_ID,
            )
        fx.to_banks.append((bank_id, message))

    # -- links and time --------------------------------------------------------------------

    def link_up(self, bank_id: str, now_ms: int) -> Effects:
        fx = Effects()
        self.statistics.links_up[bank_id] = True
        log.info("bank %s: link up", bank_id)
        for entry in self.state.saf.get(bank_id, {}).values():
            progress = self._saf_progress.get(entry.entry)
            if progress is not None:  # whatever was in flight went with the old link
                progress.in_flight = False
                progress.next_try_ms = now_ms
        self._pump(bank_id, now_ms, fx)
        return fx

    def link_down(self, bank_id: str, now_ms: int) -> Effects:
        if self.statistics.links_up.get(bank_id):
            log.warning("bank %s: link down", bank_id)
        self.statistics.links_up[bank_id] = False
        return Effects()

    def next_deadline_ms(self) -> int | None:
        candidates = []
        if self._deadlines:
            candidates.append(self._deadlines[0][0])
        if self._expiries:
            candidates.append(self._expiries[0][0])
        for bank_id, queue in self.state.saf.items():
            if queue and self.statistics.links_up.get(bank_id):
                progress = self._saf_progress.get(next(iter(queue)))
                candidates.append(progress.next_try_ms if progress is not None else 0)
        return min(candidates) if candidates else None

    def tick(self, now_ms: int) -> Effects:
        fx = Effects()
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            _, reference = heapq.heappop(self._deadlines)
            sent = self.state.pending.get(reference)
            if sent is not None:
                self.statistics.timeouts_total[sent.bank_id] += 1
                self._timed_out(sent, self._waiters.pop(reference, []), now_ms, fx, standin=True)
        while self._expiries and self._expiries[0][0] <= now_ms:
            _, reference = heapq.heappop(self._expiries)
            hold = self.state.holds.get(reference)
            if hold is not None and hold.expires_ms <= now_ms:
                self._commit(fx, HoldExpired(now_ms, reference))
                if hold.payment.route == Route.BANK:
                    self._release_at_bank(fx, hold.payment, now_ms)
        for bank_id in self.state.saf:
            self._pump(bank_id, now_ms, fx)
        return fx

    def recover(self, now_ms: int) -> Effects:
        """Requests an earlier run sent to a bank and never decided: the bank may have acted
        on them, and no one waits for their answer. Decline and reverse each."""
        fx = Effects()
        for sent in list(self.state.pending.values()):
            log.warning(
                "bank %s: request %d unresolved at start: reversing", sent.bank_id, sent.reference
            )
            self._timed_out(sent, [], now_ms, fx, standin=False)
        return fx

    def _timed_out(
        self,
        sent: BankRequestSent,
        waiters: list[_Waiter],
        now: int,
        fx: Effects,
        *,
        standin: bool,
    ) -> None:
        link = self.links[sent.bank_id]
        kind = Kind(sent.kind)
        payment = _payment_from(sent, now, C.ISSUER_UNAVAILABLE.value, timed_out=True)
        card = self.engine.cards[sent.card]
        stand_in = (
            standin
            and link.on_timeout == OnTimeout.STANDIN
            and self._standin_allowed(link, kind, card, sent.bank_amount_fen, now)
        )
        if stand_in:
            # The bank may or may not have acted on the original: reverse it, then advise
            # the stand-in approval under a new RRN. The bank ends with exactly one debit,
            # whichever way the original went.
            self._reverse_at_bank(fx, sent, now)
            self._stand_in(
                fx,
                _replace(payment, payee=sent.payee),
                sent.bank_amount_fen,
                sent.medical_fen,
                waiters,
                now,
                bank_reference=self._reference(),
            )
            return
        self._decided(fx, payment, waiters, now)
        if kind != Kind.BALANCE:  # an inquiry moved nothing: nothing to reverse
            self._reverse_at_bank(fx, sent, now)

    def _release_at_bank(self, fx: Effects, preauth: IsoPayment, now: int) -> None:
        self._queue(
            fx,
            preauth.bank_id,
            Mti.REVERSAL,
            preauth.bank_reference,
            preauth.card,
            preauth.hold_fen,
            preauth,
            now,
            (Mti.AUTHORISATION, _stan(preauth.bank_reference), ""),
        )

    # -- reversals and completions from merchants -----------------------------------------

    def _reversal(
        self,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        message: IsoMessage,
        waiter: _Waiter,
        now: int,
        fx: Effects,
    ) -> None:
        original = request.original
        assert original is not None
        original_key = (terminal.terminal_id, original.stan, original.transmission)
        pending = self.state.pending_keys.get(original_key)
        if pending is not None:
            # The merchant gave up before the bank answered: reverse once it is decided.
            self._waiters[pending].append(
                _Waiter(waiter.sink, waiter.fields, waiter.key, deferred=message)
            )
            return
        outcome = self.state.outcome(terminal.terminal_id, original_key[1:])

        def decline(code: ResponseCode) -> None:
            self._declined(fx, waiter, terminal, request, content, Kind.REVERSAL, code, now)

        if outcome is None:
            decline(C.ORIGINAL_NOT_FOUND)
            return
        paid = outcome.payment
        moved = paid.purse_fen or paid.medical_fen or paid.bank_fen
        open_hold = paid.kind == Kind.PREAUTH and paid.reference in self.state.holds
        if paid.code != APPROVED or not (moved or open_hold):
            decline(C.INVALID_TRANSACTION)
            return
        if outcome.reversed:
            decline(C.DUPLICATE_TRANSMISSION)
            return
        reversal = IsoPayment(
            now,
            terminal.terminal_id,
            request.stan,
            request.transmission,
            request.mti,
            Kind.REVERSAL,
            paid.card,
            paid.amount_fen,
            APPROVED,
            self._reference(),
            content,
            route=paid.route,
            purse_fen=-paid.purse_fen,
            medical_fen=-paid.medical_fen,
            bank_fen=-paid.bank_fen,
            bank_id=paid.bank_id,
            bank_reference=paid.bank_reference,
            payee=paid.payee,
            payee_fen=-paid.payee_fen,
            original=paid.reference,
            hold_fen=-paid.hold_fen if open_hold else 0,
            bill=paid.bill,
        )
        self._decided(fx, reversal, [waiter], now)
        if paid.bank_fen:
            self._queue(
                fx,
                paid.bank_id,
                Mti.REVERSAL,
                paid.bank_reference,
                paid.card,
                -paid.bank_fen,
                paid,
                now,
                (paid.mti, _stan(paid.bank_reference), ""),
            )
        elif open_hold and paid.route == Route.BANK:
            self._release_at_bank(fx, paid, now)

    def _completion(
        self,
        terminal: TerminalState,
        request: IsoRequest,
        content: str,
        waiter: _Waiter,
        now: int,
        fx: Effects,
    ) -> None:
        original = request.original
        assert original is not None

        def decline(code: ResponseCode) -> None:
            self._declined(fx, waiter, terminal, request, content, Kind.COMPLETION, code, now)

        if Kind.COMPLETION not in ALLOWED[terminal.kind]:
            decline(C.NOT_PERMITTED_TO_TERMINAL)
            return
        held = self.state.holds_by_key.get(
            (terminal.terminal_id, original.stan, original.transmission)
        )
        if held is None:
            decline(C.ORIGINAL_NOT_FOUND)
            return
        hold = self.state.holds[held]
        amount = request.amount_fen
        if not 0 < amount <= hold.fen:
            decline(C.INVALID_AMOUNT)
            return
        preauth = hold.payment
        card = self.engine.cards[preauth.card]
        route = Route(preauth.route)
        payment = IsoPayment(
            now,
            terminal.terminal_id,
            request.stan,
            request.transmission,
            request.mti,
            Kind.COMPLETION,
            card.number,
            amount,
            APPROVED,
            self._reference(),
            content,
            route=route,
            bank_id=preauth.bank_id,
            bank_reference=preauth.bank_reference,
            payee=preauth.payee,
            payee_fen=amount,
            original=preauth.reference,
            hold_fen=-hold.fen,  # a partial completion releases the rest of the hold
        )
        if route == Route.PURSE:
            payment = _replace(payment, purse_fen=-amount, balance_fen=card.purse_fen - amount)
            self._decided(fx, payment, [waiter], now)
            return
        payment = _replace(payment, bank_fen=-amount)
        self._decided(fx, payment, [waiter], now)
        self._queue(
            fx,
            preauth.bank_id,
            Mti.FINANCIAL_ADVICE,
            preauth.bank_reference,
            card.number,
            amount,
            payment,
            now,
            (Mti.AUTHORISATION, _stan(preauth.bank_reference), ""),
        )


def _replace(payment: IsoPayment, **changes: object) -> IsoPayment:
    return msgspec.structs.replace(payment, **changes)


def _bank_balances(fields: dict[str, str]) -> tuple[int | None, int | None]:
    ledger = available = None
    try:
        entries = parse_additional_amounts(fields.get("54", ""))
    except RemoteProtocolError:
        return None, None
    for _account, kind, _currency, amount in entries:
        if kind == AmountType.LEDGER_BALANCE:
            ledger = amount
        elif kind == AmountType.AVAILABLE_BALANCE:
            available = amount
    return ledger, available


def _payment_from(sent: BankRequestSent, now: int, code: str, **extra: Any) -> IsoPayment:
    """The decision on a request that went to the bank, with what differs by outcome."""
    kind = Kind(sent.kind)
    return IsoPayment(
        now,
        sent.terminal_id,
        sent.stan,
        sent.transmission,
        sent.mti,
        kind,
        sent.card,
        sent.amount_fen,
        code,
        sent.reference,
        sent.content,
        route=Route.MEDICAL if kind == Kind.MEDICAL else Route.BANK,
        bank_id=sent.bank_id,
        bill=sent.bill,
        **extra,
    )
