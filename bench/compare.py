"""Before/after: two source trees of the switch and the baseline, measured in one session.

    python -m bench.compare --before /tmp/onecard-before [--after .] [--duration 20]

Every optimisation's figure is a ratio against the same session: both switches get the
same demo data (one copy each, so their journals do not mix) and the same steps, taken in
turn so that the machine's other work falls on both alike. Results go to
bench/results/compare-<timestamp>/ (compare.json, compare.md).

Both switches run for the whole session, so a snapshot child of either can fall in any
step, the other's included: the table names, per row, whose child was writing during one
of its three steps, and the warnings list everything else bench.report flags.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench.machine import Machine, describe, write_back
from bench.options import (
    CONNECTIONS,
    PIPELINE_CONNECTIONS,
    PIPELINE_DEPTH,
    RESULTS_DIR,
    BenchOptions,
)
from bench.report import (
    BASELINE,
    PEAK_ONE_IN_FLIGHT,
    PEAK_PIPELINED,
    SWEEP,
    TAPS,
    Step,
    overlapped,
    snapshot_windows,
    speed_lines,
    warnings,
)
from bench.runner import Session, pos_count
from bench.servers import Server, baseline_command, running, switch_command
from switch.config import EngineConfig
from switch.demo import DemoSpec, create_demo

BEFORE = "before"
AFTER = "after"
# Open-loop rates for the comparison: a quiet hour and the 10,000 taps/s.
RATES = (3_000.0,)
TAPS_RATE = 10_000.0
# Cards: see bench.options.CARDS; a comparison is shorter, so fewer do.
CARDS = 500_000
PERCENT = 100.0


class Comparison(msgspec.Struct, frozen=True):
    started_at: str
    command: str
    machine: Machine
    before: str
    after: str
    steps: list[Step]
    # Per switch (BEFORE, AFTER): when it had a snapshot child writing (Unix seconds).
    snapshots: dict[str, list[tuple[float, float]]]
    warnings: list[str]


def _tree_env(tree: Path) -> dict[str, str]:
    """The environment that makes `python -m switch` import the switch from `tree`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree.resolve())
    return env


def _row(steps: list[Step], snapshots: dict[str, list[tuple[float, float]]]) -> str:
    by_server = {step.server: step.result for step in steps}
    before, after, baseline = by_server[BEFORE], by_server[AFTER], by_server[BASELINE]
    first = steps[0]
    label = f"{first.regime} {first.name.split()[-1]}"

    def cpu(seconds: float | None, duration: float) -> str:
        return "-" if seconds is None else f"{seconds / duration * PERCENT:.0f}%"

    def other(seconds: float, own: float, server: float | None, duration: float) -> float:
        return max(0.0, seconds - own - (server or 0.0)) / duration * PERCENT

    others = max(
        other(r.machine_cpu_seconds, r.cpu_seconds, r.server_cpu_seconds, r.measured_seconds)
        for r in (before, after, baseline)
    )
    ratio = after.achieved_rate_per_second / max(before.achieved_rate_per_second, 1e-9)
    return (
        f"| {label} | {before.achieved_rate_per_second:,.0f} "
        f"| {after.achieved_rate_per_second:,.0f} | {ratio:.2f} "
        f"| {baseline.achieved_rate_per_second:,.0f} "
        f"| {before.latency.p99_ms:.2f} | {after.latency.p99_ms:.2f} "
        f"| {baseline.latency.p99_ms:.2f} "
        f"| {before.latency.p999_ms:.2f} | {after.latency.p999_ms:.2f} "
        f"| {baseline.latency.p999_ms:.2f} "
        f"| {cpu(before.server_cpu_seconds, before.measured_seconds)} "
        f"| {cpu(after.server_cpu_seconds, after.measured_seconds)} | {others:.0f}% "
        f"| {_children(steps, snapshots)} |"
    )


def _children(steps: list[Step], snapshots: dict[str, list[tuple[float, float]]]) -> str:
    """Whose snapshot children wrote during any of a row's steps."""
    names = [name for name in (BEFORE, AFTER) if any(overlapped(s, snapshots[name]) for s in steps)]
    return ", ".join(names) or "-"


def markdown(comparison: Comparison) -> str:
    m = comparison.machine
    lines = [
        f"# onecard before/after, {comparison.started_at}",
        "",
        f"Command: `{comparison.command}`",
        "",
        f"before: {comparison.before}; after: {comparison.after}. Machine: {m.cpus} CPUs "
        f"({m.cpu_model}), Python {m.python}; journal on {m.journal_filesystem}.",
        "",
        *speed_lines(comparison.steps),
        "Answers/s; latency ms (open loop: from the scheduled send); CPU as % of one core; "
        "'other' is the most the machine's other work took during any of the three; "
        "'snapshots': whose snapshot child was writing during any of the three (it takes a "
        "core and costs its parent copy-on-write faults: not a figure of the code).",
        "",
        "| step | before /s | after /s | after / before | baseline /s | before p99 "
        "| after p99 | baseline p99 | before p99.9 | after p99.9 | baseline p99.9 "
        "| before CPU | after CPU | other | snapshots |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    steps = comparison.steps
    lines += [_row(steps[i : i + 3], comparison.snapshots) for i in range(0, len(steps) - 2, 3)]
    if comparison.warnings:
        lines += ["", "## Warnings", "", *(f"- {warning}" for warning in comparison.warnings)]
    return "\n".join(lines) + "\n"


class Plan(NamedTuple):
    regime: str
    connections: int
    depth: int = 1
    rate_per_second: float = 0.0
    mixed: bool = True


def _plan(rates: tuple[float, ...], taps_rate: float) -> list[Plan]:
    return [
        Plan(PEAK_PIPELINED, PIPELINE_CONNECTIONS, PIPELINE_DEPTH),
        Plan(PEAK_ONE_IN_FLIGHT, CONNECTIONS),
        *(Plan(SWEEP, CONNECTIONS, rate_per_second=rate) for rate in rates),
        Plan(TAPS, CONNECTIONS, rate_per_second=taps_rate, mixed=False),
    ]


def _measure(session: Session, plan: list[Plan], advance: Callable[[], None]) -> None:
    for index, step in enumerate(plan):
        # Alternate which switch goes first, so that neither always meets a machine the
        # other has just warmed (page cache, CPU frequency) or disturbed.
        first, second = (BEFORE, AFTER) if index % 2 == 0 else (AFTER, BEFORE)
        for server in (first, second, BASELINE):
            session.run_step(
                server,
                step.regime,
                connections=step.connections,
                depth=step.depth,
                rate_per_second=step.rate_per_second,
                mixed=step.mixed,
            )
            advance()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="source tree (switch/ ...)")
    parser.add_argument("--after", type=Path, default=Path.cwd(), help="default: here")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--cards", type=int, default=CARDS)
    parser.add_argument(
        "--rates", type=lambda t: tuple(float(x) for x in t.split(",")), default=RATES
    )
    parser.add_argument("--taps-rate", type=float, default=TAPS_RATE)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--repeat", type=int, default=1, help="run the whole plan N times")
    args = parser.parse_args(argv)
    started = datetime.datetime.now().astimezone()
    directory = args.results_dir / f"compare-{started:%Y%m%d-%H%M%S}"
    (directory / "steps").mkdir(parents=True)
    logs = directory / "logs"
    logs.mkdir()
    most = max(CONNECTIONS, PIPELINE_CONNECTIONS)
    data = {name: directory / f"data-{name}" for name in (BEFORE, AFTER)}
    create_demo(data[BEFORE], DemoSpec(args.cards, most, pos_count(most)), EngineConfig())
    shutil.copytree(data[BEFORE], data[AFTER])
    write_back()
    options = BenchOptions(
        results_dir=args.results_dir,
        duration_seconds=args.duration,
        warmup_seconds=args.warmup,
        cards=args.cards,
        connections=CONNECTIONS,
        pipeline_connections=PIPELINE_CONNECTIONS,
        depth=PIPELINE_DEPTH,
        sweep=(),
        sweep_peak=None,
        taps_rate=args.taps_rate,
        loop="uvloop",
        keep_data=False,
    )
    console = Console(stderr=True)
    trees = {BEFORE: args.before, AFTER: args.after}
    with (
        Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as progress,
        running(BEFORE, switch_command(data[BEFORE]), logs, _tree_env(trees[BEFORE])) as before,
        running(AFTER, switch_command(data[AFTER]), logs, _tree_env(trees[AFTER])) as after,
        running(BASELINE, baseline_command(), logs) as baseline,
    ):
        servers: dict[str, Server] = {BEFORE: before, AFTER: after, BASELINE: baseline}
        session = Session(options, directory, data[BEFORE], progress, servers)
        plan = _plan(args.rates, args.taps_rate) * args.repeat
        overall = progress.add_task("steps", total=3 * len(plan))
        _measure(session, plan, lambda: progress.advance(overall))
        ended = time.time()
        snapshots = {
            name: snapshot_windows(server.log.read_text(errors="replace"), ended)
            for name, server in ((BEFORE, before), (AFTER, after))
        }
    comparison = Comparison(
        started_at=started.isoformat(timespec="seconds"),
        command=" ".join(["python -m bench.compare", *(argv or sys.argv[1:])]),
        machine=describe(data[AFTER] / "journal"),
        before=str(args.before.resolve()),
        after=str(args.after.resolve()),
        steps=session.steps,
        snapshots=snapshots,
        warnings=warnings(session.steps, [w for ws in snapshots.values() for w in ws]),
    )
    (directory / "compare.json").write_bytes(msgspec.json.format(msgspec.json.encode(comparison)))
    text = markdown(comparison)
    (directory / "compare.md").write_text(text)
    for tree in data.values():
        shutil.rmtree(tree)
    print(text)
    print(f"results in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
