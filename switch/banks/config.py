"""Partner banks, routing and the ISO 8583 channel as an operator configures them:
`[iso8583]` and `[banks]` in the TOML configuration (switch/config.py).

    [iso8583]
    enabled = true
    port = 8583

    [banks]
    default_route = "ABC"
    [[banks.links]]
    id = "ABC"
    host = "10.1.2.3"
    port = 8601
    key = "00112233445566778899aabbccddeeff"   # the link's MAC key (hex)
    [[banks.ranges]]                          # card numbers low..high (inclusive) → bank
    low = "X00000000"
    high = "X00499999"
    bank = "ABC"

Money is integer fen, times milliseconds or seconds as the name says.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from protocols.terminal.mac import KEY_SIZE

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

# A bank host answers in well under a second when healthy; 5 s is what card schemes give
# an issuer before the acquirer reverses, and well inside a merchant terminal's own 30-60 s.
TIMEOUT_MS_DEFAULT = 5_000
# Never wait less than this for a bank: below it, ordinary network jitter would turn
# into reversals.
TIMEOUT_MS_MIN = 100
# Nor longer than a terminal waits for us, or our late answer would meet a terminal that
# has already reversed.
TIMEOUT_MS_MAX = 30_000
# Keep-alive: a silent link is probed this often, so a dead bank host is noticed within
# one interval plus one timeout rather than at the next customer's payment.
ECHO_INTERVAL_S_DEFAULT = 30
# Stand-in floor: what one card may be approved for in a day while its bank cannot be
# asked. ¥500 covers a day's ordinary shopping and a pharmacy bill; the risk the switch
# carries per card is bounded by it.
STANDIN_FLOOR_FEN_DEFAULT = 50_000
# Pre-authorisation holds lapse after this unless completed: seven days is the common
# scheme rule for hotel and car-hire holds.
HOLD_EXPIRY_S_DEFAULT = 7 * 24 * 3600


class OnTimeout(enum.StrEnum):
    DECLINE = "decline"  # answer 91; the reversal undoes whatever the bank did
    STANDIN = "standin"  # approve under the stand-in floor; reversal, then advice


class MedicalRemainder(enum.StrEnum):
    BANK = "bank"  # what the personal account cannot pay comes from the bank account
    REFUSE = "refuse"  # the personal account must pay the holder's whole share (51)


class BankLink(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    host: str = "127.0.0.1"
    port: Port = 0
    # The link's MAC key, hex (16 bytes): exchanged with the bank at a key ceremony; in
    # production it lives in the HSM, like the terminal keys.
    key: str = ""
    timeout_ms: Annotated[int, msgspec.Meta(ge=TIMEOUT_MS_MIN, le=TIMEOUT_MS_MAX)] = (
        TIMEOUT_MS_DEFAULT
    )
    echo_interval_s: Annotated[int, msgspec.Meta(ge=1)] = ECHO_INTERVAL_S_DEFAULT
    on_timeout: OnTimeout = OnTimeout.DECLINE
    # Approve while the link is down (and on timeout with on_timeout = "standin").
    standin: bool = True
    standin_floor_fen: NonNegative = STANDIN_FLOOR_FEN_DEFAULT

    def __post_init__(self) -> None:
        if len(bytes.fromhex(self.key or "")) not in (0, KEY_SIZE):
            raise ValueError(f"bank {self.id}: key must be {KEY_SIZE} bytes of hex")

    @property
    def mac_key(self) -> bytes:
        """The configured key; without one, a key derived from the bank id (demo and tests
        only: say so in the operations runbook)."""
        if self.key:
            return bytes.fromhex(self.key)
        return (self.id.encode() * KEY_SIZE)[:KEY_SIZE]


class CardRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    low: str
    high: str
    bank: str


class BanksConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    links: list[BankLink] = []
    ranges: list[CardRange] = []
    # The bank for cards no range names and whose own bank has no link; "" = refuse (92).
    default_route: str = ""
    medical_remainder: MedicalRemainder = MedicalRemainder.BANK
    hold_expiry_s: Annotated[int, msgspec.Meta(ge=60)] = HOLD_EXPIRY_S_DEFAULT

    def link(self, bank_id: str) -> BankLink | None:
        for link in self.links:
            if link.id == bank_id:
                return link
        return None


class Iso8583Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    host: str = "127.0.0.1"
    # 8583: easy to remember, and free of the switch's other ports.
    port: Port = 8583


# The demo's banks (switch/demo.py PARTNER_BANKS), served by `onecard banksim` on
# 127.0.0.1:8601-8604 with keys derived from their ids.
DEMO_BANK_PORTS = {"ABC": 8601, "CCB": 8602, "HBRCU": 8603, "ICBC": 8604}


def demo_banks() -> BanksConfig:
    return BanksConfig(
        links=[BankLink(bank, port=port) for bank, port in DEMO_BANK_PORTS.items()],
        default_route="ABC",
    )
