"""The ISO 8583:1987 field codec of our own: MTI, bitmaps and fields per spec.py, in
pyiso8583's decoded form (`t` the MTI, `p`/`1` the bitmaps as upper-case hex, "2" ..
"128" the fields, binary ones as upper-case hex).

It replaces pyiso8583 on the switch's paths, and agrees with it on every message: the same
bytes for the same fields, the same fields from the same bytes, and a refusal wherever
pyiso8583 refuses (tests/iso8583/test_differential.py). It is faster because it does less
per message: the spec is compiled once into a table indexed by field number, the bitmap is
one integer, and the fields a bitmap (or a set of keys) names are looked up once and
remembered (`PLANS_MAX`), so a purchase is a loop over its dozen fields.

Where pyiso8583 is lenient we are lenient the same way, so the two never disagree on what
a merchant's message means: a length prefix is read with int() after ASCII decoding (so
"+5" or " 5" are 5, as there), and a tertiary bitmap (bit 65) is read and must name no
field, since the 1987 spec has no fields 129-192 (pyiso8583 fails on those too).

decode_fields() raises only RemoteProtocolError (code 30, not fatal: the frame around it
was sound); encode_fields() only LocalProtocolError (we tried to send something the spec
does not allow).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping

from protocols.codes import ResponseCode
from protocols.errors import LocalProtocolError, RemoteProtocolError
from protocols.iso8583.mac import MAC_SIZE
from protocols.iso8583.spec import BITMAP_SIZE, FIELD_MAX, FIELDS, MTI_SIZE, Length

# Distinct bitmaps (decoding) and key sets (encoding) remembered with their field plans.
# Our peers send a handful of message shapes; 1,024 covers every shape of every MTI we
# serve many times over, and bounds what a peer sending random bitmaps can make us keep
# (beyond it, plans are computed per message and not stored).
PLANS_MAX = 1024

_SECONDARY_BIT = 1 << 63  # bit 1 of the primary bitmap
_TERTIARY_BIT = 1 << 63  # bit 65: bit 1 of the secondary bitmap
_PRIMARY_END = MTI_SIZE + BITMAP_SIZE
_SECONDARY_END = _PRIMARY_END + BITMAP_SIZE

# One field as the loops need it: (key, binary, prefix width, maximum bytes).
_Step = tuple[str, bool, int, int]


def _step(number: int) -> _Step:
    spec = FIELDS[number]
    assert spec is not None
    return (str(number), spec.binary, int(spec.length), spec.max_len)


_STEPS: tuple[_Step, ...] = tuple(_step(n) for n in range(1, FIELD_MAX + 1))
# Length prefixes, so encoding a variable field formats nothing: _PREFIXES[width][n].
_PREFIXES = {
    int(Length.LLVAR): tuple(b"%02d" % n for n in range(100)),
    int(Length.LLLVAR): tuple(b"%03d" % n for n in range(1000)),
}

_decode_plans: dict[int, tuple[_Step, ...]] = {}
_encode_plans: dict[tuple[tuple[str, ...], bool], tuple[bytes, tuple[_Step, ...]]] = {}
_BITMAP_FIELDS = {1, 65}
_MAC_FIELDS = {64, 128}
# What stands in for the MAC until it is computed over the bytes before it.
_MAC_PLACEHOLDER = bytes(MAC_SIZE)


def _refuse(text: str) -> RemoteProtocolError:
    return RemoteProtocolError(text, code=ResponseCode.FORMAT_ERROR, fatal=False)


def _decode_plan(bitmap: int, width: int) -> tuple[_Step, ...]:
    """The data fields a `width`-bit bitmap names, in order (bitmap bits 1 and 65 are
    bitmaps, not data)."""
    plan = _decode_plans.get(bitmap)
    if plan is None:
        plan = tuple(
            _STEPS[number - 1]
            for number in range(2, width + 1)
            if number != 65 and bitmap >> (width - number) & 1
        )
        if len(_decode_plans) < PLANS_MAX:
            _decode_plans[bitmap] = plan
    return plan


def decode_fields(raw: bytes) -> dict[str, str]:
    """One message without its length header → its fields, as pyiso8583 decodes them."""
    size = len(raw)
    if size < _PRIMARY_END:
        raise _refuse(f"{size} bytes: shorter than an MTI and a bitmap")
    head = raw[:MTI_SIZE]
    if not head.isascii():
        raise _refuse("MTI is not ASCII")
    primary = raw[MTI_SIZE:_PRIMARY_END]
    fields = {"t": head.decode("ascii"), "p": primary.hex().upper()}
    bitmap = int.from_bytes(primary, "big")
    offset = _PRIMARY_END
    width = 64
    if bitmap & _SECONDARY_BIT:
        secondary = raw[_PRIMARY_END:_SECONDARY_END]
        if len(secondary) != BITMAP_SIZE:
            raise _refuse("secondary bitmap cut short")
        bitmap = bitmap << 64 | int.from_bytes(secondary, "big")
        offset = _SECONDARY_END
        width = 128
        extended = secondary.hex().upper()
        if bitmap & _TERTIARY_BIT:
            tertiary = raw[offset : offset + BITMAP_SIZE]
            if len(tertiary) != BITMAP_SIZE:
                raise _refuse("tertiary bitmap cut short")
            if any(tertiary):
                raise _refuse("tertiary bitmap names fields 129-192, which the spec lacks")
            extended += tertiary.hex().upper()
            offset += BITMAP_SIZE
        fields["1"] = extended
    for key, binary, prefix, max_len in _decode_plan(bitmap, width):
        if prefix:
            end = offset + prefix
            header = raw[offset:end]
            if len(header) != prefix:
                raise _refuse(f"DE{key}: length prefix cut short")
            try:
                length = int(header.decode("ascii"))
            except ValueError:  # UnicodeDecodeError is one
                raise _refuse(f"DE{key}: length prefix {header!r} is not a number") from None
            if length > max_len:
                raise _refuse(f"DE{key}: {length} bytes, more than {max_len}")
            if length < 0:
                raise _refuse(f"DE{key}: negative length {length}")
            offset = end
            if length == 0:
                fields[key] = ""
                continue
        else:
            length = max_len
        end = offset + length
        data = raw[offset:end]
        if len(data) != length:
            raise _refuse(f"DE{key}: {len(data)} bytes, expected {length}")
        if binary:
            fields[key] = data.hex().upper()
        else:
            try:
                fields[key] = data.decode("ascii")
            except UnicodeDecodeError:
                raise _refuse(f"DE{key} is not ASCII") from None
        offset = end
    if offset != size:
        raise _refuse(f"{size - offset} bytes after the last field")
    return fields


def _encode_plan(keys: tuple[str, ...], with_mac: bool) -> tuple[bytes, tuple[_Step, ...]]:
    """The bitmap(s) and the fields, in order, for a message with these keys. Like
    pyiso8583: keys that are not numbers (`t`, `p`, `_mac` ...) carry no field, and the
    bitmap fields 1 and 65 are computed, never taken from the input. `with_mac`: the MAC
    field (DE64, or DE128 with a secondary bitmap) is added last, whatever the input holds
    in DE64 and DE128."""
    plan = _encode_plans.get((keys, with_mac))
    if plan is not None:
        return plan
    numbers = set()
    for key in keys:
        if key.isnumeric():
            try:
                number = int(key)
            except ValueError:  # "²" is numeric, but no number int() reads
                raise LocalProtocolError(f"DE{key}: not a field number") from None
            if not 1 <= number <= FIELD_MAX:
                raise LocalProtocolError(f"DE{key}: no such field in the 1987 spec")
            if key != str(number):  # "064": pyiso8583 fails on it too (KeyError)
                raise LocalProtocolError(f"DE{key}: write field numbers as {number}")
            numbers.add(number)
    numbers -= _BITMAP_FIELDS | (_MAC_FIELDS if with_mac else set())
    width = 128 if max(numbers, default=0) > 64 else 64
    if with_mac:
        numbers.add(width)  # the highest field: the MAC covers every byte before it
    bitmap = 0
    for number in numbers:
        bitmap |= 1 << (width - number)
    if width == 128:
        bitmap |= 1 << 127  # bit 1: the secondary bitmap follows
    steps = tuple(_STEPS[number - 1] for number in sorted(numbers))
    plan = (bitmap.to_bytes(width // 8, "big"), steps)
    if len(_encode_plans) < PLANS_MAX:
        _encode_plans[keys, with_mac] = plan
    return plan


def encode_fields(fields: Mapping[str, str], *, with_mac: bool = False) -> bytes:
    """Fields in pyiso8583's decoded form → the message, byte for byte what pyiso8583
    encodes. `with_mac`: DE64/DE128 is added as the last field, all zeros, for the caller
    to overwrite with the MAC of the bytes before it. LocalProtocolError when a value does
    not fit its field."""
    mti = fields.get("t")
    if mti is None:
        raise LocalProtocolError("no MTI")
    try:
        head = mti.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise LocalProtocolError(f"MTI {mti!r} is not ASCII") from None
    if len(head) != MTI_SIZE:
        raise LocalProtocolError(f"MTI {mti!r} is not {MTI_SIZE} characters")
    bitmaps, steps = _encode_plan(tuple(fields), with_mac)
    if with_mac:
        steps = steps[:-1]
    parts = [head, bitmaps]
    for key, binary, prefix, max_len in steps:
        value = fields[key]
        try:
            data = binascii.unhexlify(value) if binary else value.encode("ascii")
        except (ValueError, AttributeError, TypeError):  # binascii.Error is a ValueError
            kind = "hex" if binary else "ASCII"
            raise LocalProtocolError(f"DE{key}: {value!r} is not {kind}") from None
        length = len(data)
        if prefix:
            if length > max_len:
                raise LocalProtocolError(f"DE{key}: {length} bytes, more than {max_len}")
            parts.append(_PREFIXES[prefix][length])
        elif length != max_len:
            raise LocalProtocolError(f"DE{key}: {length} bytes, expected {max_len}")
        parts.append(data)
    if with_mac:
        parts.append(_MAC_PLACEHOLDER)
    return b"".join(parts)
