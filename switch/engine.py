"""The authorisation engine: deterministic, synchronous, no I/O.

`Engine.authorise(frames, now_ms, records)` decides a whole batch of terminal requests
against the in-memory caches and returns the encoded answers; every decision that must be
remembered is appended to `records` for the journal, and the caller must not send the
answers before those records are durable. `Engine.apply(record)` replays a journal record
(at start, or an administrative change) through the very code that applied it live, so the
caches are always exactly a replay of the journal.

Order of checks for one request (docs/protocol.md repeats it for vendors):
    frame shape (30) → terminal known (03) → MAC (63) → echo answered → idempotency window
    (same seq + same content: the original answer again; different content or too old: 94)
    → message allowed for this terminal kind (58) → amount (13, 61) → card (14, 41) →
    funds (51) → approved (00).
Checks before the idempotency window are not journalled: they change nothing, and an
unauthenticated peer must not be able to fill the journal.
A `scan` (e-card QR code) is checked by switch.ecard.scan after the terminal kind, then
decided by the rules of the tap, purchase or balance it stands for on the physical card.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import msgspec

from protocols.codes import ResponseCode
from protocols.ecard import nonce_of
from protocols.terminal.codec import RejectedFrame, RequestFrame, encode_response
from protocols.terminal.mac import MacKey, key_check_value
from protocols.terminal.messages import (
    KIND,
    Balance,
    DenyListAnswer,
    DenyListRequest,
    Echo,
    OfflineUpload,
    Purchase,
    Request,
    Response,
    Reversal,
    Scan,
    Tap,
)
from settlement.records import SETTLEMENT_RECORDS
from settlement.state import SettlementState
from switch.banks.records import BANK_RECORDS
from switch.banks.state import PaymentState
from switch.casework.records import CASEWORK_RECORDS
from switch.casework.state import CaseworkState
from switch.config import EngineConfig
from switch.domain.identifiers import validate_card_number
from switch.domain.model import Card, CardCategory, CardStatus, TerminalKind
from switch.ecard.records import ECARD_RECORDS
from switch.ecard.scan import verify_scan
from switch.ecard.state import EcardState
from switch.errors import ConfigError, StateError
from switch.journal.records import (
    CardIssued,
    CardStatusChanged,
    Decision,
    EmergencyRelease,
    FareTableActivated,
    OfflineTapApplied,
    Record,
    TerminalRegistered,
)
from switch.lifecycle.records import LIFECYCLE_RECORDS
from switch.lifecycle.state import LifecycleState
from switch.privacy.audit import AuditIndex
from switch.privacy.records import PersonalDataRead
from switch.transit.denylist import BLOCKING_STATUSES, DenyList
from switch.transit.fares import FareBook, decode_fare_table
from switch.transit.rides import NO_STATE, Place, TapResult, TransitState, decide_tap

C = ResponseCode
APPROVED = C.APPROVED.value
# `code._value_`, not `code.value`, on the hot path: an Enum's `value` is a Python-level
# descriptor on 3.11 (0.3 µs, a few % of the event loop); `_value_` is the plain attribute
# behind it.

# Which requests each kind of terminal may send.
ALLOWED: dict[TerminalKind, frozenset[type[Request]]] = {
    TerminalKind.GATE: frozenset(
        {Tap, Balance, Reversal, Echo, DenyListRequest, OfflineUpload, Scan}
    ),
    TerminalKind.POS: frozenset({Purchase, Balance, Reversal, Echo, Scan}),
    TerminalKind.MEDICAL: frozenset({Scan, Balance, Reversal, Echo}),
}
# What a card's status does to a payment from its transit purse. The purse is a one-card
# (transport) function, not a social-security function, so a suspension under regulation
# art. 17 leaves it usable; the medical account is what a suspension blocks.
PURSE_REFUSAL: dict[CardStatus, ResponseCode | None] = {
    CardStatus.ACTIVE: None,
    CardStatus.SUSPENDED: None,
    CardStatus.TEMPORARILY_LOST: C.LOST_CARD,
    CardStatus.LOST: C.LOST_CARD,
    CardStatus.CANCELLED: C.INVALID_CARD,
    CardStatus.REPLACED: C.INVALID_CARD,
    CardStatus.ISSUED: C.NOT_PERMITTED_TO_CARDHOLDER,  # not activated yet (switch/lifecycle)
}
# Request kinds whose approval moves money out of the purse, and so can be reversed.
REVERSIBLE = frozenset({"tap", "purchase", "scan"})
# What the rules decide for a new request: code, card, signed purse movement, balance to
# disclose, and the card's transit state afterwards (None: unchanged).
Rules = tuple[ResponseCode, str, int, int | None, TransitState | None]
# Kind label for frames that never decoded far enough to have one (metrics only).
INVALID_KIND = "invalid"


class Outcome(msgspec.Struct, gc=False):
    """What the idempotency window remembers of one decided request.

    Not tracked by the cyclic garbage collector (gc=False): the windows hold hundreds of
    thousands of these, and full collections walking them stalled every answer for up to a
    third of a second (docs/performance.md). An Outcome refers only to an immutable
    Decision, so it can never be part of a reference cycle.
    """

    decision: Decision
    reversed: bool = False


# Offline taps a gate may re-upload and still have recognised: two full gate buffers
# (a gate stores ~25,000 taps while offline, facts.md).
OFFLINE_WINDOW = 50_000
# How far past its highest decided seq a terminal's next seq may jump. Clients without a
# counter take seqs from the clock in microseconds (switch.client.clock_seq: ~1.8e15 in
# 2026, 2**56 in the year 4253), so a fresh or restarted terminal jumps that far and no
# further; a seq beyond it (a corrupted counter near 2**63) is refused with 30.
SEQ_JUMP_MAX = 2**56
# Purse the pricing of an offline tap assumes: the ride happened, so it is priced in full
# and what the purse cannot pay becomes debt.
OFFLINE_PRICING_PURSE_FEN = 2**62


class TerminalState:
    __slots__ = (
        "denylist_synced_ms",
        "denylist_version",
        "high_seq",
        "key",
        "kind",
        "offline_high",
        "offline_seen",
        "owner",
        "place",
        "terminal_id",
        "window",
    )

    def __init__(
        self, terminal_id: str, kind: TerminalKind, owner: str, key: MacKey, place: Place
    ) -> None:
        self.terminal_id = terminal_id
        self.kind = kind
        self.owner = owner
        self.key = key
        self.place = place
        self.window: dict[int, Outcome] = {}
        self.high_seq = 0
        self.offline_seen: set[int] = set()
        self.offline_high = 0
        # Gates: the deny-list version the gate last finished downloading, and when. Not
        # journalled (downloads are read-only); the metrics count gates left behind.
        self.denylist_version = 0
        self.denylist_synced_ms = 0

    def offline_applied(self, offline_seq: int) -> bool:
        return offline_seq in self.offline_seen or offline_seq <= self.offline_high - OFFLINE_WINDOW

    def remember_offline(self, offline_seq: int) -> None:
        self.offline_seen.add(offline_seq)
        self.offline_high = max(self.offline_high, offline_seq)
        if len(self.offline_seen) > 2 * OFFLINE_WINDOW:
            floor = self.offline_high - OFFLINE_WINDOW
            self.offline_seen = {seq for seq in self.offline_seen if seq > floor}


Fingerprint = tuple[str, str, int, int, str]


def request_fingerprint(request: Request) -> Fingerprint:
    """The content a retry must repeat exactly; terminal time may differ between tries."""
    if type(request) is Tap:
        return ("tap", request.card, 0, 0, request.stop)
    if type(request) is Balance:
        return ("balance", request.card, 0, 0, "")
    if type(request) is Purchase:
        return ("purchase", request.card, request.amount_fen, 0, "")
    if type(request) is Reversal:
        return ("reversal", "", 0, request.original_seq, "")
    if type(request) is OfflineUpload:
        return ("offline", "", 0, 0, offline_digest(request))
    if type(request) is Scan:  # the code is identified by its signed one-time nonce
        return ("scan", nonce_of(request.qr).hex(), request.amount_fen, 0, request.stop)
    raise AssertionError(f"no fingerprint for {type(request).__name__}")


def offline_digest(request: OfflineUpload) -> str:
    """Identifies an upload's taps (its content for idempotency) in 16 hex digits."""
    return hashlib.blake2b(msgspec.msgpack.encode(request.taps), digest_size=8).hexdigest()


def decision_fingerprint(decision: Decision) -> Fingerprint:
    if decision.kind == "scan":
        return ("scan", decision.qr_nonce.hex(), decision.amount_fen, 0, decision.detail)
    card = "" if decision.kind == "reversal" else decision.card
    return (decision.kind, card, decision.amount_fen, decision.original_seq, decision.detail)


def response_for(decision: Decision) -> Response:
    return Response(
        decision.seq,
        decision.code,
        abs(decision.moved_fen),
        decision.balance_fen,
        decision.reference,
        decision.time_ms,
    )


class Engine:
    def __init__(self, config: EngineConfig, keys: Mapping[str, bytes]) -> None:
        self.config = config
        self._keys = keys
        self.cards: dict[str, Card] = {}
        self.terminals: dict[str, TerminalState] = {}
        self.next_reference = 1
        # (kind, code) -> requests answered; read by the metrics collector at scrape time.
        self.answered: dict[tuple[str, str], int] = {}
        # Fare tables by the time they take effect, oldest first.
        self.fare_books: list[tuple[int, FareBook]] = []
        self.transit: dict[str, TransitState] = {}
        self.denylist = DenyList()
        self.emergency_until_ms: dict[str, int] = {}
        self.ecard = EcardState(config.ecard)
        # The service API's state (switch/lifecycle, switch/privacy, switch/casework).
        self.lifecycle = LifecycleState()
        self.audit = AuditIndex()
        self.casework = CaseworkState()
        # ISO 8583 payments and partner banks: holds, pending bank requests, the
        # store-and-forward queues, stand-in usage, paid bills (switch/banks).
        self.payments = PaymentState(config.idempotency_window)
        # Settlement cycles, subsidy batches, resolved reconciliation exceptions
        # (settlement/): boundaries only; the money is computed from the journal.
        self.settlement = SettlementState()

    # -- replay and administrative changes -------------------------------------------------

    def apply(self, record: Record) -> None:
        """Apply one journal record to the caches (replay, or a change being journalled)."""
        if type(record) is Decision:
            terminal = self.terminals.get(record.terminal_id)
            if terminal is None:
                raise StateError(f"decision for unregistered terminal {record.terminal_id}")
            self._apply_decision(terminal, record)
        elif type(record) is CardIssued:
            self._issue(record)
        elif type(record) is CardStatusChanged:
            card = self.cards.get(record.card)
            if card is None:
                raise StateError(f"status change for unknown card {record.card}")
            card.status = CardStatus(record.status)
            self.denylist.record_change(record.card, self._blocked(card))
        elif type(record) is TerminalRegistered:
            self._register(record)
        elif type(record) is FareTableActivated:
            self._activate_fares(record)
        elif type(record) is EmergencyRelease:
            self.emergency_until_ms[record.network] = record.until_ms
        elif type(record) is OfflineTapApplied:
            terminal = self.terminals.get(record.terminal_id)
            if terminal is None:
                raise StateError(f"offline tap for unregistered terminal {record.terminal_id}")
            self._apply_offline(terminal, record)
        elif isinstance(record, ECARD_RECORDS):
            self.ecard.apply(record, self.cards)
        elif isinstance(record, LIFECYCLE_RECORDS):
            self.lifecycle.apply(record, self)
        elif isinstance(record, PersonalDataRead):
            self.audit.apply(record)
        elif isinstance(record, CASEWORK_RECORDS):
            self.casework.apply(record)
        elif isinstance(record, BANK_RECORDS):
            self.payments.apply(record, self.cards)
            self.next_reference = max(self.next_reference, self.payments.next_reference)
        elif isinstance(record, SETTLEMENT_RECORDS):
            self.settlement.apply(record)
        else:
            raise AssertionError(f"unhandled record {type(record).__name__}")

    def _issue(self, record: CardIssued) -> None:
        validate_card_number(record.card)
        if record.card in self.cards:
            raise StateError(f"card {record.card} issued twice")
        if not 0 <= record.purse_fen <= self.config.purse_cap_fen:
            raise StateError(f"card {record.card}: purse {record.purse_fen} outside the cap")
        if record.medical_fen < 0:
            raise StateError(f"card {record.card}: negative medical account")
        self.cards[record.card] = Card(
            record.card,
            holder_token=record.holder_token,
            holder_masked=record.holder_masked,
            category=CardCategory(record.category),
            status=CardStatus(record.status),
            purse_fen=record.purse_fen,
            medical_fen=record.medical_fen,
            bank_id=record.bank_id,
            bank_account_masked=record.bank_account_masked,
        )
        self.denylist.set_blocked(record.card, self._blocked(self.cards[record.card]))

    def _activate_fares(self, record: FareTableActivated) -> None:
        current = self.fare_books[-1][1].table.version if self.fare_books else 0
        if record.version <= current:
            raise StateError(f"fare table {record.version} activated after {current}")
        if self.fare_books and record.effective_ms < self.fare_books[-1][0]:
            raise StateError(f"fare table {record.version} takes effect before its predecessor")
        self.fare_books.append((record.effective_ms, FareBook(decode_fare_table(record.table))))

    def fare_book(self, now_ms: int) -> FareBook | None:
        """The table in force at `now_ms`: a new version applies from its effective time."""
        for effective_ms, book in reversed(self.fare_books):
            if effective_ms <= now_ms:
                return book
        return None

    def _register(self, record: TerminalRegistered) -> None:
        key = self._keys.get(record.terminal_id)
        if key is None:
            raise ConfigError(f"terminal {record.terminal_id}: no key in the key store")
        if key_check_value(key) != record.key_check_value:
            raise ConfigError(
                f"terminal {record.terminal_id}: key store key does not match the journal's "
                f"check value {record.key_check_value}"
            )
        self.terminals[record.terminal_id] = TerminalState(
            record.terminal_id,
            TerminalKind(record.kind),
            record.owner,
            MacKey(key),
            Place(record.line, record.station, record.direction),
        )

    def _apply_decision(self, terminal: TerminalState, decision: Decision) -> None:
        if decision.moved_fen:
            card = self.cards[decision.card]
            card.purse_fen += decision.moved_fen
            if card.purse_fen != decision.balance_fen or card.purse_fen < 0:
                raise StateError(
                    f"decision {decision.reference}: purse {card.purse_fen} after applying, "
                    f"record says {decision.balance_fen}"
                )
            if decision.kind == "reversal":
                # Absent only when replaying with a smaller window than the one that
                # decided: then no later request can reach the original anyway.
                original = terminal.window.get(decision.original_seq)
                if original is not None:
                    original.reversed = True
        if decision.transit is not None:
            self.transit[decision.card] = decision.transit
        window = terminal.window
        window[decision.seq] = Outcome(decision)
        terminal.high_seq = max(terminal.high_seq, decision.seq)
        size_max = self.config.idempotency_window
        if len(window) > 2 * size_max:
            # Drop what fell out of the window; amortised O(1) because this runs at most
            # once per `size_max` insertions. Evicting by age of insertion instead would
            # forget an in-window seq that arrived early, and let its retry move money.
            floor = terminal.high_seq - size_max
            terminal.window = {seq: o for seq, o in window.items() if seq > floor}
        if decision.kind == "scan":
            self.ecard.record_scan(decision.time_ms, decision.qr_nonce, decision.qr_forget_after_ms)
        if decision.reference >= self.next_reference:
            self.next_reference = decision.reference + 1

    # -- the hot path ----------------------------------------------------------------------

    def authorise(
        self, frames: list[RequestFrame | RejectedFrame], now_ms: int, records: list[Record]
    ) -> bytes:
        """Decide every frame of one read; returns the answers as one byte string, in
        request order. Appends the decisions to journal to `records`."""
        out = []
        answered = self.answered
        terminals = self.terminals
        for frame in frames:
            if type(frame) is RejectedFrame:
                response, key, kind = self._reject(frame, now_ms)
            else:
                assert type(frame) is RequestFrame
                response, key, kind = self._decide(frame, now_ms, terminals, records)
            out.append(encode_response(response, key))
            label = (kind, response.code)
            answered[label] = answered.get(label, 0) + 1
        return b"".join(out)

    def _reject(self, frame: RejectedFrame, now_ms: int) -> tuple[Response, None, str]:
        # Unsigned: the frame's MAC was never checked, and signing answers to bytes anyone
        # can send would hand out MACs for free. A terminal takes an unsigned answer as a
        # decline, which a format error is.
        return (
            Response(frame.seq, frame.error.code._value_, switch_time_ms=now_ms),
            None,
            INVALID_KIND,
        )

    def _decide(
        self,
        frame: RequestFrame,
        now_ms: int,
        terminals: dict[str, TerminalState],
        records: list[Record],
    ) -> tuple[Response, MacKey | None, str]:
        request = frame.request
        kind = KIND[type(request)]
        terminal = terminals.get(request.terminal_id)
        if terminal is None:
            return Response(request.seq, C.INVALID_MERCHANT, switch_time_ms=now_ms), None, kind
        key = terminal.key
        if not key.verify(frame.body, frame.mac):
            return Response(request.seq, C.SECURITY_VIOLATION, switch_time_ms=now_ms), None, kind
        if type(request) is Echo:
            return Response(request.seq, APPROVED, switch_time_ms=now_ms), key, kind
        if type(request) is DenyListRequest:
            return self._denylist(terminal, request, now_ms), key, kind
        # The window's floor is checked first: entries below it may linger until the next
        # sweep, and answering from them would make the window's edge depend on timing.
        if request.seq <= terminal.high_seq - self.config.idempotency_window:
            return self._duplicate(request, now_ms), key, kind
        if request.seq > terminal.high_seq + SEQ_JUMP_MAX:
            # Accepted, it would become the terminal's floor for good: a counter gone wild
            # would lock its own terminal out until someone reset it.
            return Response(request.seq, C.FORMAT_ERROR, switch_time_ms=now_ms), None, kind
        outcome = terminal.window.get(request.seq)
        if outcome is not None:
            if decision_fingerprint(outcome.decision) == request_fingerprint(request):
                return response_for(outcome.decision), key, kind
            return self._duplicate(request, now_ms), key, kind
        decision = self._decision(terminal, request, now_ms)
        if type(request) is OfflineUpload and decision.code == APPROVED:
            for tap in self._offline_taps(terminal, request, now_ms):
                records.append(tap)
                self._apply_offline(terminal, tap)
        records.append(decision)
        self._apply_decision(terminal, decision)
        return response_for(decision), key, kind

    def _denylist(self, terminal: TerminalState, request: DenyListRequest, now_ms: int) -> Response:
        if type(request) not in ALLOWED[terminal.kind]:
            return Response(request.seq, C.NOT_PERMITTED_TO_TERMINAL, switch_time_ms=now_ms)
        page = self.denylist.page(request.since_version, request.cursor)
        if not page.more:  # the gate holds page.version once it has applied this answer
            terminal.denylist_version = page.version
            terminal.denylist_synced_ms = now_ms
        return DenyListAnswer(
            request.seq,
            APPROVED,
            switch_time_ms=now_ms,
            denylist_version=page.version,
            full=page.full,
            more=page.more,
            added=page.added,
            removed=page.removed,
        )

    @staticmethod
    def _duplicate(request: Request, now_ms: int) -> Response:
        return Response(request.seq, C.DUPLICATE_TRANSMISSION, switch_time_ms=now_ms)

    def _decision(self, terminal: TerminalState, request: Request, now_ms: int) -> Decision:
        if type(request) is Scan:
            return self._scan(terminal, request, now_ms)
        kind = KIND[type(request)]
        card_number = getattr(request, "card", "")
        amount_fen = request.amount_fen if type(request) is Purchase else 0
        original_seq = request.original_seq if type(request) is Reversal else 0
        code, card_number, moved_fen, balance_fen, transit = self._rules(
            terminal, request, card_number, amount_fen, now_ms
        )
        reference = self.next_reference
        self.next_reference += 1
        return Decision(
            now_ms,
            request.terminal_time_ms,
            terminal.terminal_id,
            request.seq,
            kind,
            card_number,
            amount_fen,
            original_seq,
            code._value_,
            moved_fen,
            balance_fen,
            reference,
            request.stop
            if type(request) is Tap
            else offline_digest(request)
            if type(request) is OfflineUpload
            else "",
            transit,
        )

    def _scan(self, terminal: TerminalState, request: Scan, now_ms: int) -> Decision:
        """An e-card QR scan: switch.ecard checks the code and finds its physical card; the
        card is then decided by this engine's own rules for the request it stands for (a
        tap at a gate, a purchase at a POS), so both debit the same purse and count toward
        the same transit state and concessions."""
        if type(request) not in ALLOWED[terminal.kind]:
            verdict = None
            code = C.NOT_PERMITTED_TO_TERMINAL
        else:
            verdict = verify_scan(self.ecard, self.cards, terminal.kind, request, now_ms)
            code = verdict.code
        if verdict is not None and verdict.instead is not None:
            decision = self._decision(terminal, verdict.instead, now_ms)
        else:
            decision = Decision(
                now_ms,
                request.terminal_time_ms,
                terminal.terminal_id,
                request.seq,
                "scan",
                "" if verdict is None else verdict.card,
                0,
                0,
                code._value_,
                0,
                None,
                self.next_reference,
            )
            self.next_reference += 1
        return msgspec.structs.replace(
            decision,
            kind="scan",
            amount_fen=request.amount_fen,
            detail=request.stop,
            qr_nonce=nonce_of(request.qr) if verdict is None else verdict.nonce,
            qr_forget_after_ms=0 if verdict is None else verdict.forget_after_ms,
        )

    def _rules(
        self,
        terminal: TerminalState,
        request: Request,
        card_number: str,
        amount_fen: int,
        now_ms: int,
    ) -> Rules:
        """(code, card, signed purse movement, balance to disclose, transit state after)
        for a new request."""
        if type(request) not in ALLOWED[terminal.kind]:
            return C.NOT_PERMITTED_TO_TERMINAL, card_number, 0, None, None
        if type(request) is Reversal:
            return (*self._reversal_rules(terminal, request), None)
        if type(request) is OfflineUpload:
            return C.APPROVED, "", 0, None, None  # each tap is priced on its own
        if type(request) is Purchase:
            if amount_fen <= 0:
                return C.INVALID_AMOUNT, card_number, 0, None, None
            if amount_fen > self.config.purchase_amount_max_fen:
                return C.EXCEEDS_AMOUNT_LIMIT, card_number, 0, None, None
        card = self.cards.get(card_number)
        if card is None:
            return C.INVALID_CARD, card_number, 0, None, None
        refusal = PURSE_REFUSAL[card.status]
        if refusal is not None:
            return refusal, card_number, 0, None, None
        if type(request) is Balance:
            return C.APPROVED, card_number, 0, card.purse_fen, None
        if card.debt_fen > self.config.purse_debt_limit_fen:
            return C.INSUFFICIENT_FUNDS, card_number, 0, card.purse_fen, None
        if type(request) is Tap:
            return self._tap_rules(terminal, request, card, now_ms)
        # Pre-authorisation holds (ISO 8583, switch/banks) reserve part of the purse.
        if self.payments.purse_available(card) < amount_fen:
            return C.INSUFFICIENT_FUNDS, card_number, 0, card.purse_fen, None
        return C.APPROVED, card_number, -amount_fen, card.purse_fen - amount_fen, None

    def _tap_rules(self, terminal: TerminalState, request: Tap, card: Card, now_ms: int) -> Rules:
        book = self.fare_book(now_ms)
        if book is None:
            return C.NOT_PERMITTED_TO_TERMINAL, card.number, 0, None, None  # no fares yet
        result = self._price_tap(
            book,
            terminal,
            request.stop,
            card,
            self.transit.get(card.number, NO_STATE),
            self.payments.purse_available(card),  # less pre-authorisation holds
            now_ms,
        )
        if result.code is not C.APPROVED:
            balance = card.purse_fen if result.code is C.INSUFFICIENT_FUNDS else None
            return result.code, card.number, 0, balance, None
        charge = result.charge_fen
        return C.APPROVED, card.number, -charge, card.purse_fen - charge, result.state

    def _price_tap(
        self,
        book: FareBook,
        terminal: TerminalState,
        stop: str,
        card: Card,
        state: TransitState,
        purse_fen: int,
        now_ms: int,
    ) -> TapResult:
        place = terminal.place
        if stop:  # a bus validator says where it is
            place = Place(place.line, stop, place.direction)
        emergency_until_ms = self.emergency_until_ms.get(place.line, 0)
        return decide_tap(book, place, state, purse_fen, card.category, now_ms, emergency_until_ms)

    def _offline_taps(
        self, terminal: TerminalState, request: OfflineUpload, now_ms: int
    ) -> list[OfflineTapApplied]:
        """Price each new tap of an upload at its own time, in time order.

        A tap older than the card's latest tap already applied (it reached us late) is
        priced as a ride on its own and leaves the card's journey state alone: it cannot
        be fitted into a journey history that has moved on."""
        out: list[OfflineTapApplied] = []
        purses: dict[str, tuple[int, int]] = {}  # card -> (purse, debt) as the taps go
        states: dict[str, TransitState] = {}
        in_this_upload: set[int] = set()
        for tap in sorted(request.taps, key=lambda t: (t.time_ms, t.offline_seq)):
            if terminal.offline_applied(tap.offline_seq) or tap.offline_seq in in_this_upload:
                continue  # uploaded before: applied once, never again
            in_this_upload.add(tap.offline_seq)
            card = self.cards.get(tap.card)
            book = self.fare_book(tap.time_ms)
            code, charge, state = C.INVALID_CARD, 0, None
            if card is not None and book is not None:
                current = states.get(card.number) or self.transit.get(card.number, NO_STATE)
                in_order = tap.time_ms >= current.last_tap_ms
                base = current if in_order else NO_STATE
                result = self._price_tap(
                    book, terminal, tap.stop, card, base, OFFLINE_PRICING_PURSE_FEN, tap.time_ms
                )
                code, charge = result.code, result.charge_fen
                if in_order and result.state is not None:
                    state = result.state
                    states[card.number] = state
            elif card is not None:
                code = C.NOT_PERMITTED_TO_TERMINAL
            purse, debt = (0, 0)
            if card is not None:
                purse, debt = purses.get(card.number, (card.purse_fen, card.debt_fen))
            paid = min(charge, purse)
            purse, debt = purse - paid, debt + charge - paid
            if card is not None:
                purses[card.number] = (purse, debt)
            out.append(
                OfflineTapApplied(
                    now_ms,
                    terminal.terminal_id,
                    tap.offline_seq,
                    tap.time_ms,
                    tap.card,
                    tap.stop,
                    tap.grey,
                    code._value_,
                    charge,
                    paid,
                    purse,
                    debt,
                    state,
                )
            )
        return out

    def _apply_offline(self, terminal: TerminalState, record: OfflineTapApplied) -> None:
        terminal.remember_offline(record.offline_seq)
        card = self.cards.get(record.card)
        if card is None:
            return
        if card.purse_fen - record.paid_fen != record.purse_fen:
            raise StateError(
                f"offline tap {record.terminal_id}/{record.offline_seq}: purse "
                f"{card.purse_fen} - {record.paid_fen} is not {record.purse_fen}"
            )
        card.purse_fen = record.purse_fen
        card.debt_fen = record.debt_fen
        if record.transit is not None:
            self.transit[card.number] = record.transit
        self.denylist.set_blocked(card.number, self._blocked(card))

    def _blocked(self, card: Card) -> bool:
        """Whether gates must refuse the card without asking us (the deny-list)."""
        return card.status in BLOCKING_STATUSES or card.debt_fen > self.config.purse_debt_limit_fen

    def _reversal_rules(
        self, terminal: TerminalState, request: Reversal
    ) -> tuple[ResponseCode, str, int, int | None]:
        original = terminal.window.get(request.original_seq)
        if original is None or (
            request.original_seq <= terminal.high_seq - self.config.idempotency_window
        ):
            return C.ORIGINAL_NOT_FOUND, "", 0, None
        decision = original.decision
        if decision.kind not in REVERSIBLE or decision.code != APPROVED or not decision.moved_fen:
            return C.INVALID_TRANSACTION, decision.card, 0, None
        if original.reversed:
            return C.DUPLICATE_TRANSMISSION, decision.card, 0, None
        # A reversal returns money whatever the card's status: refusing it would keep a
        # holder's money for a ride or purchase that did not happen. A card replaced since
        # carried its purse to its replacement, so the money goes where the purse now is.
        card = self.cards[self.lifecycle.current_card(decision.card)]
        return C.APPROVED, card.number, -decision.moved_fen, card.purse_fen - decision.moved_fen
