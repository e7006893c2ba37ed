"""Settlement as an operator configures it: `[settlement]` in the TOML configuration.

    [settlement]
    cutover = "23:00"            # daily, local time; or cycle_minutes = 15 for drills
    float_bank = "HBRCU"         # holds the transit purse float and the card service's accounts
    medical_fund_bank = "CCB"    # holds the medical insurance fund's account
    [settlement.fee_rates_bp]    # per payee category, basis points of the cycle's net
    merchant = 35
    [[settlement.payees]]        # where each merchant, operator, hospital, biller is paid
    id = "shiyan-bus"
    bank = "ABC"
    account = "6228480402564890018"
    [[settlement.funders]]       # who pays subsidies and benefits, from which bank
    id = "finance-bureau"
    bank = "ICBC"

Money is integer fen; times milliseconds or minutes as the name says.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

# Banks that partner with the card service (switch/demo.py PARTNER_BANKS): each gets a
# settlement file every cycle, a zero one too, so a bank can tell "nothing happened" from
# "the file did not arrive".
DEMO_PARTNER_BANKS = ("ABC", "CCB", "HBRCU", "ICBC")
# Shiyan is UTC+8, like the stand-in floor's calendar day (switch/banks/state.py).
UTC_OFFSET_MINUTES = 8 * 60
# China's bank card fee rules (NDRC/PBOC 2016) cap the issuer's fee on a debit card
# payment at 0.35%; a merchant contract sets its own rate under it. Transit, hospitals and
# billers pay nothing unless their contract says so.
FEE_RATES_BP_DEFAULT = {"transit": 0, "merchant": 35, "hospital": 0, "biller": 0}
# A rate above 10% of a payment is a typing error, not a contract.
FEE_RATE_BP_MAX = 1_000
# Cycles of more records than this are read by worker processes, one journal segment each
# (two cores read a 10-million-record cycle in half the time); below it the process start
# costs more than it saves.
PARALLEL_RECORDS_MIN = 1_000_000
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
# Party ids go into fixed-width settlement files (settlement/layout.py): ASCII, 20 wide.
PARTY_ID_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,20}")
BANK_ID_SHAPE = re.compile(r"[A-Z0-9]{1,8}")


class PayeeAccount(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The settlement account of a merchant, transit operator, hospital or biller."""

    id: str
    bank: str
    account: str  # the payee's business account: not personal data


class Funder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A payer of subsidies and benefits (the finance bureau, HR & social security)."""

    id: str
    bank: str


class SettlementConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True  # the scheduler inside the switch service
    # Daily cutover, local time. 23:00 is the common Chinese interbank day-end: the banks'
    # own books for the day close after it.
    cutover: str = "23:00"
    # > 0: a cycle every N minutes from local midnight instead (drills, tests); a day's
    # last cycle ends at midnight when N does not divide 1440.
    cycle_minutes: Annotated[int, msgspec.Meta(ge=0, le=1440)] = 0
    utc_offset_minutes: Annotated[int, msgspec.Meta(ge=-14 * 60, le=14 * 60)] = UTC_OFFSET_MINUTES
    # Files and the local record, relative to the data directory.
    directory: str = "settlement"
    partner_banks: list[str] = msgspec.field(default_factory=lambda: list(DEMO_PARTNER_BANKS))
    float_bank: str = "HBRCU"
    medical_fund_bank: str = "CCB"
    fee_rates_bp: dict[str, Annotated[int, msgspec.Meta(ge=0, le=FEE_RATE_BP_MAX)]] = {}
    payees: list[PayeeAccount] = []
    funders: list[Funder] = msgspec.field(
        default_factory=lambda: [Funder("finance-bureau", "ICBC")]
    )
    # PostgreSQL for cycles, positions and reconciliation results; empty: the embedded
    # local record in `directory`, which needs no server.
    dsn: str = ""
    parallel_records_min: Annotated[int, msgspec.Meta(ge=1)] = PARALLEL_RECORDS_MIN
    # Worker processes for a parallel read; 0: one per core.
    workers: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0

    def __post_init__(self) -> None:
        if _HH_MM.fullmatch(self.cutover) is None:
            raise ValueError(f"settlement cutover {self.cutover!r} is not HH:MM")
        banks = set(self.partner_banks)
        for bank in banks:
            if BANK_ID_SHAPE.fullmatch(bank) is None:
                raise ValueError(f"settlement bank id {bank!r} is not 1-8 of A-Z, 0-9")
        for role, bank in (("float_bank", self.float_bank), ("medical", self.medical_fund_bank)):
            if bank not in banks:
                raise ValueError(f"settlement {role} {bank!r} is not a partner bank")
        for category in self.fee_rates_bp:
            if category not in FEE_RATES_BP_DEFAULT:
                raise ValueError(f"fee rate for unknown payee category {category!r}")
        parties: list[PayeeAccount | Funder] = [*self.payees, *self.funders]
        for party in parties:
            if PARTY_ID_SHAPE.fullmatch(party.id) is None:
                raise ValueError(f"settlement party id {party.id!r} is not 1-20 of [A-Za-z0-9._-]")
            if party.bank not in banks:
                raise ValueError(f"{party.id}: bank {party.bank!r} is not a partner bank")
        ids = [payee.id for payee in self.payees]
        if len(set(ids)) != len(ids):
            raise ValueError("a payee is configured twice")

    @property
    def cutover_minutes(self) -> int:
        hours, minutes = self.cutover.split(":")
        return int(hours) * 60 + int(minutes)

    def fee_rate_bp(self, category: str) -> int:
        return self.fee_rates_bp.get(category, FEE_RATES_BP_DEFAULT[category])

    def payee_account(self, payee: str) -> PayeeAccount | None:
        for account in self.payees:
            if account.id == payee:
                return account
        return None

    def funder(self, funder_id: str) -> Funder | None:
        for funder in self.funders:
            if funder.id == funder_id:
                return funder
        return None
