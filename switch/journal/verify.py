"""`onecard journal verify` and `inspect`: an operator's view of the journal, read-only.

verify walks every segment and every record, checks framing, checksums, numbering and the
keyed hash chain, and reports every problem with its segment, byte offset and record index;
unlike recovery it changes nothing and goes on past a problem to find the next. inspect
prints records as JSON lines with identifiers masked (card numbers, holder tokens).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from switch.journal.records import Record, decoder
from switch.journal.recovery import read_segment
from switch.journal.segment import GENESIS_CHAIN, HEADER, MAGIC, READABLE_VERSIONS, segment_paths


@dataclass(frozen=True)
class Finding:
    segment: str
    offset: int
    record: int  # index of the record the problem is at (or would be at)
    problem: str

    def __str__(self) -> str:
        return f"{self.segment} byte {self.offset} (record {self.record}): {self.problem}"


@dataclass
class VerifyReport:
    records: int = 0
    segments: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify(directory: Path, key: bytes) -> VerifyReport:
    report = VerifyReport()
    next_index = 0
    chain = GENESIS_CHAIN
    paths = segment_paths(directory)
    for path in paths:
        report.segments += 1
        data = path.read_bytes()
        if len(data) < HEADER.size:
            report.findings.append(Finding(path.name, 0, next_index, "shorter than its header"))
            continue
        magic, version, first_index, header_chain = HEADER.unpack_from(data, 0)
        if magic != MAGIC or version not in READABLE_VERSIONS:
            report.findings.append(Finding(path.name, 0, next_index, "not a journal segment"))
            continue
        if first_index != next_index:
            what = "missing" if first_index > next_index else "repeated or inserted"
            report.findings.append(
                Finding(
                    path.name,
                    0,
                    next_index,
                    f"starts at record {first_index}: records {what} before it",
                )
            )
        elif header_chain != chain:
            report.findings.append(
                Finding(path.name, 0, first_index, "does not chain from the previous segment")
            )
        # Check this segment on its own terms from here, so one problem does not hide the next.
        read = read_segment(data, first_index, header_chain, key)
        report.records += len(read.payloads)
        next_index = first_index + len(read.payloads)
        chain = read.chain
        if read.problem is not None:
            offset, record = read.problem_at or (read.intact_end, next_index)
            report.findings.append(Finding(path.name, offset, record, read.problem))
        elif read.unwritten_bytes and path != paths[-1]:
            # Preallocated space is cut before the next segment begins (segment.py).
            problem = f"{read.unwritten_bytes} zero bytes after its last record"
            report.findings.append(Finding(path.name, read.intact_end, next_index, problem))
    return report


def _mask(value: Any, name: str) -> Any:
    if isinstance(value, bytes):
        value = value.hex()
    if isinstance(value, str) and name == "card" and len(value) > 4:
        return value[:3] + "*" * (len(value) - 5) + value[-2:]
    if isinstance(value, str) and name.endswith("token"):
        return value[:6] + "…"
    return value


def inspect_records(directory: Path, key: bytes, first: int = 0) -> Iterator[dict[str, Any]]:
    """Records from index `first` on, as masked dictionaries (stops at the first problem:
    run verify for the whole picture)."""
    index = 0
    chain = GENESIS_CHAIN
    for path in segment_paths(directory):
        data = path.read_bytes()
        if len(data) < HEADER.size:
            return
        read = read_segment(data, index, chain, key)
        for payload in read.payloads:
            if index >= first:
                yield _as_dict(index, decoder.decode(payload))
            index += 1
        chain = read.chain
        if read.problem is not None:
            return


def _as_dict(index: int, record: Record) -> dict[str, Any]:
    fields = msgspec.structs.asdict(record)
    shown: dict[str, Any] = {"index": index, "type": record.__struct_config__.tag}
    for name, value in fields.items():
        nested = isinstance(value, msgspec.Struct)
        shown[name] = msgspec.structs.asdict(value) if nested else _mask(value, name)
    return shown
