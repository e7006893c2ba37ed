"""Sealing personal data with AES-256-GCM.

A sealed value is `version (1) | key id (u16) | nonce (12) | ciphertext+tag`. The associated
data binds it to its place (the holder token, a complaint's id): a sealed value copied onto
another row does not open there. The highest key id seals; every id still held opens, so a
new key can be brought in without re-encrypting what exists.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switch.errors import ConfigError, StateError

SEAL_VERSION = 1
# 96-bit random nonces: GCM's native size; at 2^32 seals per key the collision chance stays
# below 2^-32, far more than a city's holders and complaints will ever need.
NONCE_SIZE = 12
_HEADER = struct.Struct(">BH")


class Sealer:
    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise ConfigError("no personal-data key in the key store")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = max(keys)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        ciphertext = self._ciphers[self._current].encrypt(nonce, plaintext, context)
        return _HEADER.pack(SEAL_VERSION, self._current) + nonce + ciphertext

    def open(self, sealed: bytes, context: bytes) -> bytes:
        if len(sealed) < _HEADER.size + NONCE_SIZE:
            raise StateError("sealed value too short")
        version, key_id = _HEADER.unpack_from(sealed, 0)
        cipher = self._ciphers.get(key_id)
        if version != SEAL_VERSION or cipher is None:
            raise StateError(f"sealed value of version {version}, key {key_id}: cannot open")
        nonce = sealed[_HEADER.size : _HEADER.size + NONCE_SIZE]
        try:
            return cipher.decrypt(nonce, sealed[_HEADER.size + NONCE_SIZE :], context)
        except InvalidTag:
            raise StateError("sealed value does not open: altered or out of place") from None
