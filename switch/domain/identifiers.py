"""Identifier rules: citizen ID (ISO 7064 MOD 11-2), card numbers, bank accounts (Luhn).

Citizen ID numbers are personal data: this module validates them and turns them into a keyed
token (for matching) and a masked form (for people); nothing else in onecard keeps them.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re

from switch.errors import InvalidIdentifier

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
CARD_NUMBER_SHAPE = re.compile(r"[A-Z0-9]{9}")
_BANK_ACCOUNT_SHAPE = re.compile(r"[0-9]{16,19}")


def citizen_id_check_character(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalise_citizen_id(raw: str) -> str:
    """The canonical form of a valid citizen ID number, or InvalidIdentifier."""
    value = raw.strip().upper()
    if not _ID_SHAPE.fullmatch(value):
        raise InvalidIdentifier("citizen ID must be 17 digits and a digit or X")
    try:
        datetime.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidIdentifier("citizen ID holds an impossible birth date") from None
    if citizen_id_check_character(value[:17]) != value[17]:
        raise InvalidIdentifier("citizen ID check character does not match")
    return value


def mask_citizen_id(value: str) -> str:
    """Region prefix and last four only: enough for staff to confirm, not to identify."""
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def citizen_id_token(value: str, secret: bytes) -> str:
    """A keyed token for matching one holder across records without keeping the number."""
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()


def validate_card_number(value: str) -> str:
    if not CARD_NUMBER_SHAPE.fullmatch(value):
        raise InvalidIdentifier("card numbers are 9 characters A-Z, 0-9")
    return value


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    for digit in "0123456789":
        if luhn_valid(partial + digit):
            return digit
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def validate_bank_account(value: str) -> str:
    if not _BANK_ACCOUNT_SHAPE.fullmatch(value) or not luhn_valid(value):
        raise InvalidIdentifier("bank accounts are 16-19 digits and Luhn-valid")
    return value


def mask_bank_account(value: str) -> str:
    return value[:6] + "*" * (len(value) - 10) + value[-4:]
