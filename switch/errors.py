"""The error tree of the switch package.

    SwitchError
    ├── InvalidIdentifier     a citizen ID, card number or bank account fails its rules
    ├── ConfigError           configuration or key store is unusable
    ├── StateError            a record contradicts the state it is applied to
    ├── EcardError            an e-card operation cannot be done: no e-card, no signing
    │                         key, or the switch holds the data directory
    ├── ServiceError          a back-office request (service API) cannot be done
    │   ├── NotFound          no such card, holder, complaint, flag
    │   ├── IllegalTransition the lifecycle (or a complaint) has no such step from its
    │   │                     state: names the state and the command
    │   ├── Refused           a rule refuses it: eligibility, PIN rules, unsettled accounts
    │   └── StoreUnavailable  the store (PostgreSQL) cannot answer now
    ├── JournalError
    │   ├── JournalCorrupt    a record before the tail fails its checksum: refuse to start
    │   └── JournalFailed     a write or fsync failed: the switch must stop (the page cache
    │                         can no longer be trusted to reach the disk)
    └── FollowerError         the misuse follower process broke its protocol, stopped or
                              hung: the watcher starts another

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


class ServiceError(SwitchError):
    pass


class NotFound(ServiceError):
    pass


class IllegalTransition(ServiceError):
    """`command` is not a step the table allows from `state`."""

    def __init__(self, state: str, command: str, detail: str = "") -> None:
        self.state = state
        self.command = command
        message = f"{command} is not allowed in state {state}"
        super().__init__(f"{message}: {detail}" if detail else message)


class Refused(ServiceError):
    pass


class StoreUnavailable(ServiceError):
    pass


class JournalError(SwitchError):
    pass


class JournalCorrupt(JournalError):
    pass


class SnapshotMismatch(SwitchError):
    """A snapshot does not belong to this journal (or is ahead of it): replay in full."""


class JournalFailed(JournalError):
    pass


class FollowerError(SwitchError):
    """The misuse follower process broke its protocol (misuse/wire.py), stopped or hung."""
