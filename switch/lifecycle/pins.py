"""PIN rules and PIN hashes.

Rules (facts.md): 6 digits; not 123456; the social-security PIN differs from the financial
PIN; 3 wrong tries lock the PIN until it is reset at the desk.

Hash: scrypt over HMAC-SHA256(pepper, card | function | PIN) with a 16-byte random salt.
A six-digit PIN has only a million values, so no hash alone protects it from someone holding
the digest; the pepper (a key-store secret, never in the journal) is what makes a copy of the
journal useless for guessing, and scrypt's cost makes each guess slow for whoever has both.
The card and function in the input keep one digest from verifying for another card.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets

from switch.errors import Refused

PIN_SHAPE = re.compile(r"[0-9]{6}")
# The PINs a card may not have: 123456 (facts.md) and the other trivial ones every issuer
# refuses (all one digit, straight runs).
FORBIDDEN_PINS = frozenset(
    {"123456", "654321", "012345", "543210", *(str(digit) * 6 for digit in range(10))}
)
# Wrong tries after which the PIN locks (facts.md).
PIN_TRIES_MAX = 3
SALT_SIZE = 16
DIGEST_SIZE = 32
# scrypt N = 2**15, r = 8: 32 MiB and ~0.1 s per hash on the switch's cores (OWASP's scrypt
# minimum is N = 2**17 with r = 8, p = 1 for passwords; a PIN is tried at a desk or by a
# partner system a few times a minute, so we stay cheaper and rely on the pepper). Tests
# lower it through the configuration.
COST_LOG2_DEFAULT = 15
SCRYPT_R = 8
SCRYPT_P = 1


class PinFunction(enum.StrEnum):
    SOCIAL_SECURITY = "social_security"
    FINANCIAL = "financial"


def check_pin_rules(pin: str) -> None:
    if not PIN_SHAPE.fullmatch(pin):
        raise Refused("a PIN is exactly 6 digits")
    if pin in FORBIDDEN_PINS:
        raise Refused("this PIN is too easy to guess (e.g. 123456); choose another")


def _input(pepper: bytes, card: str, function: str, pin: str) -> bytes:
    return hmac.new(pepper, f"{card}|{function}|{pin}".encode(), hashlib.sha256).digest()


def hash_pin(
    pepper: bytes, card: str, function: str, pin: str, cost_log2: int, salt: bytes | None = None
) -> tuple[bytes, bytes]:
    """(salt, digest). Slow by design: call it in a worker thread."""
    salt = secrets.token_bytes(SALT_SIZE) if salt is None else salt
    digest = hashlib.scrypt(
        _input(pepper, card, function, pin),
        salt=salt,
        n=2**cost_log2,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=256 * 2**cost_log2 * SCRYPT_R,
        dklen=DIGEST_SIZE,
    )
    return salt, digest


def pin_matches(
    pepper: bytes, card: str, function: str, pin: str, salt: bytes, digest: bytes, cost_log2: int
) -> bool:
    """Whether `pin` hashes to `digest`; constant time in the comparison. Slow: thread."""
    if not PIN_SHAPE.fullmatch(pin):
        return False
    _, candidate = hash_pin(pepper, card, function, pin, cost_log2, salt)
    return hmac.compare_digest(candidate, digest)
