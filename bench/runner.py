"""`onecard bench`: the whole benchmark in one session, switch and baseline side by side.

    1. fresh demo data (cards, gates, POS) in <results>/data
    2. start the durable switch and the baseline server as child processes
    3. peak, closed loop, on both: pipelined, then one request in flight per connection
    4. open-loop sweep at fractions of the switch's peak, each rate on both servers
    5. open loop at a fixed tap rate (gates only), on both
    6. results.json, latency.png, summary.md

`onecard bench --iso` runs the ISO 8583 mode instead (bench/iso.py): our codec against
pyiso8583 in process, then the switch's ISO channel against the ISO baseline server, all
in the same run; results.json and summary.md.

Every step runs a fresh load generator process (bench.loadgen); the two servers run for
the whole session, so the switch's caches and journal carry over as they would in a day.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import iso
from bench.loadgen import DRAIN_SECONDS
from bench.machine import describe, python_speed_us, write_back
from bench.options import BenchOptions
from bench.report import (
    BASELINE,
    PEAK_ONE_IN_FLIGHT,
    PEAK_PIPELINED,
    SWEEP,
    SWITCH,
    TAPS,
    IsoReport,
    Report,
    Step,
    find,
    snapshot_windows,
    targets,
    warnings,
    write_all,
    write_iso,
)
from bench.servers import (
    BenchError,
    Server,
    baseline_command,
    running,
    switch_command,
)
from bench.spec import CLOSED, OPEN, LoadResult, LoadSpec
from switch.client import clock_seq
from switch.config import EngineConfig
from switch.demo import DemoSpec, create_demo
from switch.keystore import KeyStore

# Share of connections that are merchant terminals in mixed runs: a metro station's
# gates far outnumber the shops in it.
POS_SHARE = 0.125
# Beyond warm-up, window and drain, what a generator process may take: interpreter start,
# imports, connecting.
STEP_SLACK_SECONDS = 30.0
PROGRESS_SECONDS = 0.1


def pos_count(connections: int) -> int:
    return max(1, round(connections * POS_SHARE)) if connections >= 2 else 0


def terminals(data_dir: Path) -> tuple[list[str], list[str]]:
    """The demo data's gates and POS terminals (one connection each), in order."""
    keys = sorted(KeyStore.load(data_dir).terminals)
    return [t for t in keys if t.startswith("G")], [t for t in keys if t.startswith("P")]


class Session:
    """The servers, the terminals and the steps measured so far."""

    def __init__(
        self,
        options: BenchOptions,
        directory: Path,
        data_dir: Path,
        progress: Progress,
        servers: dict[str, Server],
    ) -> None:
        self.options = options
        self.directory = directory
        self.data_dir = data_dir
        self.progress = progress
        self.servers = servers
        self.gates, self.pos = terminals(data_dir)
        self.steps: list[Step] = []
        self.card_position = 0

    def run_step(
        self,
        server_name: str,
        regime: str,
        *,
        connections: int,
        mixed: bool = True,
        rate_per_second: float = 0.0,
        depth: int = 1,
        fraction: float | None = None,
        round_number: int = 1,
    ) -> Step:
        options = self.options
        server = self.servers[server_name]
        pos = pos_count(connections) if mixed else 0
        if fraction is not None:
            label = f"{fraction:.0%}"
        elif rate_per_second:
            label = f"{rate_per_second:.0f}rps"
        else:
            label = f"{connections}x{depth}"
            if options.peak_rounds > 1:
                label += f" round {round_number}"
        name = f"{server_name} {regime} {label}"
        spec = LoadSpec(
            host=server.host,
            port=server.port,
            data_dir=str(self.data_dir),
            gates=self.gates[: connections - pos],
            pos=self.pos[:pos],
            mode=OPEN if rate_per_second else CLOSED,
            duration_seconds=options.duration_seconds,
            warmup_seconds=options.warmup_seconds,
            # Above any seq these terminals used in earlier steps: the switch refuses (94)
            # a seq that fell out of its idempotency window.
            first_seq=clock_seq(),
            cards=options.cards,
            rate_per_second=rate_per_second,
            depth=depth,
            seed=len(self.steps) + 1,
            server_pid=server.pid,
            card_start=self.card_position,
        )
        speed_us = python_speed_us()
        started_unix = time.time()
        result = self._generate(spec, f"{len(self.steps) + 1:02d}-{name.replace(' ', '-')}", name)
        self.card_position += result.cards_used
        if server.process.poll() is not None:
            raise BenchError(f"{server_name} exited during {name}; see {server.log}")
        step = Step(
            name,
            server_name,
            regime,
            fraction,
            result,
            started_unix,
            time.time(),
            round_number,
            speed_us,
        )
        self.steps.append(step)
        return step

    def _generate(self, spec: LoadSpec, stem: str, name: str) -> LoadResult:
        steps_dir = self.directory / "steps"
        spec_path = steps_dir / f"{stem}.spec.json"
        result_path = steps_dir / f"{stem}.result.json"
        log_path = steps_dir / f"{stem}.log"
        spec_path.write_bytes(msgspec.json.encode(spec))
        planned = spec.warmup_seconds + spec.duration_seconds
        timeout = planned + DRAIN_SECONDS + STEP_SLACK_SECONDS
        task = self.progress.add_task(name, total=planned)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen", str(spec_path), str(result_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = time.monotonic()
        try:
            while process.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > timeout:
                    raise BenchError(f"load generator for {name} ran past {timeout:.0f} s")
                self.progress.update(task, completed=min(elapsed, planned))
                time.sleep(PROGRESS_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            self.progress.remove_task(task)
        if process.returncode != 0:
            raise BenchError(f"load generator for {name} failed; see {log_path}")
        return msgspec.json.decode(result_path.read_bytes(), type=LoadResult)


def _plan_size(options: BenchOptions) -> int:
    peaks = 4 * options.peak_rounds
    return peaks + 2 * len(options.sweep) + 2


def _measure(session: Session, advance: Callable[[], None]) -> float:
    """Run every step; returns the rate the sweep's fractions applied to."""
    options = session.options
    for round_number in range(1, options.peak_rounds + 1):
        # Whoever goes first in a round meets the machine as the step before left it;
        # taking turns spreads that over both servers.
        order = (BASELINE, SWITCH) if round_number % 2 else (SWITCH, BASELINE)
        for regime, connections, depth in (
            (PEAK_PIPELINED, options.pipeline_connections, options.depth),
            (PEAK_ONE_IN_FLIGHT, options.connections, 1),
        ):
            for server in order:
                session.run_step(
                    server, regime, connections=connections, depth=depth, round_number=round_number
                )
                advance()
    # The sweep's 100% is the switch's median round, the regime with the higher one.
    peak = options.sweep_peak or max(
        statistics.median_low(
            s.result.achieved_rate_per_second for s in find(session.steps, SWITCH, regime)
        )
        for regime in (PEAK_PIPELINED, PEAK_ONE_IN_FLIGHT)
    )
    for fraction in options.sweep:
        for server in (SWITCH, BASELINE):
            session.run_step(
                server,
                SWEEP,
                connections=options.connections,
                rate_per_second=peak * fraction,
                fraction=fraction,
            )
            advance()
    for server in (SWITCH, BASELINE):
        session.run_step(
            server,
            TAPS,
            connections=options.connections,
            mixed=False,
            rate_per_second=options.taps_rate,
        )
        advance()
    return peak


def run(options: BenchOptions, command: str, console: Console | None = None) -> Path:
    """The whole benchmark; returns the directory holding its results."""
    started = datetime.datetime.now().astimezone()
    directory = options.results_dir / started.strftime("%Y%m%d-%H%M%S")
    (directory / "steps").mkdir(parents=True)
    data_dir = directory / "data"
    most = max(options.connections, options.pipeline_connections)
    console = console or Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        overall = progress.add_task("benchmark steps", total=_plan_size(options))
        demo = progress.add_task(f"demo data: {options.cards:,} cards", total=1)
        create_demo(
            data_dir,
            DemoSpec(cards=options.cards, gates=most, pos=pos_count(most)),
            EngineConfig(),
        )
        write_back()
        progress.remove_task(demo)
        machine = describe(data_dir / "journal")
        logs = directory / "logs"
        logs.mkdir()
        with (
            running(SWITCH, switch_command(data_dir, options.loop), logs) as switch,
            running(BASELINE, baseline_command(), logs) as baseline,
        ):
            session = Session(
                options, directory, data_dir, progress, {SWITCH: switch, BASELINE: baseline}
            )
            peak = _measure(session, lambda: progress.advance(overall))
    report = Report(
        started_at=started.isoformat(timespec="seconds"),
        command=command,
        machine=machine,
        options={key: str(value) for key, value in asdict(options).items()},
        sweep_peak_per_second=peak,
        steps=session.steps,
        targets=targets(session.steps),
        warnings=warnings(
            session.steps, snapshot_windows(switch.log.read_text(errors="replace"), time.time())
        ),
    )
    write_all(report, directory)
    if not options.keep_data:
        shutil.rmtree(data_dir)
    return directory


def run_iso(options: BenchOptions, command: str, console: Console | None = None) -> Path:
    """The ISO 8583 mode; returns the directory holding its results."""
    started = datetime.datetime.now().astimezone()
    directory = options.results_dir / f"{started.strftime('%Y%m%d-%H%M%S')}-iso"
    directory.mkdir(parents=True)
    machine = describe(directory)
    console = console or Console(stderr=True)
    console.print(f"codec figures: {options.iso_messages:,} purchases per round")
    codec = iso.per_message(options.iso_messages)
    console.print(f"end to end: {options.duration_seconds:g} s per run, baseline then switch")
    runs = iso.end_to_end(options.duration_seconds, options.pipeline_connections, options.depth)
    report = IsoReport(
        started_at=started.isoformat(timespec="seconds"),
        command=command,
        machine=machine,
        options={key: str(value) for key, value in asdict(options).items()},
        codec=codec,
        runs=runs,
    )
    write_iso(report, directory)
    return directory


def cmd_bench(args: argparse.Namespace) -> int:
    options = BenchOptions.from_arguments(args)
    console = Console(stderr=True)
    command = shlex.join(["onecard", *sys.argv[1:]])
    try:
        directory = (run_iso if options.iso else run)(options, command, console)
    except BenchError as exc:
        console.print(f"onecard bench: {exc}")
        return 1
    print((directory / "summary.md").read_text())
    print(f"results in {directory}")
    return 0
