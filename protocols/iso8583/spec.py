"""The ISO 8583:1987 field specification onecard speaks, for pyiso8583.

It is pyiso8583's own 1987 specification (`iso8583.specs.default`: ASCII MTI and fields,
binary bitmaps, binary PIN and MAC) field for field, so a client built on pyiso8583 with
`iso8583.specs.default` needs nothing from us. Only the descriptions of the fields whose
private or national use onecard defines are changed (they print in `iso8583.pp`); a test
checks that every format attribute is still the library's.

What onecard puts in each field it uses is in docs/iso8583.md section 4.
"""

from __future__ import annotations

import copy
from typing import Any

from iso8583.specs import default as _pyiso8583_1987

# Descriptions only: the formats stay pyiso8583's.
_ONECARD_USE = {
    "2": "Card number (9 characters, e.g. X00000001)",
    "48": "Additional Data - Private: onecard sub-elements (bill payment)",
    "54": "Additional Amounts: pooled-fund share in; account legs out",
}

SPEC: dict[str, dict[str, Any]] = copy.deepcopy(_pyiso8583_1987)
for _field, _description in _ONECARD_USE.items():
    SPEC[_field]["desc"] = _description
# The format attributes a field spec has; a test compares them with pyiso8583's.
FORMAT_KEYS = ("data_enc", "len_enc", "len_type", "max_len", "len_count", "left_pad", "right_pad")
REFERENCE_SPEC: dict[str, dict[str, Any]] = _pyiso8583_1987
