"""The fixed-width layout of settlement files and bank return files, as data.

Every line is LINE_WIDTH ASCII characters followed by LF; fields sit at fixed columns,
and the rest of the line is spaces. The same tables write our files, parse the banks'
return files, and render the layout in docs/settlement.md (a test checks the doc holds
exactly what `describe()` renders).

    A   text, left-aligned, padded with spaces; printable ASCII
    N   a non-negative integer, right-aligned, padded with zeros
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from settlement.errors import FileFormatError

# 132 columns: the line-printer width banks' batch formats grew from, and room for the
# widest record (the trailer with its 64-character checksum) with spare columns for
# fields a later version may add.
LINE_WIDTH = 132
FORMAT_VERSION = 1
SETTLEMENT_KIND = "STLM"
RETURN_KIND = "RETN"

Value = str | int


@dataclass(frozen=True)
class Field:
    name: str
    width: int
    kind: str  # "A" or "N"
    meaning: str


@dataclass(frozen=True)
class Layout:
    code: str
    title: str
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        width = sum(field.width for field in self.fields)
        assert width <= LINE_WIDTH, f"{self.title} is {width} wide"
        assert self.fields[0].name == "record" and self.fields[0].width == 1

    def render(self, values: Mapping[str, Value]) -> str:
        parts = []
        for field in self.fields:
            value = self.code if field.name == "record" else values[field.name]
            parts.append(_format(field, value, self.title))
        return "".join(parts).ljust(LINE_WIDTH) + "\n"

    def parse(self, line: str, source: str, number: int) -> dict[str, Value]:
        out: dict[str, Value] = {}
        column = 0
        for field in self.fields:
            text = line[column : column + field.width]
            column += field.width
            if field.kind == "N":
                if not text.isdigit() or not text.isascii():
                    raise FileFormatError(source, number, f"{field.name} {text!r} is not digits")
                out[field.name] = int(text)
            else:
                out[field.name] = text.rstrip(" ")
        if line[column:].strip(" "):
            raise FileFormatError(source, number, "characters after the last field")
        return out


def _format(field: Field, value: Value, title: str) -> str:
    if field.kind == "N":
        if not isinstance(value, int) or value < 0:
            raise FileFormatError(title, 0, f"{field.name} = {value!r}: not a natural number")
        text = str(value).rjust(field.width, "0")
    else:
        text = str(value)
        if not (text.isascii() and text.isprintable()):
            raise FileFormatError(title, 0, f"{field.name} = {text!r}: not printable ASCII")
        text = text.ljust(field.width)
    if len(text) > field.width:
        raise FileFormatError(title, 0, f"{field.name} = {value!r}: wider than {field.width}")
    return text


def _fields(*specs: tuple[str, int, str, str]) -> tuple[Field, ...]:
    return tuple(Field(*spec) for spec in specs)


HEADER = Layout(
    "H",
    "header",
    _fields(
        ("record", 1, "A", "`H`"),
        ("kind", 4, "A", "`STLM` settlement file (ours), `RETN` return file (the bank's)"),
        ("version", 2, "N", "format version, `01`"),
        ("bank", 8, "A", "partner bank id"),
        ("cycle", 6, "N", "settlement cycle number"),
        ("business_date", 8, "N", "YYYYMMDD, local date of the cycle's business"),
        ("window_start_ms", 13, "N", "previous cycle's cutover (ms since epoch; 0 for cycle 1)"),
        ("window_end_ms", 13, "N", "this cycle's cutover"),
        ("first_index", 20, "N", "journal index of the cycle's first record"),
        ("records", 12, "N", "journal records in the cycle"),
        ("created_ms", 13, "N", "when the cycle closed (not when the file was written)"),
    ),
)
DETAIL = Layout(
    "D",
    "detail",
    _fields(
        ("record", 1, "A", "`D`"),
        ("line", 9, "N", "line number in the file, from 1"),
        ("entry", 4, "A", "`PAYM` payment, `SUBS` subsidy/benefit credit, `ADJS` adjustment"),
        ("reference", 40, "A", "PAYM: RRN (12 digits); SUBS: batch/row; ADJS: cycle-entry"),
        ("card", 9, "A", "card number (blank for ADJS)"),
        ("account", 19, "A", "masked financial account, when known"),
        ("direction", 1, "A", "`D` debit or `C` credit, on the holder's account"),
        ("amount_fen", 15, "N", "amount in fen"),
        ("time_ms", 13, "N", "when the switch journalled it"),
        ("counterparty", 20, "A", "payee (PAYM), funder (SUBS), `suspense` (ADJS)"),
    ),
)
SUMMARY = Layout(
    "S",
    "summary",
    _fields(
        ("record", 1, "A", "`S`"),
        ("line", 9, "N", "line number in the file"),
        ("account", 12, "A", "account type (settlement/ledger.py)"),
        ("party", 20, "A", "whose account"),
        ("role", 12, "A", "transit, merchant, hospital, biller, bank, funder, ..."),
        ("count", 12, "N", "postings"),
        ("debit_fen", 15, "N", "what the party came to owe"),
        ("credit_fen", 15, "N", "what the party came to be owed"),
        ("sign", 1, "A", "`+` the party receives, `-` it pays"),
        ("net_fen", 15, "N", "credit - debit, unsigned"),
    ),
)
NET = Layout(
    "N",
    "net",
    _fields(
        ("record", 1, "A", "`N`"),
        ("bank", 8, "A", "partner bank id"),
        ("debit_fen", 15, "N", "sum of the debit nets of the bank's parties"),
        ("credit_fen", 15, "N", "sum of the credit nets"),
        ("sign", 1, "A", "`+` the card service pays the bank, `-` the bank pays"),
        ("net_fen", 15, "N", "the bank's multilateral net, unsigned"),
    ),
)
TRAILER = Layout(
    "T",
    "trailer",
    _fields(
        ("record", 1, "A", "`T`"),
        ("detail_count", 9, "N", "D lines"),
        ("detail_debit_fen", 15, "N", "sum of D amounts with direction D"),
        ("detail_credit_fen", 15, "N", "sum of D amounts with direction C"),
        ("summary_count", 9, "N", "S lines"),
        ("sign", 1, "A", "sign of the net"),
        ("net_fen", 15, "N", "STLM: the N line's net; RETN: detail credits - debits"),
        ("sha256", 64, "A", "SHA-256 (hex) of every byte before this line"),
    ),
)
LAYOUTS = {layout.code: layout for layout in (HEADER, DETAIL, SUMMARY, NET, TRAILER)}


def signed(fen: int) -> dict[str, Value]:
    return {"sign": "-" if fen < 0 else "+", "net_fen": abs(fen)}


def unsigned(fields: Mapping[str, Value], source: str, number: int) -> int:
    """The signed net of a parsed line with `sign` and `net_fen`."""
    sign, net = fields["sign"], fields["net_fen"]
    if sign not in ("+", "-") or not isinstance(net, int):
        raise FileFormatError(source, number, f"sign {sign!r} is not + or -")
    return -net if sign == "-" else net


def describe() -> str:
    """The layout as markdown tables, for docs/settlement.md."""
    out = []
    for layout in LAYOUTS.values():
        out.append(f"**{layout.code}: {layout.title}**\n")
        out.append("| columns | field | type | meaning |")
        out.append("|---|---|---|---|")
        column = 1
        for field in layout.fields:
            span = f"{column}-{column + field.width - 1}" if field.width > 1 else f"{column}"
            out.append(f"| {span} | {field.name} | {field.kind}{field.width} | {field.meaning} |")
            column += field.width
        out.append("")
    return "\n".join(out)
