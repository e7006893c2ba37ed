"""Journal records of the card lifecycle. They import nothing from the switch, so
switch.journal.records can include them without a cycle.

A lifecycle command is journalled as a `LifecycleStep` (who did what, from which stage to
which) together with the records the engine already knows (`CardIssued`,
`CardStatusChanged`, e-card bindings), all in one batch: the step is the evidence, the
others change the caches. `actor` is the principal of the service API token; holders appear
only as their token and masked ID number.
"""

from __future__ import annotations

import msgspec


class CardApplied(msgspec.Struct, tag="card_applied", array_like=True, frozen=True):
    """An application accepted for eligibility; `card` is the number the card will carry."""

    time_ms: int
    card: str
    holder_token: str
    holder_masked: str
    category: str
    basis: str  # switch.lifecycle.commands.EligibilityBasis
    actor: str


class LifecycleStep(msgspec.Struct, tag="lifecycle_step", array_like=True, frozen=True):
    time_ms: int
    card: str
    command: str  # switch.lifecycle.machine.Command
    before: str  # Stage
    after: str  # Stage
    actor: str
    reason: str = ""
    until_ms: int = 0  # a temporary loss report: when it lifts itself
    other_card: str = ""  # a replacement: the new card


class PinSet(msgspec.Struct, tag="pin_set", array_like=True, frozen=True):
    """A PIN set at activation or reset at the desk; only its peppered scrypt hash."""

    time_ms: int
    card: str
    function: str  # "social_security" or "financial"
    salt: bytes
    digest: bytes
    cost_log2: int  # scrypt N = 2**cost_log2
    actor: str


class PinTried(msgspec.Struct, tag="pin_tried", array_like=True, frozen=True):
    time_ms: int
    card: str
    function: str
    ok: bool
    actor: str


class BankFunctionChanged(msgspec.Struct, tag="bank_function", array_like=True, frozen=True):
    """The financial (bank) function's own status, reported separately from the card's
    social-security function (facts.md): active, lost, or settled (account closed)."""

    time_ms: int
    card: str
    status: str
    actor: str


class MedicalSettled(msgspec.Struct, tag="medical_settled", array_like=True, frozen=True):
    """The medical insurance platform settled the personal account (paid out or moved):
    `amount_fen` leaves it, leaving it at zero."""

    time_ms: int
    card: str
    amount_fen: int
    actor: str


class PurseRefunded(msgspec.Struct, tag="purse_refunded", array_like=True, frozen=True):
    """On cancellation: the purse less its offline debt is paid back to the holder."""

    time_ms: int
    card: str
    purse_fen: int  # what the purse held
    debt_fen: int  # offline fares owed, kept back
    refund_fen: int  # purse - debt, paid to the holder
    actor: str


class BalancesCarried(msgspec.Struct, tag="balances_carried", array_like=True, frozen=True):
    """On replacement: the old card's purse, debt, medical account and transit state move to
    the new card."""

    time_ms: int
    old_card: str
    new_card: str
    purse_fen: int
    debt_fen: int
    medical_fen: int


LifecycleRecord = (
    CardApplied
    | LifecycleStep
    | PinSet
    | PinTried
    | BankFunctionChanged
    | MedicalSettled
    | PurseRefunded
    | BalancesCarried
)
LIFECYCLE_RECORDS = (
    CardApplied,
    LifecycleStep,
    PinSet,
    PinTried,
    BankFunctionChanged,
    MedicalSettled,
    PurseRefunded,
    BalancesCarried,
)
