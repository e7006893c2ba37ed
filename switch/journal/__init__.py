"""The append-only journal: every decision, durable before its answer leaves.

records.py   what a record holds (MessagePack, msgspec Structs)
segment.py   the file format: segment header, length-prefixed checksummed records
recovery.py  reading it back at start, detecting and truncating a torn tail
writer.py    one writer, group commit: one write + one fdatasync per group
"""

from switch.journal.records import Record
from switch.journal.recovery import RecoveryReport, recover
from switch.journal.writer import Journal, JournalStatistics

__all__ = ["Journal", "JournalStatistics", "Record", "RecoveryReport", "recover"]
