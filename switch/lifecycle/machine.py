"""The card lifecycle as a table of data.

    applied ──issue──▶ issued ──activate──▶ active ◀──────────── lift_loss, expire ──┐
       │                  │                  │ report_temporary_loss ▶ temporarily_lost
    withdraw           cancel                │ report_loss ─────────▶ lost ─────────┘
       ▼                  ▼                  │ suspend ─▶ suspended ─restore─▶ active
    cancelled          cancelled             │ replace ─▶ replaced   (a new card goes on)
                                             └ cancel ──▶ cancelled

Every command not in a stage's row is refused with IllegalTransition naming the stage and
the command. Guards that need more than the stage (settled accounts, PIN rules) are checked
by commands.py; this table says only which steps exist.

A suspension (regulation art. 17) survives a loss report and a replacement: a suspended
card reported lost comes back suspended when the loss is lifted, and its replacement is
issued suspended. `next_stage` applies that rule, so lifting a loss can never clear a
sanction.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from switch.domain.model import CardStatus
from switch.errors import IllegalTransition


class Stage(enum.StrEnum):
    APPLIED = "applied"  # an application accepted; no card produced yet
    ISSUED = "issued"  # produced and handed over; not usable until activated
    ACTIVE = "active"
    TEMPORARILY_LOST = "temporarily_lost"
    LOST = "lost"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    REPLACED = "replaced"


class Command(enum.StrEnum):
    ISSUE = "issue"
    WITHDRAW = "withdraw"  # the applicant withdraws before the card is produced
    ACTIVATE = "activate"
    REPORT_TEMPORARY_LOSS = "report_temporary_loss"
    REPORT_LOSS = "report_loss"  # formal loss report
    LIFT_LOSS = "lift_loss"
    EXPIRE_TEMPORARY_LOSS = "expire_temporary_loss"  # the switch itself, after N days
    REPLACE = "replace"
    CANCEL = "cancel"
    SUSPEND = "suspend"
    RESTORE = "restore"


S, K = Stage, Command
_LOSSES = {K.REPORT_TEMPORARY_LOSS: S.TEMPORARILY_LOST, K.REPORT_LOSS: S.LOST}
TRANSITIONS: Mapping[Stage, Mapping[Command, Stage]] = {
    S.APPLIED: {K.ISSUE: S.ISSUED, K.WITHDRAW: S.CANCELLED},
    S.ISSUED: {K.ACTIVATE: S.ACTIVE, K.CANCEL: S.CANCELLED},
    S.ACTIVE: {
        **_LOSSES,
        K.SUSPEND: S.SUSPENDED,
        K.REPLACE: S.REPLACED,
        K.CANCEL: S.CANCELLED,
    },
    S.TEMPORARILY_LOST: {
        K.LIFT_LOSS: S.ACTIVE,
        K.EXPIRE_TEMPORARY_LOSS: S.ACTIVE,
        K.REPORT_LOSS: S.LOST,
        K.REPLACE: S.REPLACED,
        K.CANCEL: S.CANCELLED,
    },
    S.LOST: {K.LIFT_LOSS: S.ACTIVE, K.REPLACE: S.REPLACED, K.CANCEL: S.CANCELLED},
    S.SUSPENDED: {
        **_LOSSES,
        K.RESTORE: S.ACTIVE,
        K.REPLACE: S.REPLACED,
        K.CANCEL: S.CANCELLED,
    },
    S.CANCELLED: {},
    S.REPLACED: {},
}

# The card status the authorisation engine decides by, for each stage that has a card.
CARD_STATUS: Mapping[Stage, CardStatus] = {
    S.ISSUED: CardStatus.ISSUED,
    S.ACTIVE: CardStatus.ACTIVE,
    S.TEMPORARILY_LOST: CardStatus.TEMPORARILY_LOST,
    S.LOST: CardStatus.LOST,
    S.SUSPENDED: CardStatus.SUSPENDED,
    S.CANCELLED: CardStatus.CANCELLED,
    S.REPLACED: CardStatus.REPLACED,
}
STAGE_OF_STATUS: Mapping[CardStatus, Stage] = {
    status: stage for stage, status in CARD_STATUS.items()
}


def next_stage(
    stage: Stage, command: Command, *, suspended: bool = False, formal_loss_liftable: bool = True
) -> Stage:
    """The stage `command` leads to from `stage`; IllegalTransition when there is none.

    formal_loss_liftable: some cities let a formal loss report only lead to replacement
    (facts.md); there lift_loss from `lost` is refused."""
    target = TRANSITIONS[stage].get(command)
    if target is None:
        raise IllegalTransition(stage.value, command.value)
    if stage is S.LOST and command is K.LIFT_LOSS and not formal_loss_liftable:
        raise IllegalTransition(
            stage.value, command.value, "a formal loss report leads to replacement here"
        )
    if target is S.ACTIVE and suspended and command is not K.RESTORE:
        return S.SUSPENDED
    return target
