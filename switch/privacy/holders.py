"""The holder registry: each holder's name, citizen ID number and contact, sealed.

Holders are known everywhere else by their token (a keyed HMAC of the ID number,
switch.domain.identifiers) and a masked form. The registry maps a token to the sealed
personal data; the associated data of each seal is the token, so a row moved to another
holder does not open.

Embedded default: `holders.log` in the data directory, an append-only file of
length-prefixed, checksummed entries (the newest entry of a token wins), loaded whole at
start. Why not the journal: personal data must be erasable (a holder's data is deleted
after the retention period by dropping their entries and key, which an append-only,
hash-chained, replicated journal cannot do), and every copy of the journal (backups, the
PostgreSQL projection) would carry it. PostgreSQL keeps the same sealed bytes in `holders`.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgspec

from switch.domain.identifiers import citizen_id_token, mask_citizen_id, normalise_citizen_id
from switch.errors import StateError
from switch.privacy.masking import mask_contact, mask_name
from switch.privacy.seal import Sealer

FILE_NAME = "holders.log"
_ENTRY = struct.Struct(">II")  # payload length, CRC-32
# A holder entry is ~200 bytes sealed; anything near this is corruption, not data.
ENTRY_BYTES_MAX = 64 * 1024
# Longest name and contact accepted: names on Chinese ID cards fit in 15 characters; 64 leaves
# room for transliterated foreign names. A contact is a phone number or an address line.
NAME_LENGTH_MAX = 64
CONTACT_LENGTH_MAX = 128


class PersonalData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    citizen_id: str
    contact: str

    def masked(self) -> PersonalData:
        return PersonalData(
            mask_name(self.name), mask_citizen_id(self.citizen_id), mask_contact(self.contact)
        )


def validated(name: str, citizen_id: str, contact: str) -> PersonalData:
    """Normalised personal data; InvalidIdentifier or Refused-worthy ValueError otherwise."""
    name = name.strip()
    contact = contact.strip()
    if not 0 < len(name) <= NAME_LENGTH_MAX:
        raise ValueError(f"a name is 1 to {NAME_LENGTH_MAX} characters")
    if len(contact) > CONTACT_LENGTH_MAX:
        raise ValueError(f"a contact is at most {CONTACT_LENGTH_MAX} characters")
    return PersonalData(name, normalise_citizen_id(citizen_id), contact)


class HolderSealer:
    """Tokens, masks and seals for holders: everything that needs the key store."""

    def __init__(self, holder_secret: bytes, sealer: Sealer) -> None:
        self._secret = holder_secret
        self._sealer = sealer

    def token(self, citizen_id: str) -> str:
        return citizen_id_token(normalise_citizen_id(citizen_id), self._secret)

    def seal(self, token: str, data: PersonalData) -> bytes:
        return self._sealer.seal(msgspec.msgpack.encode(data), token.encode())

    def open(self, token: str, sealed: bytes) -> PersonalData:
        return msgspec.msgpack.decode(self._sealer.open(sealed, token.encode()), type=PersonalData)


class HolderFile:
    """The embedded registry file. put() is synchronous and fsyncs: call it in a thread."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._rows: dict[str, bytes] = {}
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        offset = 0
        while offset + _ENTRY.size <= len(data):
            length, crc = _ENTRY.unpack_from(data, offset)
            begin = offset + _ENTRY.size
            end = begin + length
            if not 0 < length <= ENTRY_BYTES_MAX or end > len(data):
                break
            if zlib.crc32(data[begin:end]) != crc:
                break
            token, sealed = msgspec.msgpack.decode(data[begin:end], type=tuple[str, bytes])
            self._rows[token] = sealed
            offset = end
        if offset != len(data):
            # A torn last entry: its put() never returned, so nobody relied on it.
            if offset + _ENTRY.size + ENTRY_BYTES_MAX < len(data):
                raise StateError(f"{self.path}: damaged before its end, at byte {offset}")
            with open(self.path, "r+b") as file:
                file.truncate(offset)
                os.fsync(file.fileno())

    def get(self, token: str) -> bytes | None:
        return self._rows.get(token)

    def put(self, token: str, sealed: bytes) -> None:
        self.put_many([(token, sealed)])

    def put_many(self, rows: list[tuple[str, bytes]]) -> None:
        """Append `rows` with one write and one fsync (enrolment in bulk)."""
        parts = []
        for token, sealed in rows:
            payload = msgspec.msgpack.encode((token, sealed))
            parts.append(_ENTRY.pack(len(payload), zlib.crc32(payload)) + payload)
        data = memoryview(b"".join(parts))
        while data:
            data = data[os.write(self._fd, data) :]
        os.fsync(self._fd)
        self._rows.update(rows)

    def rows(self) -> list[tuple[str, bytes]]:
        return list(self._rows.items())

    def __len__(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        os.close(self._fd)
