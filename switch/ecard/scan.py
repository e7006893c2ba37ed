"""A scanned QR code, checked in order, ending in the physical card it stands for.

    QR readable (80) → key id known (81) → key not retired (82) → signature (83) →
    not yet valid (84) / expired (54) → nonce unused (85) → nonce store has room (96) →
    business type accepted at this terminal kind (86) → e-card bound (14) →
    e-card level allows the business type (87) → the card's own rules

From the nonce check on, the code is authentic and in date, so the decision consumes its
nonce whatever the answer: a code is used once, approved or not. Nothing before that point
consumes anything, so a forger cannot burn a holder's code.

After these checks a payment is decided by exactly the rules of the physical card: a tap at
a gate, a purchase at a POS (switch.engine runs its own rules on the request this module
returns); a query by the rules of a balance enquiry. A medical scan identifies the holder
for a medical settlement, which the medical insurance platform decides (facts.md); it moves
nothing here and is refused for a card whose social-security functions are suspended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocols.codes import ResponseCode
from protocols.ecard import BusinessType, check_validity, decode_qr
from protocols.errors import RemoteProtocolError
from protocols.terminal.messages import Balance, Purchase, Scan, Tap
from switch.domain.model import Card, CardStatus, TerminalKind
from switch.ecard.state import EcardLevel, EcardState

C = ResponseCode
B = BusinessType

# Which business types each kind of terminal accepts. A gate only charges fares; a shop
# takes payment and may check identity or show a balance; a medical counter identifies the
# holder for a settlement or a query.
ACCEPTED: dict[TerminalKind, frozenset[BusinessType]] = {
    TerminalKind.GATE: frozenset({B.PAYMENT}),
    TerminalKind.POS: frozenset({B.QUERY, B.PAYMENT, B.OTHER}),
    TerminalKind.MEDICAL: frozenset({B.QUERY, B.MEDICAL}),
}
# What each e-card level may do: level 1 is identity and query, level 2 adds payment.
LEVEL_ALLOWS: dict[EcardLevel, frozenset[BusinessType]] = {
    EcardLevel.IDENTITY: frozenset({B.QUERY, B.OTHER, B.MEDICAL}),
    EcardLevel.PAYMENT: frozenset(BusinessType),
}
# A medical scan serves a social-security function, so unlike the transit purse a
# suspension (regulation art. 17) does block it.
MEDICAL_REFUSAL: dict[CardStatus, ResponseCode | None] = {
    CardStatus.ACTIVE: None,
    CardStatus.SUSPENDED: C.RESTRICTED_CARD,
    CardStatus.TEMPORARILY_LOST: C.LOST_CARD,
    CardStatus.LOST: C.LOST_CARD,
    CardStatus.CANCELLED: C.INVALID_CARD,
    CardStatus.REPLACED: C.INVALID_CARD,
    CardStatus.ISSUED: C.NOT_PERMITTED_TO_CARDHOLDER,  # not activated yet
}


@dataclass(frozen=True, slots=True)
class ScanVerdict:
    """What the checks found.

    instead: the request on the physical card to decide by its own rules; when None, `code`
        is the answer.
    card: the card the code stands for ("" when the checks did not get that far).
    nonce: the code's nonce when it could be read (the retry fingerprint), else b"".
    forget_after_ms: when the decision consumes the nonce, until when it must be
        remembered; 0 when it does not consume it.
    """

    code: ResponseCode
    instead: Tap | Purchase | Balance | None = None
    card: str = ""
    nonce: bytes = b""
    forget_after_ms: int = 0


def verify_scan(
    state: EcardState,
    cards: Mapping[str, Card],
    kind: TerminalKind,
    request: Scan,
    now_ms: int,
) -> ScanVerdict:
    """Check `request.qr` at a terminal of `kind`; pure (the nonce store drops only
    lapsed entries, which changes no answer)."""
    try:
        signed = decode_qr(request.qr)
    except RemoteProtocolError as exc:
        return ScanVerdict(exc.code)
    claims = signed.claims
    nonce = claims.nonce
    now_ms = state.nonces.now(now_ms)
    key = state.keys.get(claims.key_id)
    if key is None:
        return ScanVerdict(C.QR_KEY_UNKNOWN, nonce=nonce)
    if key.retired_at(now_ms):
        return ScanVerdict(C.QR_KEY_RETIRED, nonce=nonce)
    try:
        signed.verify(key.public_key)
        check_validity(claims, now_ms, state.config.skew_ms)
    except RemoteProtocolError as exc:
        return ScanVerdict(exc.code, nonce=nonce)
    if nonce in state.nonces:
        return ScanVerdict(C.QR_ALREADY_USED, nonce=nonce)
    if state.nonces.full(now_ms):
        return ScanVerdict(C.SYSTEM_MALFUNCTION, nonce=nonce)
    consumed = claims.expires_at_ms + state.config.skew_ms
    business = claims.business_type
    if business not in ACCEPTED[kind]:
        return ScanVerdict(C.QR_BUSINESS_NOT_ACCEPTED, nonce=nonce, forget_after_ms=consumed)
    binding = state.by_token.get(claims.card_token)
    if binding is None:
        return ScanVerdict(C.INVALID_CARD, nonce=nonce, forget_after_ms=consumed)
    number = binding.card
    if business not in LEVEL_ALLOWS[binding.level]:
        return ScanVerdict(
            C.ECARD_LEVEL_TOO_LOW, card=number, nonce=nonce, forget_after_ms=consumed
        )
    instead: Tap | Purchase | Balance | None
    code = C.APPROVED
    if business is B.MEDICAL:
        instead = None
        code = MEDICAL_REFUSAL[cards[number].status] or C.APPROVED
    elif business is B.PAYMENT and kind is TerminalKind.GATE:
        instead = Tap(
            request.terminal_id, request.seq, request.terminal_time_ms, number, request.stop
        )
    elif business is B.PAYMENT:
        instead = Purchase(
            request.terminal_id, request.seq, request.terminal_time_ms, number, request.amount_fen
        )
    else:
        instead = Balance(request.terminal_id, request.seq, request.terminal_time_ms, number)
    return ScanVerdict(code, instead, number, nonce, consumed)
