"""What each role may do (regulation art. 11: least privilege), as a table of data.

service_desk    the counter: applications, issuance, activation, loss reports, lifting,
                replacement, cancellation, PINs, e-cards, complaints taken in
supervisor      the desk's powers plus sanctions (suspension, integrity file, recovery
                orders), complaint handling and review of misuse flags
auditor         reads the audit trail, access reports, integrity file, complaints and
                flags: never personal data unmasked, never a change
operations      card status and misuse flags for running the system; no personal data
partner_system  banks, the e-card app service, the medical insurance platform: loss
                reports and PIN checks for their customers, the bank function, e-cards,
                medical settlements
"""

from __future__ import annotations

import enum

from switch.privacy.purposes import Role


class Permission(enum.StrEnum):
    APPLY = "apply"
    ISSUE = "issue"
    ACTIVATE = "activate"
    REPORT_LOSS = "report_loss"
    LIFT_LOSS = "lift_loss"
    REPLACE = "replace"
    CANCEL = "cancel"
    SUSPEND = "suspend"  # and restore
    SETTLE_MEDICAL = "settle_medical"
    BANK_FUNCTION = "bank_function"
    PIN_VERIFY = "pin_verify"
    PIN_RESET = "pin_reset"
    ECARD = "ecard"
    CARD_READ = "card_read"
    HOLDER_READ = "holder_read"  # lookups and holder data, masked unless purpose allows
    ACCESS_REPORT = "access_report"
    INTEGRITY_WRITE = "integrity_write"
    INTEGRITY_READ = "integrity_read"
    COMPLAINT_FILE = "complaint_file"
    COMPLAINT_READ = "complaint_read"
    COMPLAINT_HANDLE = "complaint_handle"
    RECOVERY_WRITE = "recovery_write"
    RECOVERY_READ = "recovery_read"
    FLAGS_READ = "flags_read"
    FLAGS_RESOLVE = "flags_resolve"


P = Permission
_DESK = frozenset(
    {
        P.APPLY,
        P.ISSUE,
        P.ACTIVATE,
        P.REPORT_LOSS,
        P.LIFT_LOSS,
        P.REPLACE,
        P.CANCEL,
        P.PIN_VERIFY,
        P.PIN_RESET,
        P.ECARD,
        P.CARD_READ,
        P.HOLDER_READ,
        P.ACCESS_REPORT,
        P.COMPLAINT_FILE,
        P.COMPLAINT_READ,
        P.BANK_FUNCTION,
    }
)
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.SERVICE_DESK: _DESK,
    Role.SUPERVISOR: _DESK
    | {
        P.SUSPEND,
        P.SETTLE_MEDICAL,
        P.INTEGRITY_WRITE,
        P.INTEGRITY_READ,
        P.COMPLAINT_HANDLE,
        P.RECOVERY_WRITE,
        P.RECOVERY_READ,
        P.FLAGS_READ,
        P.FLAGS_RESOLVE,
    },
    Role.AUDITOR: frozenset(
        {
            P.CARD_READ,
            P.HOLDER_READ,
            P.ACCESS_REPORT,
            P.INTEGRITY_READ,
            P.COMPLAINT_READ,
            P.RECOVERY_READ,
            P.FLAGS_READ,
        }
    ),
    Role.OPERATIONS: frozenset({P.CARD_READ, P.FLAGS_READ}),
    Role.PARTNER_SYSTEM: frozenset(
        {
            P.REPORT_LOSS,
            P.PIN_VERIFY,
            P.BANK_FUNCTION,
            P.ECARD,
            P.CARD_READ,
            P.SETTLE_MEDICAL,
            P.COMPLAINT_FILE,
        }
    ),
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in GRANTS[role]
