"""The endpoint table: every route of the service API as data. The application (app.py) and
the OpenAPI document (openapi.py) are both generated from it, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from switch.api import schemas as s
from switch.api.auth import Principal
from switch.api.operations import Operations
from switch.api.permissions import Permission as P
from switch.privacy.purposes import Purpose

Handler = Callable[[Operations, Principal, Mapping[str, Any], Any], Awaitable[msgspec.Struct]]


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # path | query
    schema: Mapping[str, Any]
    description: str
    required: bool = True


CARD = Param("card", "path", {"type": "string", "pattern": s.CARD_PATTERN}, "card number")
HOLDER = Param(
    "holder_token",
    "path",
    {"type": "string", "pattern": s.HOLDER_TOKEN_PATTERN},
    "holder token (keyed hash of the citizen ID number)",
)
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**62}
PURPOSE = Param(
    "purpose",
    "query",
    {"type": "string", "enum": [p.value for p in Purpose]},
    "why the data is read (journalled with the read)",
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    operation_id: str
    summary: str
    permission: P
    answer: type[msgspec.Struct]
    handler: Handler
    body: type[msgspec.Struct] | None = None
    params: tuple[Param, ...] = ()
    status: int = 200
    errors: tuple[int, ...] = (404, 409)


def _id(name: str, what: str) -> Param:
    return Param(name, "path", ID_SCHEMA, what)


def _flag(name: str, description: str) -> Param:
    return Param(name, "query", {"type": "boolean"}, description, required=False)


def _true(query: Mapping[str, Any], name: str) -> bool:
    return bool(query.get(name, False))


E = Endpoint
ENDPOINTS: tuple[Endpoint, ...] = (
    E("POST", "/applications", "apply", "Apply for a card (eligibility checked)",
      P.APPLY, s.ApplicationAnswer, lambda o, w, p, b: o.apply(w, b),
      body=s.ApplicationRequest, status=201),
    E("GET", "/cards/{card}", "get_card", "A card's stage, accounts and functions",
      P.CARD_READ, s.CardView, lambda o, w, p, b: o.current_card(p["card"]),
      params=(CARD,), errors=(404,)),
    E("POST", "/cards/{card}/issue", "issue_card", "Issue the card applied for",
      P.ISSUE, s.CardView, lambda o, w, p, b: o.issue(w, p["card"], b),
      body=s.IssueRequest, params=(CARD,)),
    E("POST", "/cards/{card}/activate", "activate_card", "Activate with PINs",
      P.ACTIVATE, s.CardView, lambda o, w, p, b: o.activate(w, p["card"], b),
      body=s.ActivateRequest, params=(CARD,)),
    E("POST", "/cards/{card}/loss", "report_loss", "Report the card lost (temporarily or formally)",
      P.REPORT_LOSS, s.CardView, lambda o, w, p, b: o.report_loss(w, p["card"], b),
      body=s.LossRequest, params=(CARD,)),
    E("POST", "/cards/{card}/lift", "lift_loss", "Lift a loss report",
      P.LIFT_LOSS, s.CardView, lambda o, w, p, b: o.lift_loss(w, p["card"]), params=(CARD,)),
    E("POST", "/cards/{card}/replace", "replace_card", "Replace: a new card number carries on",
      P.REPLACE, s.ReplaceAnswer, lambda o, w, p, b: o.replace(w, p["card"], b),
      body=s.ReplaceRequest, params=(CARD,), status=201),
    E("POST", "/cards/{card}/suspend", "suspend_card",
      "Suspend social-security functions (art. 17)",
      P.SUSPEND, s.CardView, lambda o, w, p, b: o.suspend(w, p["card"], b),
      body=s.SanctionRequest, params=(CARD,)),
    E("POST", "/cards/{card}/restore", "restore_card", "Restore social-security functions",
      P.SUSPEND, s.CardView, lambda o, w, p, b: o.restore(w, p["card"], b),
      body=s.SanctionRequest, params=(CARD,)),
    E("POST", "/cards/{card}/medical-settlement", "settle_medical",
      "The medical insurance platform settled the personal account",
      P.SETTLE_MEDICAL, s.CardView, lambda o, w, p, b: o.settle_medical(w, p["card"], b),
      body=s.MedicalSettlementRequest, params=(CARD,)),
    E("POST", "/cards/{card}/bank-function", "bank_function",
      "The bank function's own status (lost, active again, settled)",
      P.BANK_FUNCTION, s.CardView, lambda o, w, p, b: o.bank_function(w, p["card"], b),
      body=s.BankFunctionRequest, params=(CARD,)),
    E("POST", "/cards/{card}/cancel", "cancel_card", "Cancel (accounts settled; purse refunded)",
      P.CANCEL, s.CardView, lambda o, w, p, b: o.cancel(w, p["card"], b),
      body=s.CancelRequest, params=(CARD,)),
    E("POST", "/cards/{card}/pin/verify", "verify_pin", "Check a PIN (3 wrong tries lock it)",
      P.PIN_VERIFY, s.PinVerifyAnswer, lambda o, w, p, b: o.verify_pin(w, p["card"], b),
      body=s.PinVerifyRequest, params=(CARD,)),
    E("PUT", "/cards/{card}/pin", "reset_pin", "Set a new PIN at the desk (unlocks it)",
      P.PIN_RESET, s.CardView, lambda o, w, p, b: o.reset_pin(w, p["card"], b),
      body=s.PinResetRequest, params=(CARD,)),
    E("PUT", "/cards/{card}/ecard", "bind_ecard", "Bind the e-card, or change its level",
      P.ECARD, s.CardView, lambda o, w, p, b: o.bind_ecard(w, p["card"], b),
      body=s.EcardRequest, params=(CARD,)),
    E("DELETE", "/cards/{card}/ecard", "unbind_ecard", "Unbind the e-card",
      P.ECARD, s.CardView, lambda o, w, p, b: o.unbind_ecard(w, p["card"]), params=(CARD,)),
    E("POST", "/holders/lookup", "lookup_holder", "Find a holder by ID number (journalled read)",
      P.HOLDER_READ, s.HolderAnswer, lambda o, w, p, b: o.lookup(w, b),
      body=s.LookupRequest, errors=(404, 409)),
    E("GET", "/holders/{holder_token}", "get_holder", "A holder's personal data (journalled read)",
      P.HOLDER_READ, s.HolderAnswer,
      lambda o, w, p, b: o.holder(w, p["holder_token"], Purpose(p["purpose"])),
      params=(HOLDER, PURPOSE), errors=(404,)),
    E("GET", "/holders/{holder_token}/access-report", "access_report",
      "Who read this holder's personal data, when and why",
      P.ACCESS_REPORT, s.AccessReport, lambda o, w, p, b: o.access_report(w, p["holder_token"]),
      params=(HOLDER,), errors=()),
    E("GET", "/holders/{holder_token}/integrity", "integrity_file", "The holder's integrity file",
      P.INTEGRITY_READ, s.IntegrityFile,
      lambda o, w, p, b: o.integrity_file(w, p["holder_token"]), params=(HOLDER,), errors=()),
    E("GET", "/holders/{holder_token}/recovery-orders", "recovery_orders",
      "Fraud recovery orders against the holder",
      P.RECOVERY_READ, s.RecoveryOrders,
      lambda o, w, p, b: o.recovery_orders(w, p["holder_token"]), params=(HOLDER,), errors=()),
    E("POST", "/integrity", "add_integrity_entry", "Record a confirmed violation (art. 13)",
      P.INTEGRITY_WRITE, s.IntegrityFile, lambda o, w, p, b: o.add_integrity_entry(w, b),
      body=s.IntegrityRequest, status=201),
    E("POST", "/recovery-orders", "order_recovery",
      "Order recovery of a fraudulent amount with a fine of 2-5 times (art. 17)",
      P.RECOVERY_WRITE, s.RecoveryOrders, lambda o, w, p, b: o.order_recovery(w, b),
      body=s.RecoveryRequest, status=201),
    E("POST", "/complaints", "file_complaint", "Record a complaint or report (art. 14)",
      P.COMPLAINT_FILE, s.ComplaintView, lambda o, w, p, b: o.file_complaint(w, b),
      body=s.ComplaintRequest, status=201),
    E("GET", "/complaints", "list_complaints", "Complaints; overdue ones only on request",
      P.COMPLAINT_READ, s.ComplaintList,
      lambda o, w, p, b: o.complaints(w, _true(p, "overdue")),
      params=(_flag("overdue", "only those open past their deadline"),), errors=()),
    E("GET", "/complaints/{complaint_id}", "get_complaint", "A complaint with its text",
      P.COMPLAINT_READ, s.ComplaintView,
      lambda o, w, p, b: o.complaint(w, p["complaint_id"], Purpose(p["purpose"])),
      params=(_id("complaint_id", "complaint number"), PURPOSE), errors=(404,)),
    E("POST", "/complaints/{complaint_id}/assign", "assign_complaint", "Assign to a handler",
      P.COMPLAINT_HANDLE, s.ComplaintView,
      lambda o, w, p, b: o.assign_complaint(w, p["complaint_id"], b),
      body=s.AssignRequest, params=(_id("complaint_id", "complaint number"),)),
    E("POST", "/complaints/{complaint_id}/answer", "answer_complaint", "Answer it",
      P.COMPLAINT_HANDLE, s.ComplaintView,
      lambda o, w, p, b: o.answer_complaint(w, p["complaint_id"], b),
      body=s.AnswerRequest, params=(_id("complaint_id", "complaint number"),)),
    E("GET", "/review-flags", "review_flags", "Misuse flags raised for review",
      P.FLAGS_READ, s.ReviewFlags, lambda o, w, p, b: o.review_flags(w, _true(p, "open")),
      params=(_flag("open", "only those not yet resolved"),), errors=()),
    E("POST", "/review-flags/{flag_id}/resolve", "resolve_flag", "Confirm or dismiss a flag",
      P.FLAGS_RESOLVE, s.ReviewFlags,
      lambda o, w, p, b: o.resolve_flag(w, p["flag_id"], b),
      body=s.FlagResolveRequest, params=(_id("flag_id", "flag number"),)),
)  # fmt: skip
