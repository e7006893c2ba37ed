"""What a terminal sends under load, without I/O: shared by the asyncio load generator and
the locust users (which run on gevent), so both offer the same traffic.

A gate (a flat-fare validator, G0001..) mostly taps cards; a metro gate taps cards in at
its station's entry or out at its exit; a merchant terminal (POS) takes purchases and
answers balance enquiries. All send some requests the switch must decline (unknown card,
lost card, amount above the limit) and sometimes retry an earlier request whose answer they
already hold, as a terminal does after a timeout: the switch must answer a retry with
exactly the answer it gave the first time.

Cards are the demo cards (switch/demo.py): X00000001 and X00000008.. are active with a full
purse; X00000002..X00000007 sit in other states and are only used on purpose. Each script
walks the cards in a fixed stride rather than at random: a passenger taps the same line
rarely, and the switch refuses a second tap on a line within seconds (65).

Given a QrWallet, a share of passengers (Mix.qr_share) show their e-card's QR code instead
of the card, at gates and at shops: a fresh payment code, signed as the app service signs
it, which the switch decides exactly like the card's own tap or purchase. The bench's load
generator offers none (its share is 0): signing a code costs the generator more than the
switch spends on a tap, and the bench's traffic is the issue's taps, purchases and
enquiries. The locust station shows them (bench/locustfile.py).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

import msgspec

from protocols.ecard import BusinessType
from protocols.terminal import Balance, Purchase, Response, Scan, Tap, encode_request
from protocols.terminal.mac import MacKey
from switch.config import EngineConfig
from switch.demo import EMPTY_PURSE_CARD, FIXED_STATUSES, card_number
from switch.domain.model import CardStatus
from switch.ecard.issue import mint_qr
from switch.ecard.state import EcardState
from switch.errors import EcardError

# The first demo serial after the fixed-state cards: from here on every card is active.
FIRST_ORDINARY_SERIAL = EMPTY_PURSE_CARD + 1
# Serials from here up are never issued by a demo run (it would need 99 million cards), so
# a tap with one is an unknown card (14).
UNKNOWN_CARD_SERIAL_FIRST = 99_000_000
UNKNOWN_CARD_SERIALS = 1_000_000
LOST_CARD = card_number(
    next(s for s, status in FIXED_STATUSES.items() if status is CardStatus.LOST)
)
# How many answered requests a terminal remembers for retries. Terminals retry soon after
# a timeout, so the last few are what a retry names.
RETRY_MEMORY = 8
# A retry must name a seq the switch still remembers: it keeps the last
# `idempotency_window` seqs of each terminal and refuses older ones (94), as the protocol
# says. Under overload an open-loop terminal can have hundreds in flight, so a remembered
# answer may fall behind; half the default window keeps every retry well inside it.
RETRY_SEQ_DISTANCE_MAX = EngineConfig().idempotency_window // 2

# Labels: what the terminal meant to do, so codes can be checked against intent.
TAP = "tap"
TAP_UNKNOWN_CARD = "tap-unknown-card"
TAP_LOST_CARD = "tap-lost-card"
METRO_ENTRY = "metro-entry"
METRO_EXIT = "metro-exit"
PURCHASE = "purchase"
PURCHASE_UNKNOWN_CARD = "purchase-unknown-card"
PURCHASE_OVER_LIMIT = "purchase-over-limit"
BALANCE = "balance"
RETRY = "retry"
# What a passenger showing the e-card's QR code meant: the same as with the card.
QR_PREFIX = "qr-"
QR_TAP = QR_PREFIX + TAP
QR_METRO_ENTRY = QR_PREFIX + METRO_ENTRY
# The codes an honest switch gives for each intent; anything else is an error to report.
# Purses do run dry during long runs (51); a card can come round to the same line again
# within the repeat-tap guard (65) when a run has more taps than there are cards; a metro
# entry for a card already inside, or an exit for one that never entered, is refused (57).
EXPECTED_CODES: dict[str, frozenset[str]] = {
    TAP: frozenset({"00", "51", "65"}),
    METRO_ENTRY: frozenset({"00", "51", "57", "65"}),
    METRO_EXIT: frozenset({"00", "51", "57", "65"}),
    TAP_UNKNOWN_CARD: frozenset({"14"}),
    TAP_LOST_CARD: frozenset({"41"}),
    PURCHASE: frozenset({"00", "51"}),
    PURCHASE_UNKNOWN_CARD: frozenset({"14"}),
    PURCHASE_OVER_LIMIT: frozenset({"61"}),
    BALANCE: frozenset({"00"}),
}
# The ordinary payments a holder may make with the QR code instead of the card.
QR_PAYMENTS = frozenset({TAP, METRO_ENTRY, METRO_EXIT, PURCHASE})
EXPECTED_CODES |= {QR_PREFIX + label: EXPECTED_CODES[label] for label in QR_PAYMENTS}


class Role(enum.StrEnum):
    GATE = "gate"  # flat-fare validator: taps
    METRO_ENTRY = "metro-entry"  # taps cards in; the caller names the card
    METRO_EXIT = "metro-exit"  # taps cards out; the caller names the card
    POS = "pos"  # purchases and balance enquiries


class Mix(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Shares of each kind of request, per terminal kind (the rest are ordinary).

    The shares are guesses at an ordinary rush hour, not measurements: a percent or so of
    taps from cards the switch does not know or that are reported lost, a percent of
    retries, and a quarter of POS traffic being balance enquiries.
    """

    retry: float = 0.01
    gate_unknown_card: float = 0.01
    gate_lost_card: float = 0.005
    pos_balance: float = 0.25
    pos_unknown_card: float = 0.01
    pos_over_limit: float = 0.01
    purchase_fen_min: int = 100  # ¥1: a bottle of water
    purchase_fen_max: int = 3000  # ¥30: a meal
    # Above the switch's default purchase limit (EngineConfig.purchase_amount_max_fen).
    over_limit_fen: int = 50_000
    # Passengers and shoppers who show the e-card's QR code instead of the card (with a
    # QrWallet; otherwise none do).
    qr_share: float = 0.0


class QrWallet:
    """The e-cards of the data directory's cards, showing payment codes as the holders'
    phones do: fresh from the app service's signing key (switch.ecard.issue.mint_qr, the
    function behind `onecard qr mint`)."""

    def __init__(self, state: EcardState, signing_keys: Mapping[int, bytes]) -> None:
        self._state = state
        self._signing_keys = signing_keys

    def payment_code(self, card: str, now_ms: int) -> bytes | None:
        """A payment code for `card`, or None when its e-card cannot show one (the demo's
        X.......9 have no e-card, X.......8 only an identity one). Its nonce is random, as a
        phone's is, not drawn from a script's seeded generator: two scripts seeded alike
        would show the same nonce twice, and the switch refuses a code seen before (85)."""
        try:
            return mint_qr(self._state, self._signing_keys, card, BusinessType.PAYMENT, now_ms)
        except EcardError:
            return None


class Planned(NamedTuple):
    """One request ready to send."""

    seq: int
    frame: bytes
    label: str
    card: str
    # For a retry: the answer the first try got, which the retry must get again.
    expected: Response | None


class TerminalScript:
    """The requests of one terminal, in order; one script per connection, because
    sequence numbers are per terminal.

    Ordinary cards are taken from serial `card_start` on, `card_stride` apart, wrapping
    round the demo cards: scripts of one run given consecutive starts and a stride equal to
    their number share the cards out without overlap.
    """

    __slots__ = (
        "_card_next",
        "_card_stride",
        "_cards_ordinary",
        "_key",
        "_mix",
        "_next_seq",
        "_random",
        "_recent",
        "_role",
        "_terminal_id",
        "_wallet",
    )

    def __init__(
        self,
        terminal_id: str,
        role: Role,
        key: MacKey,
        *,
        first_seq: int,
        cards: int,
        mix: Mix,
        rng: random.Random,
        card_start: int = 0,
        card_stride: int = 1,
        wallet: QrWallet | None = None,
    ) -> None:
        if cards < FIRST_ORDINARY_SERIAL:
            raise ValueError(f"need at least {FIRST_ORDINARY_SERIAL} demo cards, got {cards}")
        if cards >= UNKNOWN_CARD_SERIAL_FIRST:
            raise ValueError(f"{cards} demo cards would make 'unknown' cards known")
        self._terminal_id = terminal_id
        self._role = role
        self._key = key
        self._next_seq = first_seq
        self._cards_ordinary = cards - FIRST_ORDINARY_SERIAL + 1
        self._card_next = card_start
        self._card_stride = card_stride
        self._mix = mix
        self._random = rng
        self._recent: deque[Planned] = deque(maxlen=RETRY_MEMORY)
        self._wallet = wallet

    @property
    def terminal_id(self) -> str:
        return self._terminal_id

    @property
    def card_position(self) -> int:
        """Where the next ordinary card comes from: card_start plus what was taken."""
        return self._card_next

    def next_card(self) -> str:
        """The next ordinary card in this script's stride."""
        serial = FIRST_ORDINARY_SERIAL + self._card_next % self._cards_ordinary
        self._card_next += self._card_stride
        return card_number(serial)

    def next_request(self, now_ms: int, card: str | None = None) -> Planned:
        """The next request; `card` names the card for metro roles (the caller knows who
        is inside), and is drawn from the stride otherwise."""
        draw = self._random.random()
        mix = self._mix
        if draw < mix.retry and self._recent:
            # Popped: a retry in flight must not be retried again under the same seq.
            retry = self._recent.pop()
            if self._next_seq - retry.seq <= RETRY_SEQ_DISTANCE_MAX:
                return retry
        draw -= mix.retry
        seq = self._next_seq
        self._next_seq = seq + 1
        request: Tap | Purchase | Balance
        role = self._role
        if role is Role.GATE:
            label, request = self._gate(seq, now_ms, draw)
        elif role is Role.POS:
            label, request = self._pos(seq, now_ms, draw)
        else:
            label = METRO_ENTRY if role is Role.METRO_ENTRY else METRO_EXIT
            request = Tap(self._terminal_id, seq, now_ms, card or self.next_card())
        sent: Tap | Purchase | Balance | Scan = request
        if label in QR_PAYMENTS and not isinstance(request, Balance):
            label, sent = self._maybe_qr(label, request, now_ms)
        return Planned(seq, encode_request(sent, self._key), label, request.card, None)

    def _maybe_qr(
        self, label: str, request: Tap | Purchase, now_ms: int
    ) -> tuple[str, Tap | Purchase | Scan]:
        """The same payment with the card's QR code instead, for a share of holders."""
        wallet = self._wallet
        if wallet is None or self._random.random() >= self._mix.qr_share:
            return label, request
        code = wallet.payment_code(request.card, now_ms)
        if code is None:
            return label, request
        amount = request.amount_fen if type(request) is Purchase else 0
        scan = Scan(request.terminal_id, request.seq, request.terminal_time_ms, code, amount)
        return QR_PREFIX + label, scan

    def answered(self, planned: Planned, response: Response) -> bool:
        """Note an answer; False when it is a retry's answer and differs from the first."""
        if planned.expected is not None:
            return response == planned.expected
        self._recent.append(planned._replace(label=RETRY, expected=response))
        return True

    def _unknown_card(self) -> str:
        return card_number(UNKNOWN_CARD_SERIAL_FIRST + self._random.randrange(UNKNOWN_CARD_SERIALS))

    def _gate(self, seq: int, now_ms: int, draw: float) -> tuple[str, Tap]:
        mix = self._mix
        terminal = self._terminal_id
        if draw < mix.gate_unknown_card:
            return TAP_UNKNOWN_CARD, Tap(terminal, seq, now_ms, self._unknown_card())
        if draw < mix.gate_unknown_card + mix.gate_lost_card:
            return TAP_LOST_CARD, Tap(terminal, seq, now_ms, LOST_CARD)
        return TAP, Tap(terminal, seq, now_ms, self.next_card())

    def _pos(self, seq: int, now_ms: int, draw: float) -> tuple[str, Purchase | Balance]:
        mix = self._mix
        terminal = self._terminal_id
        if draw < mix.pos_balance:
            return BALANCE, Balance(terminal, seq, now_ms, self.next_card())
        draw -= mix.pos_balance
        if draw < mix.pos_unknown_card:
            card = self._unknown_card()
            amount = mix.purchase_fen_min
            return PURCHASE_UNKNOWN_CARD, Purchase(terminal, seq, now_ms, card, amount)
        if draw < mix.pos_unknown_card + mix.pos_over_limit:
            card = self.next_card()
            return PURCHASE_OVER_LIMIT, Purchase(terminal, seq, now_ms, card, mix.over_limit_fen)
        amount = self._random.randint(mix.purchase_fen_min, mix.purchase_fen_max)
        return PURCHASE, Purchase(terminal, seq, now_ms, self.next_card(), amount)
