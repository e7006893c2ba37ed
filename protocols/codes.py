"""Response codes: one table, shared by every channel.

The terminal protocol and ISO 8583 both answer with these two-character codes (ISO 8583
field 39 semantics), so a decline means the same thing whichever way the request came in.
docs/protocol.md renders this table; a test checks the two agree.
"""

from __future__ import annotations

import enum


class ResponseCode(enum.StrEnum):
    APPROVED = "00"
    INVALID_MERCHANT = "03"
    DO_NOT_HONOUR = "05"
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    INVALID_CARD = "14"
    ORIGINAL_NOT_FOUND = "25"
    FORMAT_ERROR = "30"
    LOST_CARD = "41"
    INSUFFICIENT_FUNDS = "51"
    EXPIRED_CARD = "54"
    NOT_PERMITTED_TO_CARDHOLDER = "57"
    NOT_PERMITTED_TO_TERMINAL = "58"
    EXCEEDS_AMOUNT_LIMIT = "61"
    EXCEEDS_FREQUENCY_LIMIT = "65"
    RESTRICTED_CARD = "62"
    SECURITY_VIOLATION = "63"
    # 80-87: the e-card QR code was refused (docs/protocol.md section 17); onecard's own
    # codes, where the ISO 8583 meanings this table follows assign none.
    QR_UNREADABLE = "80"
    QR_KEY_UNKNOWN = "81"
    QR_KEY_RETIRED = "82"
    QR_SIGNATURE_INVALID = "83"
    QR_NOT_YET_VALID = "84"
    QR_ALREADY_USED = "85"
    QR_BUSINESS_NOT_ACCEPTED = "86"
    ECARD_LEVEL_TOO_LOW = "87"
    # ISO 8583 channel (docs/iso8583.md): a bill paid already, onecard's own as no ISO code
    # says it; and ISO's own 92 for a card no bank route covers.
    BILL_ALREADY_PAID = "88"
    ISSUER_UNAVAILABLE = "91"
    NO_ROUTE = "92"
    DUPLICATE_TRANSMISSION = "94"
    SYSTEM_MALFUNCTION = "96"

    @property
    def approved(self) -> bool:
        return self is ResponseCode.APPROVED

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS: dict[ResponseCode, str] = {
    ResponseCode.APPROVED: "Approved; money moved as stated in the answer.",
    ResponseCode.INVALID_MERCHANT: "Unknown terminal id: the switch has no such terminal.",
    ResponseCode.DO_NOT_HONOUR: "Declined for a reason not disclosed to the terminal.",
    ResponseCode.INVALID_TRANSACTION: (
        "The request cannot apply: e.g. reversal of a declined request or of a request "
        "that moved no money."
    ),
    ResponseCode.INVALID_AMOUNT: "Amount is zero or negative.",
    ResponseCode.INVALID_CARD: "Unknown card number, or the card is cancelled or replaced.",
    ResponseCode.ORIGINAL_NOT_FOUND: (
        "Reversal names a sequence number the switch holds no record of for this terminal "
        "(never seen, or older than the idempotency window)."
    ),
    ResponseCode.FORMAT_ERROR: "The frame or message is malformed: wrong shape, type or size.",
    ResponseCode.LOST_CARD: "The card is reported lost (temporarily or formally).",
    ResponseCode.INSUFFICIENT_FUNDS: "The account cannot cover the amount.",
    ResponseCode.EXPIRED_CARD: "Expired: the e-card QR code is past its validity period.",
    ResponseCode.NOT_PERMITTED_TO_CARDHOLDER: "The card's state does not allow this use.",
    ResponseCode.NOT_PERMITTED_TO_TERMINAL: "This terminal's kind may not send this message.",
    ResponseCode.EXCEEDS_AMOUNT_LIMIT: "Amount is above the per-transaction limit.",
    ResponseCode.EXCEEDS_FREQUENCY_LIMIT: (
        "Repeat tap: the card tapped on this line within its repeat interval."
    ),
    ResponseCode.RESTRICTED_CARD: "The card's social-security functions are suspended.",
    ResponseCode.SECURITY_VIOLATION: "The MAC does not verify with the terminal's key.",
    ResponseCode.QR_UNREADABLE: "The scanned code is not a well-formed e-card QR code.",
    ResponseCode.QR_KEY_UNKNOWN: "The QR code names a signing key the switch does not know.",
    ResponseCode.QR_KEY_RETIRED: "The QR code was signed with a key that has been retired.",
    ResponseCode.QR_SIGNATURE_INVALID: (
        "The QR code's signature does not verify: forged or altered."
    ),
    ResponseCode.QR_NOT_YET_VALID: (
        "The QR code's issue time is further in the future than the allowed clock skew."
    ),
    ResponseCode.QR_ALREADY_USED: "The QR code has been used already: each code is good once.",
    ResponseCode.QR_BUSINESS_NOT_ACCEPTED: (
        "The QR code's business type is not accepted at this kind of terminal."
    ),
    ResponseCode.ECARD_LEVEL_TOO_LOW: "The e-card's level does not allow this: level 1 cannot pay.",
    ResponseCode.BILL_ALREADY_PAID: (
        "The bill has been paid already, or a payment of it is in progress: a bill is paid once."
    ),
    ResponseCode.ISSUER_UNAVAILABLE: "The account holder's institution cannot be reached.",
    ResponseCode.NO_ROUTE: (
        "No partner bank is configured for this card: the request cannot be routed."
    ),
    ResponseCode.DUPLICATE_TRANSMISSION: (
        "Sequence number reused with different content, older than the idempotency window, "
        "or a reversal of a request already reversed."
    ),
    ResponseCode.SYSTEM_MALFUNCTION: "The switch could not complete the request; retry.",
}
