"""The lifecycle table, sans-I/O: every (stage, command) pair, legal or not."""

from __future__ import annotations

import pytest

from switch.domain.model import CardStatus
from switch.errors import IllegalTransition, Refused
from switch.lifecycle.machine import CARD_STATUS, TRANSITIONS, Command, Stage, next_stage
from switch.lifecycle.pins import check_pin_rules, hash_pin, pin_matches

PAIRS = [(stage, command) for stage in Stage for command in Command]


@pytest.mark.parametrize(("stage", "command"), PAIRS, ids=str)
def test_every_pair_is_either_a_step_or_an_error_naming_both(
    stage: Stage, command: Command
) -> None:
    target = TRANSITIONS[stage].get(command)
    if target is not None:
        assert next_stage(stage, command) is target
        return
    with pytest.raises(IllegalTransition) as raised:
        next_stage(stage, command)
    assert (raised.value.state, raised.value.command) == (stage.value, command.value)
    assert str(raised.value) == f"{command.value} is not allowed in state {stage.value}"


def test_table_covers_every_stage_and_every_card_status() -> None:
    assert set(TRANSITIONS) == set(Stage)
    assert set(CARD_STATUS.values()) == set(CardStatus)
    assert TRANSITIONS[Stage.CANCELLED] == {} and TRANSITIONS[Stage.REPLACED] == {}


def test_a_suspension_survives_lifting_a_loss_report() -> None:
    for command in (Command.LIFT_LOSS, Command.EXPIRE_TEMPORARY_LOSS):
        assert next_stage(Stage.TEMPORARILY_LOST, command, suspended=True) is Stage.SUSPENDED
    assert next_stage(Stage.SUSPENDED, Command.RESTORE, suspended=True) is Stage.ACTIVE


def test_formal_loss_lift_can_be_switched_off() -> None:
    with pytest.raises(IllegalTransition, match="leads to replacement"):
        next_stage(Stage.LOST, Command.LIFT_LOSS, formal_loss_liftable=False)
    assert next_stage(Stage.TEMPORARILY_LOST, Command.LIFT_LOSS, formal_loss_liftable=False) is (
        Stage.ACTIVE
    )


@pytest.mark.parametrize("pin", ["123456", "000000", "654321", "12345", "1234567", "12a456", ""])
def test_pin_rules_refuse(pin: str) -> None:
    with pytest.raises(Refused):
        check_pin_rules(pin)


def test_pin_hash_is_salted_peppered_and_bound_to_card_and_function() -> None:
    pepper = b"p" * 32
    salt, digest = hash_pin(pepper, "S00000001", "social_security", "802613", 10)
    assert pin_matches(pepper, "S00000001", "social_security", "802613", salt, digest, 10)
    assert not pin_matches(pepper, "S00000001", "social_security", "802614", salt, digest, 10)
    assert not pin_matches(pepper, "S00000002", "social_security", "802613", salt, digest, 10)
    assert not pin_matches(pepper, "S00000001", "financial", "802613", salt, digest, 10)
    assert not pin_matches(b"q" * 32, "S00000001", "social_security", "802613", salt, digest, 10)
    other_salt, other = hash_pin(pepper, "S00000001", "social_security", "802613", 10)
    assert other_salt != salt and other != digest
