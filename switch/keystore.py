"""The embedded key store: terminal MAC keys, the holder-token secret and the e-card QR
signing keys.

In production these live in an HSM; the embedded default keeps them in `keys.json` beside
the journal, readable by the switch's user only (0600), written atomically. The journal
holds only each key's check value, so a journal copy leaks no key.

QR signing keys (Ed25519 private keys, by key id) belong to the e-card issuing side; they sit
here while the issuer is embedded in the switch's data directory (`onecard qr mint`). The
switch itself verifies with the public halves, which the journal carries. A key store
written before e-cards existed has no `qr_signing_keys` section and loads with none.

Personal-data keys (AES-256 by key id; the highest id seals, every id opens) encrypt holders'
names, ID numbers and contacts at rest, and the PIN pepper keys PIN hashes so that a copy of
the journal alone cannot be brute-forced. A key store written before they existed has
neither: it loads with both derived from its holder secret (HKDF, one label each), so old
data directories keep working, and `save()` writes them out from then on.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.terminal.mac import KEY_SIZE
from switch.durable import write_atomically
from switch.errors import ConfigError

FILE_NAME = "keys.json"
# AES-256-GCM keys and the HMAC pepper of PIN hashes: 256 bits each.
SECRET_SIZE = 32


def derive_secret(secret: bytes, label: bytes) -> bytes:
    """A key for one purpose from a key store's holder secret (old key stores only)."""
    return HKDF(hashes.SHA256(), SECRET_SIZE, salt=None, info=label).derive(secret)


@dataclass
class KeyStore:
    holder_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    terminals: dict[str, bytes] = field(default_factory=dict)
    # key id -> 32-byte raw Ed25519 private key
    qr_signing: dict[int, bytes] = field(default_factory=dict)
    # Keys the journal's hash chain (journal/segment.py): without it the chain can be
    # recomputed by whoever can write the files, and tampering would go unseen.
    journal: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # key id -> AES-256 key for personal data at rest (switch/privacy/seal.py)
    data_keys: dict[int, bytes] = field(
        default_factory=lambda: {1: secrets.token_bytes(SECRET_SIZE)}
    )
    # HMAC key mixed into every PIN hash (switch/lifecycle/pins.py)
    pin_pepper: bytes = field(default_factory=lambda: secrets.token_bytes(SECRET_SIZE))

    def new_terminal_key(self, terminal_id: str) -> bytes:
        key = secrets.token_bytes(KEY_SIZE)
        self.terminals[terminal_id] = key
        return key

    def new_qr_key(self, key_id: int) -> bytes:
        """Make the QR signing key `key_id`; returns its raw public key for the journal."""
        if key_id in self.qr_signing:
            raise ConfigError(f"QR signing key {key_id} exists already")
        private = Ed25519PrivateKey.generate()
        self.qr_signing[key_id] = private.private_bytes_raw()
        return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def save(self, directory: Path) -> None:
        path = directory / FILE_NAME
        document = {
            "holder_secret": self.holder_secret.hex(),
            "journal_key": self.journal.hex(),
            "terminals": {tid: key.hex() for tid, key in sorted(self.terminals.items())},
            "qr_signing_keys": {
                str(kid): key.hex() for kid, key in sorted(self.qr_signing.items())
            },
            "data_keys": {str(kid): key.hex() for kid, key in sorted(self.data_keys.items())},
            "pin_pepper": self.pin_pepper.hex(),
        }
        write_atomically(path, json.dumps(document, indent=1).encode())

    @classmethod
    def load(cls, directory: Path) -> KeyStore:
        path = directory / FILE_NAME
        try:
            document = json.loads(path.read_text())
            holder_secret = bytes.fromhex(document["holder_secret"])
            data_keys = {
                int(kid): bytes.fromhex(k) for kid, k in document.get("data_keys", {}).items()
            }
            if not data_keys:
                data_keys = {0: derive_secret(holder_secret, b"onecard personal data key 0")}
            pepper = document.get("pin_pepper")
            return cls(
                holder_secret=bytes.fromhex(document["holder_secret"]),
                # Required: a journal chained with a lost key can no longer be verified.
                journal=bytes.fromhex(document["journal_key"]),
                terminals={tid: bytes.fromhex(k) for tid, k in document["terminals"].items()},
                qr_signing={
                    int(kid): bytes.fromhex(k)
                    for kid, k in document.get("qr_signing_keys", {}).items()
                },
                data_keys=data_keys,
                pin_pepper=bytes.fromhex(pepper)
                if pepper is not None
                else derive_secret(holder_secret, b"onecard pin pepper"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: unusable key store: {exc}") from exc
