from __future__ import annotations

import pytest

from switch.domain.identifiers import (
    citizen_id_check_character,
    citizen_id_token,
    luhn_valid,
    mask_bank_account,
    mask_citizen_id,
    normalise_citizen_id,
    validate_bank_account,
    validate_card_number,
)
from switch.errors import InvalidIdentifier

VALID_IDS = [
    "360426199101010071",
    "34052419800101001X",
    "420302196503150014",
    "42030319580101002X",
    "420304200002290037",  # leap day
]


@pytest.mark.parametrize("value", VALID_IDS)
def test_valid_citizen_ids(value: str) -> None:
    assert normalise_citizen_id(value) == value


def test_lower_case_x_is_normalised() -> None:
    assert normalise_citizen_id("34052419800101001x") == "34052419800101001X"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("340524198001010013", "check character should be X"),
        ("110101197608056896", "check character should be 7"),
        ("420302190002290011", "1900 is not a leap year"),
        ("42030219650315001", "17 characters"),
        ("4203021965031500144", "19 characters"),
        ("42030219650315001Y", "Y is not a check character"),
        ("420302196513150014", "month 13"),
    ],
)
def test_invalid_citizen_ids(value: str, why: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_citizen_id(value)


def test_impossible_date_19000229_is_refused_even_with_a_right_check_character() -> None:
    first17 = "42030219000229001"
    with pytest.raises(InvalidIdentifier, match="date"):
        normalise_citizen_id(first17 + citizen_id_check_character(first17))


def test_mask_keeps_region_and_last_four_only() -> None:
    assert mask_citizen_id("420302196503150014") == "4203**********0014"


def test_token_is_keyed_and_stable() -> None:
    a = citizen_id_token("420302196503150014", b"k1")
    assert a == citizen_id_token("420302196503150014", b"k1")
    assert a != citizen_id_token("420302196503150014", b"k2")
    assert "420302196503150014" not in a


def test_bank_accounts() -> None:
    assert luhn_valid("6228480402564890018")
    assert validate_bank_account("6228480402564890018")
    with pytest.raises(InvalidIdentifier):
        validate_bank_account("6228480402564890")
    assert mask_bank_account("6228480402564890018") == "622848*********0018"


@pytest.mark.parametrize("value", ["X00000019", "ABCDEFGHI", "000000000"])
def test_card_numbers(value: str) -> None:
    assert validate_card_number(value) == value


@pytest.mark.parametrize("value", ["x00000019", "X0000001", "X000000190", "X0000001-"])
def test_bad_card_numbers(value: str) -> None:
    with pytest.raises(InvalidIdentifier):
        validate_card_number(value)
