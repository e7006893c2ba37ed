"""ISO 8583 messages as onecard uses them: MTIs, field formats, and the typed request the
switch decides (docs/iso8583.md sections 3-5).

`parse_request(message)` checks what pyiso8583's formats do not (digits where the 1987
spec says numeric, the fields each MTI needs) and raises RemoteProtocolError with code 30
(12 for a well-formed request of a kind we do not serve). Semantic checks (is the card
known, is there money) belong to the switch.
"""

from __future__ import annotations

import datetime
import enum

import msgspec

from protocols.codes import ResponseCode
from protocols.errors import RemoteProtocolError
from protocols.iso8583.codec import IsoMessage


class Mti(enum.StrEnum):
    AUTHORISATION = "0100"
    AUTHORISATION_RESPONSE = "0110"
    AUTHORISATION_ADVICE = "0120"
    AUTHORISATION_ADVICE_RESPONSE = "0130"
    FINANCIAL = "0200"
    FINANCIAL_RESPONSE = "0210"
    FINANCIAL_ADVICE = "0220"
    FINANCIAL_ADVICE_RESPONSE = "0230"
    REVERSAL = "0400"
    REVERSAL_RESPONSE = "0410"
    REVERSAL_ADVICE = "0420"
    REVERSAL_ADVICE_RESPONSE = "0430"
    NETWORK = "0800"
    NETWORK_RESPONSE = "0810"


# What merchants and acquirers may send the switch (repeats, xx1, included by base MTI).
ACQUIRER_REQUESTS = frozenset(
    {Mti.AUTHORISATION, Mti.FINANCIAL, Mti.FINANCIAL_ADVICE, Mti.REVERSAL, Mti.REVERSAL_ADVICE}
    | {Mti.NETWORK}
)


class NetworkCode(enum.StrEnum):
    """DE70, network management information code."""

    SIGN_ON = "001"
    SIGN_OFF = "002"
    ECHO = "301"


class TransactionType(enum.StrEnum):
    """DE3 positions 1-2."""

    PURCHASE = "00"  # goods and services (a pre-authorisation in an 0100)
    BALANCE = "31"  # balance inquiry
    BILL_PAYMENT = "50"  # payment to a biller


class Account(enum.StrEnum):
    """DE3 positions 3-4, the account paid from. 00/10/20 are ISO's default, savings and
    cheque: all the card's financial account at its partner bank. 96 and 97 are onecard's
    for the accounts it keeps itself (regulation art. 3: one card, separate accounts)."""

    DEFAULT = "00"
    SAVINGS = "10"
    CHEQUE = "20"
    TRANSIT_PURSE = "96"
    MEDICAL = "97"


BANK_ACCOUNTS = frozenset({Account.DEFAULT, Account.SAVINGS, Account.CHEQUE})


class AmountType(enum.StrEnum):
    """DE54 amount types: 01/02 are ISO's ledger and available balance; 90-92 onecard's
    legs of a medical settlement (facts.md: hifp_pay, acct_pay, cash_payamt)."""

    LEDGER_BALANCE = "01"
    AVAILABLE_BALANCE = "02"
    POOLED_FUND = "90"
    PERSONAL_ACCOUNT = "91"
    BANK_ACCOUNT = "92"


class BillTag(enum.StrEnum):
    """DE48 sub-element tags (tag: 2 digits, length: 3 digits, value)."""

    BILLER = "01"
    BILL_REFERENCE = "02"


# Renminbi, ISO 4217 numeric: the only currency the switch pays in.
CURRENCY_CNY = "156"
# DE4 holds 12 digits: amounts up to 999,999,999,999 fen.
AMOUNT_DIGITS = 12
STAN_DIGITS = 6
STAN_MODULUS = 10**STAN_DIGITS
TRANSMISSION_DIGITS = 10  # DE7, MMDDhhmmss in UTC
# DE90: original MTI (4), STAN (6), transmission date and time (10), acquiring and
# forwarding institution ids (11 each).
ORIGINAL_DATA_LENGTH = 42
# DE54: one entry is account type (2), amount type (2), currency (3), sign C/D (1) and
# 12 digits.
ADDITIONAL_AMOUNT_LENGTH = 20
TERMINAL_ID_LENGTH = 8  # DE41, fixed
MERCHANT_ID_LENGTH = 15  # DE42, fixed
RRN_LENGTH = 12  # DE37
# DE48 sub-element header: 2-digit tag and 3-digit length.
TLV_HEADER = 5
# Biller ids and bill references: what utility companies print on a bill; bounded so a
# key in the paid-bills table stays small.
BILLER_LENGTH_MAX = 16
BILL_REFERENCE_LENGTH_MAX = 32


class Original(msgspec.Struct, frozen=True):
    """DE90: which earlier message a reversal or completion refers to."""

    mti: str
    stan: str
    transmission: str


class IsoRequest(msgspec.Struct, frozen=True):
    """A request from a merchant or acquirer, checked for shape."""

    mti: str  # the base MTI: a repeat (xx1) is marked by `repeat`
    repeat: bool
    terminal_id: str  # DE41 without its padding
    stan: str  # DE11
    transmission: str  # DE7 ("" only on 0800)
    card: str = ""  # DE2
    transaction_type: str = ""  # DE3[0:2]
    account: str = ""  # DE3[2:4]
    amount_fen: int = 0  # DE4
    currency: str = CURRENCY_CNY  # DE49
    network_code: str = ""  # DE70
    pooled_fen: int = 0  # DE54 amount type 90
    biller: str = ""  # DE48 tag 01
    bill_reference: str = ""  # DE48 tag 02
    original: Original | None = None  # DE90
    merchant: str = ""  # DE42 without its padding


def _error(text: str, code: ResponseCode = ResponseCode.FORMAT_ERROR) -> RemoteProtocolError:
    return RemoteProtocolError(text, code=code, fatal=False)


def _digits(fields: dict[str, str], name: str, size: int, *, required: bool = True) -> str:
    value = fields.get(name)
    if value is None:
        if required:
            raise _error(f"DE{name} missing")
        return ""
    if len(value) != size or not (value.isascii() and value.isdigit()):
        raise _error(f"DE{name} must be {size} digits, got {value!r}")
    return value


def base_mti(mti: str) -> str:
    """The MTI with its repeat digit cleared: 0401 → 0400."""
    return mti[:3] + "0"


def is_repeat(mti: str) -> bool:
    return mti[3] == "1"


def response_mti(mti: str) -> str:
    """The answer's MTI: 0200 → 0210, 0401 → 0410 (a response to a repeat is no repeat)."""
    function = int(mti[2])
    return mti[:2] + str(function + 1 if function % 2 == 0 else function) + "0"


def parse_additional_amounts(text: str) -> list[tuple[str, str, str, int]]:
    """DE54 → [(account type, amount type, currency, signed fen)]."""
    if len(text) % ADDITIONAL_AMOUNT_LENGTH:
        raise _error(f"DE54 length {len(text)} is not a multiple of {ADDITIONAL_AMOUNT_LENGTH}")
    out = []
    for start in range(0, len(text), ADDITIONAL_AMOUNT_LENGTH):
        entry = text[start : start + ADDITIONAL_AMOUNT_LENGTH]
        head, sign, digits = entry[:7], entry[7], entry[8:]
        if not (head.isascii() and head.isdigit() and digits.isascii() and digits.isdigit()):
            raise _error(f"DE54 entry {entry!r} is not numeric")
        if sign not in "CD":
            raise _error(f"DE54 entry {entry!r}: sign must be C or D")
        amount = int(digits) * (1 if sign == "C" else -1)
        out.append((head[:2], head[2:4], head[4:7], amount))
    return out


def additional_amounts(entries: list[tuple[str, str, int]]) -> str:
    """[(account type, amount type, signed fen)] → DE54 in CNY."""
    return "".join(
        f"{account}{kind}{CURRENCY_CNY}{'C' if amount >= 0 else 'D'}{abs(amount):012d}"
        for account, kind, amount in entries
    )


def parse_tlv(text: str) -> dict[str, str]:
    """DE48 sub-elements: tag (2 digits), length (3 digits), value."""
    out: dict[str, str] = {}
    offset = 0
    while offset < len(text):
        header = text[offset : offset + TLV_HEADER]
        if len(header) < TLV_HEADER or not (header.isascii() and header.isdigit()):
            raise _error(f"DE48 sub-element header {header!r} at {offset} is not 5 digits")
        length = int(header[2:])
        value = text[offset + TLV_HEADER : offset + TLV_HEADER + length]
        if len(value) != length:
            raise _error(f"DE48 sub-element {header[:2]} runs past the field")
        out[header[:2]] = value
        offset += TLV_HEADER + length
    return out


def tlv(elements: dict[str, str]) -> str:
    return "".join(f"{tag}{len(value):03d}{value}" for tag, value in elements.items())


def transmission_time(now_ms: int) -> str:
    """DE7 for `now_ms`: MMDDhhmmss, UTC (ISO 8583:1987 says GMT)."""
    moment = datetime.datetime.fromtimestamp(now_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%m%d%H%M%S")


def original_data(mti: str, stan: str, transmission: str, acquirer: str = "") -> str:
    """DE90 for the message (mti, stan, transmission)."""
    return f"{mti}{stan}{transmission}{acquirer:0>11}{'':0>11}"


def parse_request(message: IsoMessage) -> IsoRequest:
    """A merchant's or acquirer's request, checked for shape (30) and kind (12)."""
    fields = message.fields
    mti = base_mti(message.mti)
    if mti not in ACQUIRER_REQUESTS:
        raise _error(f"MTI {message.mti} is not served here", ResponseCode.INVALID_TRANSACTION)
    repeat = is_repeat(message.mti)
    if repeat and mti in (Mti.AUTHORISATION, Mti.NETWORK):
        # 0101 exists, but an authorisation is retried by sending it again unchanged.
        raise _error(f"MTI {message.mti} is not served here", ResponseCode.INVALID_TRANSACTION)
    stan = _digits(fields, "11", STAN_DIGITS)
    terminal = fields.get("41")
    if terminal is None or not terminal.strip():
        raise _error("DE41 missing")
    terminal_id = terminal.rstrip(" ")
    merchant = fields.get("42", "").rstrip(" ")
    if mti == Mti.NETWORK:
        network_code = _digits(fields, "70", 3)
        transmission = _digits(fields, "7", TRANSMISSION_DIGITS, required=False)
        return IsoRequest(mti, False, terminal_id, stan, transmission, network_code=network_code)
    transmission = _digits(fields, "7", TRANSMISSION_DIGITS)
    currency = _digits(fields, "49", 3, required=False) or CURRENCY_CNY
    original = None
    if mti in (Mti.REVERSAL, Mti.REVERSAL_ADVICE, Mti.FINANCIAL_ADVICE):
        data = _digits(fields, "90", ORIGINAL_DATA_LENGTH)
        original = Original(data[:4], data[4:10], data[10:20])
    card = fields.get("2", "")
    if mti in (Mti.REVERSAL, Mti.REVERSAL_ADVICE):
        # The original names everything; DE2-DE4 may repeat it, and are not needed.
        amount = _digits(fields, "4", AMOUNT_DIGITS, required=False)
        return IsoRequest(
            mti,
            repeat,
            terminal_id,
            stan,
            transmission,
            card=card,
            amount_fen=int(amount) if amount else 0,
            currency=currency,
            original=original,
            merchant=merchant,
        )
    if not card:
        raise _error("DE2 missing")
    processing = _digits(fields, "3", 6)
    amount_fen = int(_digits(fields, "4", AMOUNT_DIGITS))
    pooled_fen = 0
    if "54" in fields:
        for _account, kind, _currency, signed_fen in parse_additional_amounts(fields["54"]):
            if kind == AmountType.POOLED_FUND:
                pooled_fen = signed_fen
    biller = bill_reference = ""
    if "48" in fields:
        elements = parse_tlv(fields["48"])
        biller = elements.get(BillTag.BILLER, "")
        bill_reference = elements.get(BillTag.BILL_REFERENCE, "")
        if len(biller) > BILLER_LENGTH_MAX or len(bill_reference) > BILL_REFERENCE_LENGTH_MAX:
            raise _error("DE48: biller or bill reference too long")
    return IsoRequest(
        mti,
        repeat,
        terminal_id,
        stan,
        transmission,
        card=card,
        transaction_type=processing[:2],
        account=processing[2:4],
        amount_fen=amount_fen,
        currency=currency,
        pooled_fen=pooled_fen,
        biller=biller,
        bill_reference=bill_reference,
        original=original,
        merchant=merchant,
    )


# Fields a response repeats from its request, so the sender can match it without state.
ECHOED = ("2", "3", "4", "7", "11", "32", "37", "41", "42", "49", "90")


def response_fields(request: dict[str, str], code: str, extra: dict[str, str]) -> dict[str, str]:
    """The answer to `request`: its response MTI, the echoed fields, DE39 and `extra`."""
    mti = request.get("t", "0800")
    fields = {"t": response_mti(mti if mti.isdigit() and len(mti) == 4 else "0800")}
    for name in ECHOED:
        value = request.get(name)
        if value is not None:
            fields[name] = value
    fields["39"] = code
    fields.update(extra)
    return fields
