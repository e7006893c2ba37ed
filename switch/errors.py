"""The error tree of the switch package.

    SwitchError
    ├── InvalidIdentifier     a citizen ID, card number or bank account fails its rules
    ├── ConfigError           configuration or key store is unusable
    ├── StateError            a record contradicts the state it is applied to
    ├── EcardError            an e-card operation cannot be done: no e-card, no signing
    │                         key, or the switch holds the data directory
    └── JournalError
        ├── JournalCorrupt    a record before the tail fails its checksum: refuse to start
        └── JournalFailed     a write or fsync failed: the switch must stop (the page cache
                              can no longer be trusted to reach the disk)

Protocol errors live in protocols.errors; they never cross into this tree except as
response codes.
"""

from __future__ import annotations


class SwitchError(Exception):
    pass


class InvalidIdentifier(SwitchError, ValueError):
    pass


class ConfigError(SwitchError):
    pass


class StateError(SwitchError):
    pass


class EcardError(SwitchError):
    pass


class JournalError(SwitchError):
    pass


class JournalCorrupt(JournalError):
    pass


class JournalFailed(JournalError):
    pass
