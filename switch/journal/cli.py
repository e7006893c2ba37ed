"""`onecard journal verify | inspect`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from switch.journal.verify import inspect_records, verify
from switch.keystore import KeyStore


def add_journal_commands(commands: Any) -> None:
    journal = commands.add_parser("journal", help="verify or inspect the journal (read-only)")
    actions = journal.add_subparsers(dest="journal_command", required=True)
    check = actions.add_parser(
        "verify", help="check every record's checksum and hash chain; exit 1 on any problem"
    )
    check.set_defaults(handler=cmd_verify)
    show = actions.add_parser("inspect", help="print records as JSON lines, identifiers masked")
    show.add_argument("--from", dest="first", type=int, default=0, help="first record index")
    show.add_argument("--limit", type=int, default=None, help="records to print at most")
    show.set_defaults(handler=cmd_inspect)


def cmd_verify(args: argparse.Namespace) -> int:
    keys = KeyStore.load(args.data_dir)
    report = verify(args.data_dir / "journal", keys.journal)
    for finding in report.findings:
        print(f"PROBLEM {finding}")
    verdict = "intact" if report.ok else f"{len(report.findings)} problem(s)"
    print(f"journal: {report.records} records in {report.segments} segments: {verdict}")
    return 0 if report.ok else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    keys = KeyStore.load(args.data_dir)
    for printed, record in enumerate(
        inspect_records(args.data_dir / "journal", keys.journal, args.first)
    ):
        if args.limit is not None and printed >= args.limit:
            break
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0
