"""The embedded key store: terminal MAC keys and the holder-token secret.

In production these live in an HSM; the embedded default keeps them in `keys.json` beside
the journal, readable by the switch's user only (0600), written atomically. The journal
holds only each key's check value, so a journal copy leaks no key.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from protocols.terminal.mac import KEY_SIZE
from switch.errors import ConfigError

FILE_NAME = "keys.json"


@dataclass
class KeyStore:
    holder_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    terminals: dict[str, bytes] = field(default_factory=dict)

    def new_terminal_key(self, terminal_id: str) -> bytes:
        key = secrets.token_bytes(KEY_SIZE)
        self.terminals[terminal_id] = key
        return key

    def save(self, directory: Path) -> None:
        path = directory / FILE_NAME
        temporary = path.with_suffix(".tmp")
        document = {
            "holder_secret": self.holder_secret.hex(),
            "terminals": {tid: key.hex() for tid, key in sorted(self.terminals.items())},
        }
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(document, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)

    @classmethod
    def load(cls, directory: Path) -> KeyStore:
        path = directory / FILE_NAME
        try:
            document = json.loads(path.read_text())
            return cls(
                holder_secret=bytes.fromhex(document["holder_secret"]),
                terminals={tid: bytes.fromhex(k) for tid, k in document["terminals"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: unusable key store: {exc}") from exc
