"""Cards, their accounts and terminals as the authorisation caches hold them.

These are plain mutable objects with __slots__: the engine touches several per request and
must not allocate on the way. They change only through the engine, which journals every
change first (switch.engine).
"""

from __future__ import annotations

import enum


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    TEMPORARILY_LOST = "temporarily_lost"  # lifts itself after the configured days
    LOST = "lost"  # formal loss report; leads to replacement
    SUSPENDED = "suspended"  # social-security functions suspended (regulation art. 17)
    CANCELLED = "cancelled"
    REPLACED = "replaced"  # a new card number carries the holder on
    ISSUED = "issued"  # handed over, not yet activated (switch/lifecycle): refused everywhere


class CardCategory(enum.StrEnum):
    """Set at enrolment; concessions key off it so the switch never needs the ID number."""

    STANDARD = "standard"
    ELDERLY = "elderly"  # Shiyan 寿星卡, age >= 65
    DISABLED = "disabled"
    STUDENT = "student"
    LOW_INCOME = "low_income"


class TerminalKind(enum.StrEnum):
    GATE = "gate"  # transit gate or bus validator
    POS = "pos"  # merchant point of sale
    MEDICAL = "medical"  # hospital or pharmacy counter: e-card scans


class Card:
    """One card and its separately kept accounts.

    purse_fen: transit purse (stored value), capped by configuration.
    medical_fen: medical insurance personal account.
    bank_id / bank_account_masked: the financial account lives at a partner bank; we keep
        only which bank and a masked number for people.
    """

    __slots__ = (
        "bank_account_masked",
        "bank_id",
        "category",
        "debt_fen",
        "holder_masked",
        "holder_token",
        "medical_fen",
        "number",
        "purse_fen",
        "status",
    )

    def __init__(
        self,
        number: str,
        *,
        holder_token: str,
        holder_masked: str,
        category: CardCategory,
        status: CardStatus,
        purse_fen: int,
        medical_fen: int,
        bank_id: str,
        bank_account_masked: str,
    ) -> None:
        self.number = number
        self.holder_token = holder_token
        self.holder_masked = holder_masked
        self.category = category
        self.status = status
        self.purse_fen = purse_fen
        # Fares of offline taps the purse could not cover; paid back before anything else.
        self.debt_fen = 0
        self.medical_fen = medical_fen
        self.bank_id = bank_id
        self.bank_account_masked = bank_account_masked
