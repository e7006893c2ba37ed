"""Why a member of staff may read a holder's personal data (regulation art. 11: no unlawful
query), and which roles may see it unmasked for which purpose.

Every read names a purpose; it is journalled with the read. Unmasked data is shown only to a
role listed for the purpose stated: a service-desk clerk checking identity at the counter
sees the ID number in full, an auditor never does.
"""

from __future__ import annotations

import enum


class Purpose(enum.StrEnum):
    IDENTITY_CHECK = "identity_check"  # the holder stands at the counter
    CARD_SERVICE = "card_service"  # application, replacement, cancellation paperwork
    COMPLAINT_HANDLING = "complaint_handling"
    FRAUD_INVESTIGATION = "fraud_investigation"  # art. 17 cases
    HOLDER_REQUEST = "holder_request"  # the holder asked for their own data
    AUDIT = "audit"  # checking that reads were lawful: masked only


class Role(enum.StrEnum):
    SERVICE_DESK = "service_desk"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    OPERATIONS = "operations"
    PARTNER_SYSTEM = "partner_system"


# Role -> purposes for which it may see personal data unmasked. Roles not listed see masked
# forms only, whatever the purpose.
UNMASKED_FOR: dict[Role, frozenset[Purpose]] = {
    Role.SERVICE_DESK: frozenset(
        {Purpose.IDENTITY_CHECK, Purpose.CARD_SERVICE, Purpose.HOLDER_REQUEST}
    ),
    Role.SUPERVISOR: frozenset(
        {
            Purpose.IDENTITY_CHECK,
            Purpose.CARD_SERVICE,
            Purpose.COMPLAINT_HANDLING,
            Purpose.FRAUD_INVESTIGATION,
            Purpose.HOLDER_REQUEST,
        }
    ),
}


def may_unmask(role: Role, purpose: Purpose) -> bool:
    return purpose in UNMASKED_FOR.get(role, frozenset())
