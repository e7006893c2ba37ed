"""API tokens: `Authorization: Bearer <token>`.

A token is 32 random bytes (URL-safe base64). `api-tokens.json` in the data directory keeps
only its SHA-256 with the principal (a staff or system id, never a name) and role, readable
by the switch's user only: a copy of the file lets no one in. A token is fast to check
(one hash and one dictionary lookup) and unguessable (256 bits), so no slow hash is needed.
`onecard api-token add PRINCIPAL ROLE` makes one and prints it once.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from switch.durable import write_atomically
from switch.errors import ConfigError
from switch.privacy.purposes import Role

FILE_NAME = "api-tokens.json"
TOKEN_BYTES = 32
# Principals are ids like desk-0117 or bank-abc: no names (personal data) in the journal.
PRINCIPAL_SHAPE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    def __init__(self, entries: dict[str, Principal] | None = None) -> None:
        self._by_digest = dict(entries or {})

    def principal(self, token: str) -> Principal | None:
        return self._by_digest.get(_digest(token))

    def add(self, name: str, role: Role) -> str:
        if not PRINCIPAL_SHAPE.fullmatch(name):
            raise ConfigError("a principal is a lower-case id (letters, digits, . _ -)")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._by_digest[_digest(token)] = Principal(name, role)
        return token

    def save(self, directory: Path) -> None:
        path = directory / FILE_NAME
        document = {
            "tokens": {
                digest: {"principal": p.name, "role": p.role.value}
                for digest, p in sorted(self._by_digest.items())
            }
        }
        write_atomically(path, json.dumps(document, indent=1).encode())

    @classmethod
    def load(cls, directory: Path) -> Tokens:
        """The data directory's tokens; none (every request refused 401) without a file."""
        path = directory / FILE_NAME
        if not path.exists():
            return cls()
        try:
            document = json.loads(path.read_text())
            return cls(
                {
                    digest: Principal(entry["principal"], Role(entry["role"]))
                    for digest, entry in document["tokens"].items()
                }
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: unusable token file: {exc}") from exc
