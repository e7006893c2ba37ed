"""The journal record of a personal-data read. Imports nothing from the switch, so
switch.journal.records can include it without a cycle."""

from __future__ import annotations

import msgspec


class PersonalDataRead(msgspec.Struct, tag="pd_read", array_like=True, frozen=True):
    """`actor` (acting as `role`) read `what` of holder `holder_token` for `purpose`.

    what: "holder" (the registry entry), "lookup" (found by ID number), "complaint" (a
        complaint's text), "access_report" (the holder's own report).
    unmasked: whether the answer carried the data in full.
    """

    time_ms: int
    actor: str
    role: str
    holder_token: str
    purpose: str
    what: str
    unmasked: bool


PRIVACY_RECORDS = (PersonalDataRead,)
