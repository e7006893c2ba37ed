"""The ISO 8583:1987 field specification onecard speaks.

It is pyiso8583's own 1987 specification (`iso8583.specs.default`: ASCII MTI and fields,
binary bitmaps, binary PIN and MAC) field for field, so a client built on pyiso8583 with
`iso8583.specs.default` needs nothing from us. The table below is ours, so the switch
does not need pyiso8583 at run time; tests/iso8583/test_codec.py checks every format
attribute against the library's, and the differential tests check our codec against
pyiso8583 on generated messages. Only the descriptions of the fields whose private or
national use onecard defines differ (DE2, DE48, DE54).

What onecard puts in each field it uses is in docs/iso8583.md section 4.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple


class Length(enum.IntEnum):
    """How a field's length is known: fixed by the spec, or a 2 or 3 ASCII digit prefix
    (LLVAR, LLLVAR). The value is the prefix's width in bytes."""

    FIXED = 0
    LLVAR = 2
    LLLVAR = 3


class FieldSpec(NamedTuple):
    number: int
    binary: bool  # True: bytes on the wire, upper-case hex in the decoded form
    length: Length
    max_len: int  # bytes: exactly this many when FIXED, at most this many otherwise
    description: str


# The MTI: four ASCII characters. The bitmaps: 8 binary bytes each.
MTI_SIZE = 4
BITMAP_SIZE = 8
# Fields 1-128; 1 is the secondary bitmap and 65 the tertiary one (pyiso8583 reads a
# tertiary bitmap when bit 65 is set, and knows no fields 129-192 in this spec).
FIELD_MAX = 128

# number, wire form (an: ASCII, b: binary), length, maximum bytes, description
_TABLE = """
       1 b  FIXED     8  Bitmap, Secondary
       2 an LLVAR    19  Card number (9 characters, e.g. X00000001)
       3 an FIXED     6  Processing Code
       4 an FIXED    12  Amount, Transaction
       5 an FIXED    12  Amount, Settlement
       6 an FIXED    12  Amount, Cardholder Billing
       7 an FIXED    10  Transmission Date and Time
       8 an FIXED     8  Amount, Cardholder Billing Fee
       9 an FIXED     8  Conversion Rate, Settlement
      10 an FIXED     8  Conversion Rate, Cardholder Billing
      11 an FIXED     6  System Trace Audit Number
      12 an FIXED     6  Time, Local Transaction
      13 an FIXED     4  Date, Local Transaction
      14 an FIXED     4  Date, Expiration
      15 an FIXED     4  Date, Settlement
      16 an FIXED     4  Date, Conversion
      17 an FIXED     4  Date, Capture
      18 an FIXED     4  Merchant Type
      19 an FIXED     3  Acquiring Institution Country Code
      20 an FIXED     3  PAN Country Code
      21 an FIXED     3  Forwarding Institution Country Code
      22 an FIXED     3  Point-of-Service Entry Mode
      23 an FIXED     3  PAN Sequence Number
      24 an FIXED     3  Network International ID (NII)
      25 an FIXED     2  Point-of-Service Condition Code
      26 an FIXED     2  Point-of-Service Capture Code
      27 an FIXED     1  Authorizing ID Response Length
      28 an FIXED     9  Amount, Transaction Fee
      29 an FIXED     9  Amount, Settlement Fee
      30 an FIXED     9  Amount, Transaction Processing Fee
      31 an FIXED     9  Amount, Settlement Processing Fee
      32 an LLVAR    11  Acquiring Institution ID Code
      33 an LLVAR    11  Forwarding Institution ID Code
      34 an LLVAR    28  Primary Account Number, Extended
      35 an LLVAR    37  Track 2 Data
      36 an LLLVAR  104  Track 3 Data
      37 an FIXED    12  Retrieval Reference Number
      38 an FIXED     6  Authorization ID Response
      39 an FIXED     2  Response Code
      40 an FIXED     3  Service Restriction Code
      41 an FIXED     8  Card Acceptor Terminal ID
      42 an FIXED    15  Card Acceptor ID Code
      43 an FIXED    40  Card Acceptor Name/Location
      44 an LLVAR    25  Additional Response Data
      45 an LLVAR    76  Track 1 Data
      46 an LLLVAR  999  Additional Data - ISO
      47 an LLLVAR  999  Additional Data - National
      48 an LLLVAR  999  Additional Data - Private: onecard sub-elements (bill payment)
      49 an FIXED     3  Currency Code, Transaction
      50 an FIXED     3  Currency Code, Settlement
      51 an FIXED     3  Currency Code, Cardholder Billing
      52 b  FIXED     8  PIN
      53 an FIXED    16  Security-Related Control Information
      54 an LLLVAR  240  Additional Amounts: pooled-fund share in; account legs out
      55 b  LLLVAR  255  ICC data
      56 an LLLVAR  999  Reserved ISO
      57 an LLLVAR  999  Reserved National
      58 an LLLVAR  999  Reserved National
      59 an LLLVAR  999  Reserved National
      60 an LLLVAR  999  Reserved National
      61 an LLLVAR  999  Reserved Private
      62 an LLLVAR  999  Reserved Private
      63 an LLLVAR  999  Reserved Private
      64 b  FIXED     8  MAC
      65 b  FIXED     8  Bitmap, Extended
      66 an FIXED     1  Settlement Code
      67 an FIXED     2  Extended Payment Code
      68 an FIXED     3  Receiving Institution Country Code
      69 an FIXED     3  Settlement Institution Country Code
      70 an FIXED     3  Network Management Information Code
      71 an FIXED     4  Message Number
      72 an FIXED     4  Message Number, Last
      73 an FIXED     6  Date, Action
      74 an FIXED    10  Credits, Number
      75 an FIXED    10  Credits, Reversal Number
      76 an FIXED    10  Debits, Number
      77 an FIXED    10  Debits, Reversal Number
      78 an FIXED    10  Transfer, Number
      79 an FIXED    10  Transfer, Reversal Number
      80 an FIXED    10  Inquiries, Number
      81 an FIXED    10  Authorizations, Number
      82 an FIXED    12  Credits, Processing Fee Amount
      83 an FIXED    12  Credits, Transaction Fee Amount
      84 an FIXED    12  Debits, Processing Fee Amount
      85 an FIXED    12  Debits, Transaction Fee Amount
      86 an FIXED    16  Credits, Amount
      87 an FIXED    16  Credits, Reversal Amount
      88 an FIXED    16  Debits, Amount
      89 an FIXED    16  Debits, Reversal Amount
      90 an FIXED    42  Original Data Elements
      91 an FIXED     1  File Update Code
      92 an FIXED     2  File Security Code
      93 an FIXED     5  Response Indicator
      94 an FIXED     7  Service Indicator
      95 an FIXED    42  Replacement Amounts
      96 b  FIXED     8  Message Security Code
      97 an FIXED    17  Amount, Net Settlement
      98 an FIXED    25  Payee
      99 an LLVAR    11  Settlement Institution ID Code
     100 an LLVAR    11  Receiving Institution ID Code
     101 an LLVAR    17  File Name
     102 an LLVAR    28  Account ID 1
     103 an LLVAR    28  Account ID 2
     104 an LLLVAR  100  Transaction Description
     105 an LLLVAR  999  Reserved for ISO Use
     106 an LLLVAR  999  Reserved for ISO Use
     107 an LLLVAR  999  Reserved for ISO Use
     108 an LLLVAR  999  Reserved for ISO Use
     109 an LLLVAR  999  Reserved for ISO Use
     110 an LLLVAR  999  Reserved for ISO Use
     111 an LLLVAR  999  Reserved for ISO Use
     112 an LLLVAR  999  Reserved for National Use
     113 an LLLVAR  999  Reserved for National Use
     114 an LLLVAR  999  Reserved for National Use
     115 an LLLVAR  999  Reserved for National Use
     116 an LLLVAR  999  Reserved for National Use
     117 an LLLVAR  999  Reserved for National Use
     118 an LLLVAR  999  Reserved for National Use
     119 an LLLVAR  999  Reserved for National Use
     120 an LLLVAR  999  Reserved for Private Use
     121 an LLLVAR  999  Reserved for Private Use
     122 an LLLVAR  999  Reserved for Private Use
     123 an LLLVAR  999  Reserved for Private Use
     124 an LLLVAR  999  Reserved for Private Use
     125 an LLLVAR  999  Reserved for Private Use
     126 an LLLVAR  999  Reserved for Private Use
     127 an LLLVAR  999  Reserved for Private Use
     128 b  FIXED     8  MAC
"""


def _parse(table: str) -> tuple[FieldSpec | None, ...]:
    fields: list[FieldSpec | None] = [None] * (FIELD_MAX + 1)
    for row in table.strip().splitlines():
        number, form, length, max_len, description = row.split(maxsplit=4)
        fields[int(number)] = FieldSpec(
            int(number), form == "b", Length[length], int(max_len), description
        )
    assert all(spec is not None for spec in fields[1:]), "a field is missing from _TABLE"
    return tuple(fields)


# FIELDS[n] is DE n (FIELDS[0] is None).
FIELDS = _parse(_TABLE)


def pyiso8583_spec() -> dict[str, dict[str, Any]]:
    """The same specification in pyiso8583's form, for the reference codec in tests and
    the bench (pyiso8583 is not a run-time dependency of the switch)."""
    spec: dict[str, dict[str, Any]] = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0},
        "t": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": MTI_SIZE},
        "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": BITMAP_SIZE},
    }
    spec["h"]["desc"], spec["t"]["desc"], spec["p"]["desc"] = (
        "Message Header",
        "Message Type",
        "Bitmap, Primary",
    )
    for field in FIELDS[1:]:
        assert field is not None
        spec[str(field.number)] = {
            "data_enc": "b" if field.binary else "ascii",
            "len_enc": "ascii",
            "len_type": int(field.length),
            "max_len": field.max_len,
            "desc": field.description,
        }
    return spec


SPEC = pyiso8583_spec()
# The format attributes a field spec has; a test compares them with pyiso8583's.
FORMAT_KEYS = ("data_enc", "len_enc", "len_type", "max_len", "len_count", "left_pad", "right_pad")
