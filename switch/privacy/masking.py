"""Masked forms of personal data, and the guard that keeps it out of log lines.

Nothing in onecard logs a name, an ID number or a contact on purpose. The guard is the belt
to those braces: installed once per process, it rewrites every log record as it is created,
before any handler (a file, pytest's capture, a log shipper) can see it. It masks anything
shaped like a citizen ID number, a bank account or a mobile number, and any run of Chinese
characters: onecard's own log lines are English, so Han characters in one can only have come
from personal data (names, addresses, complaint texts).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from switch.domain.identifiers import mask_bank_account, mask_citizen_id

# 17 digits and a check character: a citizen ID number, whatever its checksum.
CITIZEN_ID_PATTERN = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
# Bank card numbers (16-19 digits) and mainland mobile numbers (11 digits, 1[3-9]...).
BANK_ACCOUNT_PATTERN = re.compile(r"(?<![0-9])[0-9]{16,19}(?![0-9])")
MOBILE_PATTERN = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
# CJK unified ideographs (and extension A): names and addresses.
HAN_PATTERN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
MASK = "*"


def mask_name(name: str) -> str:
    """The family name only, as counters print it on receipts: 王** for 王小明."""
    stripped = name.strip()
    if not stripped:
        return ""
    return stripped[0] + MASK * max(len(stripped) - 1, 1)


def mask_contact(contact: str) -> str:
    """First three and last four characters of a phone number or other contact."""
    if len(contact) <= 7:
        return MASK * len(contact)
    return contact[:3] + MASK * (len(contact) - 7) + contact[-4:]


def mask_text(text: str) -> str:
    """`text` with every identifier-shaped run and every run of Han characters masked."""
    text = CITIZEN_ID_PATTERN.sub(lambda m: mask_citizen_id(m.group(0)), text)
    text = BANK_ACCOUNT_PATTERN.sub(lambda m: mask_bank_account(m.group(0)), text)
    text = MOBILE_PATTERN.sub(lambda m: mask_contact(m.group(0)), text)
    return HAN_PATTERN.sub(lambda m: MASK * len(m.group(0)), text)


_installed = False


def install_log_guard() -> None:
    """Mask every log record of this process from now on (idempotent).

    A record factory rather than a handler filter: filters sit on handlers, and a handler
    added later (pytest's, a library's) would not have it. The message is formatted here,
    once, so its arguments cannot carry the data past the guard; exception text likewise.
    """
    global _installed  # noqa: PLW0603 - one guard per process, by design
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
