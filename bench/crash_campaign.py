"""Crash campaign: SIGKILL the switch under load N times and check everything, then report.

    python -m bench.crash_campaign --kills 100 [--seed S] [--report docs/reliability.md]

It runs the crash test of the suite (tests/integration/test_crash.py) with N kills instead
of a handful: a child `onecard run` on a demo data directory, alternately on uvloop and
trio, ten terminals pipelining taps, purchases, balances and reversals, each kill at a
seeded random moment with requests in flight, a restart, and after each restart the
checks: every answer a terminal got is journalled exactly as told, no (terminal, seq) is
decided twice, every purse equals its issue plus the money its decisions moved (over TCP
and by replay), and every unanswered request sent again gets its durable decision or a
fresh one, never moving money twice. The summary of every kill goes to the report.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
TEST = (
    "tests/integration/test_crash.py::"
    "test_sigkill_under_load_loses_nothing_answered_and_moves_no_money_twice"
)
KILL_LINE = re.compile(
    r"kill (\d+) \((\w+)\): (\d+) decisions, (\d+) unanswered, torn tail (\d+) bytes"
)
RESENT_LINE = re.compile(r"resent after restarts: (\d+) were durable, (\d+) decided afresh")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--report", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    environment = {
        **os.environ,
        "ONECARD_CRASH_KILLS": str(args.kills),
        "ONECARD_CRASH_SEED": str(seed),
    }
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            TEST,
            "-s",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=3600",
        ],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    kills = [match.groups() for match in KILL_LINE.finditer(result.stdout)]
    resent = RESENT_LINE.search(result.stdout)
    passed = result.returncode == 0
    lines = [
        f"Crash campaign: {len(kills)} of {args.kills} kills, seed {seed}, "
        f"{elapsed:.0f} s: {'PASSED' if passed else 'FAILED'}",
        "",
        "| kill | loop | decisions in journal | unanswered at kill | torn tail (bytes) |",
        "|---:|---|---:|---:|---:|",
        *(f"| {k} | {loop} | {d} | {u} | {t} |" for k, loop, d, u, t in kills),
    ]
    if resent is not None:
        lines += [
            "",
            f"Requests sent again after restarts: {resent[1]} got their durable decision, "
            f"{resent[2]} were decided afresh (they had not reached the disk).",
        ]
    summary = "\n".join(lines)
    print(summary)
    if not passed:
        print(result.stdout[-5000:], result.stderr[-5000:], sep="\n")
    if args.report is not None:
        args.report.write_text(summary + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
