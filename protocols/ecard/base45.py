"""Base45 (RFC 9285): bytes as text in the QR code's alphanumeric character set.

A QR code stores its 45-character alphanumeric set at 5.5 bits per character, against 8 bits
per character in byte mode. Base45 packs two bytes into three such characters, so binary
data costs 8.25 bits per byte in the symbol: almost as dense as raw byte mode, while staying
text that every scanner SDK hands over unmangled (byte-mode payloads with bytes >= 0x80
are commonly re-decoded through a guessed charset). The EU Digital COVID Certificate chose
it for the same reason.
"""

from __future__ import annotations

ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
BASE = len(ALPHABET)
_VALUE: dict[int, int] = {char: value for value, char in enumerate(ALPHABET)}
# Largest value a three-character group may carry (two bytes) and a trailing
# two-character group (one byte).
_PAIR_MAX = 0xFFFF
_SINGLE_MAX = 0xFF


def b45encode(data: bytes) -> bytes:
    out = bytearray()
    for index in range(0, len(data) - 1, 2):
        value = data[index] << 8 | data[index + 1]
        value, c = divmod(value, BASE)
        e, d = divmod(value, BASE)
        out += bytes((ALPHABET[c], ALPHABET[d], ALPHABET[e]))
    if len(data) % 2:
        d, c = divmod(data[-1], BASE)
        out += bytes((ALPHABET[c], ALPHABET[d]))
    return bytes(out)


def b45decode(text: bytes) -> bytes:
    """The bytes `text` encodes; ValueError for a character outside the alphabet, a
    dangling single character, or a group whose value does not fit its bytes."""
    if len(text) % 3 == 1:
        raise ValueError(f"base45 length {len(text)} leaves a single character")
    out = bytearray()
    value_of = _VALUE
    try:
        for index in range(0, len(text) - 2, 3):
            value = (
                value_of[text[index]]
                + value_of[text[index + 1]] * BASE
                + value_of[text[index + 2]] * BASE * BASE
            )
            if value > _PAIR_MAX:
                raise ValueError(f"base45 group at {index} exceeds two bytes")
            out += value.to_bytes(2, "big")
        if len(text) % 3 == 2:
            value = value_of[text[-2]] + value_of[text[-1]] * BASE
            if value > _SINGLE_MAX:
                raise ValueError("base45 trailing group exceeds one byte")
            out.append(value)
    except KeyError as exc:
        raise ValueError(f"byte {exc.args[0]:#04x} is not in the base45 alphabet") from None
    return bytes(out)
