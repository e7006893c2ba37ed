"""One open-loop step against the switch, and where its time went.

    python -m bench.probe --data-dir D [--rate 10000] [--mixed] [--duration 20]
                          [--warmup 3] [--connections 64] [--pin SWITCH_CPUS/GENERATOR_CPUS]
                          [--config SWITCH_TOML] [--depth N] [--loop uvloop|asyncio|trio]
                          [--qr-share S]

`onecard bench` answers "how close is the switch to the baseline"; this answers "why is
this step's tail what it is" (docs/performance.md, third and fourth rounds). It copies the
data directory D (`onecard demo --cards N` makes one) so that the run leaves D as it was,
writes the copy to disk, starts the switch on it, runs one step in the load generator
(bench/loadgen.py, as the bench does) and prints, besides the generator's figures:

* each switch thread's CPU (user, system) and context switches over the measured window,
  from /proc/<pid>/task: the main thread (the event loop and the engine) apart from the
  journal writer and the rest; involuntary switches are the scheduler taking the CPU away;
* the switch's own histograms over the measured window, from its metrics endpoint: the
  request duration (read to answer), the journal sync and the group size, as the upper
  bounds of the buckets that hold p50, p99 and p99.9.

`--pin 0/1` runs the switch's threads on CPU 0 and the generator on CPU 1 (`taskset`
lists), so that the two do not compete for cores as they do in `onecard bench`. `--depth N` runs
the step closed-loop instead (N requests in flight per connection, as the bench's peak
steps: 16 connections x 32 is its pipelined peak). `--config`
hands the switch a configuration file, e.g. `[snapshots] records = 100000` to have a
snapshot fall inside the step.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from bench.machine import ThreadTimes, children, thread_times, write_back
from bench.mix import Mix
from bench.report import SNAPSHOT_LINE
from bench.runner import pos_count, terminals
from bench.servers import start_server, switch_command
from bench.spec import CLOSED, OPEN, LoadResult, LoadSpec
from switch.client import clock_seq

METRICS_LINE = re.compile(r"metrics on (?P<url>http://\S+/metrics)")
# The switch's histograms the probe reads, each with the label value it keeps (the terminal
# channel; the garbage collector's full passes).
HISTOGRAMS = {
    "onecard_request_duration_seconds": ("channel", "terminal"),
    "onecard_journal_fsync_duration_seconds": ("channel", "terminal"),
    "onecard_journal_group_records": ("channel", "terminal"),
    "onecard_gc_pause_seconds": ("generation", "2"),
}
QUANTILES = (0.5, 0.99, 0.999)
# How long the generator may take to connect and get ready (reading a million cards'
# e-cards for QR codes takes about half a minute), and how often the probe looks.
GENERATOR_START_SECONDS_MAX = 180.0
START_POLL_SECONDS = 0.05
# Bounds for the generator process: well above a step's planned time plus its drain.
GENERATOR_SLACK_SECONDS = 60.0

Buckets = dict[str, list[tuple[float, float]]]  # histogram -> [(upper bound, cumulative)]


def scrape(url: str) -> Buckets:
    """The cumulative buckets of HISTOGRAMS (of the label value each keeps)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name not in HISTOGRAMS:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            label, wanted = HISTOGRAMS[family.name]
            if sample.labels.get(label, wanted) != wanted:
                continue
            out.setdefault(family.name, []).append((float(sample.labels["le"]), sample.value))
    return out


def quantile_bounds(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> str:
    """'n=N p50<=A p99<=B p99.9<=C' over the window between two scrapes."""
    earlier = dict(before)
    window = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]
    total = window[-1][1]
    if not total:
        return "n=0"
    parts = [f"n={total:.0f}"]
    for q in QUANTILES:
        bound = next(b for b, count in window if count >= q * total)
        parts.append(f"p{q * 100:g}<={bound:g}")
    return " ".join(parts)


def tree_thread_times(pid: int) -> dict[int, ThreadTimes]:
    """The threads of `pid` and of its child processes (the misuse follower, a snapshot
    child), by thread id."""
    times = thread_times(pid)
    for child in children(pid):
        times.update(thread_times(child))
    return times


def _wait_for_start(started: Path, generator: subprocess.Popen[bytes]) -> None:
    """Until the generator's schedule starts: it connects first, and with QR codes reads
    the e-cards from the journal (half a minute for a million cards)."""
    deadline = time.monotonic() + GENERATOR_START_SECONDS_MAX
    while not started.exists():
        if generator.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the load generator did not start its schedule")
        time.sleep(START_POLL_SECONDS)


def thread_lines(
    pid: int,
    before: dict[int, ThreadTimes],
    after: dict[int, ThreadTimes],
    wall: float,
    processes: set[int],
) -> list[str]:
    lines = []
    for tid, now in sorted(after.items(), key=lambda item: item[0] != pid):
        then = before.get(tid, ThreadTimes(0.0, 0.0, 0, 0))
        user = now.user_seconds - then.user_seconds
        system = now.system_seconds - then.system_seconds
        if tid != pid and user + system < 0.01 * wall:
            continue  # idle helpers (the metrics server, worker threads); main always shows
        name = "main" if tid == pid else f"{'child' if tid in processes else 'thread'} {tid}"
        lines.append(
            f"  {name:<14} {100 * (user + system) / wall:4.0f}% of a core "
            f"(user {user:.2f} s, system {system:.2f} s); context switches/s: "
            f"voluntary {(now.voluntary_switches - then.voluntary_switches) / wall:.0f}, "
            f"involuntary {(now.involuntary_switches - then.involuntary_switches) / wall:.0f}"
        )
    return lines


def summary(result: LoadResult) -> list[str]:
    latency, lag = result.latency, result.lag
    answered = max(result.answered, 1)
    server = result.server_cpu_seconds or 0.0
    if result.offered_rate_per_second is None:
        load = f"closed loop, {result.connections} connections x {result.depth} in flight"
    else:
        load = (
            f"of {result.offered_rate_per_second:,.0f}/s offered; schedule kept: "
            f"{result.schedule_kept}"
        )
    return [
        f"answered {result.achieved_rate_per_second:,.0f}/s {load}",
        f"latency ms (from the scheduled send): p50 {latency.p50_ms:.2f}, "
        f"p99 {latency.p99_ms:.2f}, p99.9 {latency.p999_ms:.2f}, max {latency.max_ms:.1f}; "
        f"send lag p99 {lag.p99_ms if lag else 0.0:.2f}",
        f"switch CPU {server:.2f} s = {1e6 * server / answered:.1f} µs a request; "
        f"generator {result.cpu_seconds:.2f} s; machine {result.machine_cpu_seconds:.2f} s",
        f"unanswered {result.unanswered}, unexpected answers {result.unexpected_answers}, "
        f"MAC failures {result.mac_failures}, retries answered differently "
        f"{result.retry_mismatches}",
    ]


def probe(args: argparse.Namespace, work: Path) -> list[str]:
    data_dir = work / "data"
    shutil.copytree(args.data_dir, data_dir)
    write_back()  # the copy's writeback must not land in the step (bench.machine)
    switch_cpus, generator_cpus = args.pin.split("/") if args.pin else ("", "")
    command = switch_command(data_dir, args.loop, config=args.config)
    server = start_server("switch", command, work)
    try:
        if switch_cpus:
            subprocess.run(
                ["taskset", "--all-tasks", "--cpu-list", "--pid", switch_cpus, str(server.pid)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        match = METRICS_LINE.search((work / "switch.out").read_text())
        if match is None:
            raise SystemExit("the switch did not say where its metrics are")
        gates, pos = terminals(data_dir)
        pos = pos[: pos_count(args.connections)] if args.mixed else []
        spec = LoadSpec(
            host=server.host,
            port=server.port,
            data_dir=str(data_dir),
            gates=gates[: args.connections - len(pos)],
            pos=pos,
            mode=CLOSED if args.depth else OPEN,
            duration_seconds=args.duration,
            warmup_seconds=args.warmup,
            first_seq=clock_seq(),
            cards=args.cards,
            rate_per_second=0.0 if args.depth else args.rate,
            depth=args.depth or 1,
            server_pid=server.pid,
            mix=Mix(qr_share=args.qr_share),
            started_path=str(work / "started"),
        )
        (work / "spec.json").write_bytes(msgspec.json.encode(spec))
        command = [sys.executable, "-m", "bench.loadgen", str(work / "spec.json")]
        command.append(str(work / "result.json"))
        if generator_cpus:
            command = ["taskset", "--cpu-list", generator_cpus, *command]
        generator = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        _wait_for_start(work / "started", generator)
        time.sleep(args.warmup)
        buckets_before = scrape(match["url"])
        # The threads' CPU over the window only, without the warm-up's start and the
        # drain's idle tail, which made a thread's share look lower than it was in the
        # window. It starts within a poll of the generator's (the start file, then the
        # same warm-up).
        threads_before = tree_thread_times(server.pid)
        window_started = time.monotonic()
        time.sleep(args.duration)
        threads_after = tree_thread_times(server.pid)
        processes = set(children(server.pid))
        wall = time.monotonic() - window_started
        generator.wait(timeout=args.warmup + args.duration + GENERATOR_SLACK_SECONDS)
        buckets_after = scrape(match["url"])
    finally:
        server.stop()
    if generator.returncode != 0:
        raise SystemExit(f"the load generator failed (exit status {generator.returncode})")
    result = msgspec.json.decode((work / "result.json").read_bytes(), type=LoadResult)
    lines = summary(result)
    lines.append("switch threads and child processes over the measured window:")
    lines += thread_lines(server.pid, threads_before, threads_after, wall, processes)
    lines.append("switch histograms over the measured window (bucket upper bounds):")
    for name in HISTOGRAMS:
        if name in buckets_after:
            window = quantile_bounds(buckets_before.get(name, []), buckets_after[name])
            lines.append(f"  {name}: {window}")
    log_lines = (work / "switch.log").read_text().splitlines()
    snapshots = [line for line in log_lines if SNAPSHOT_LINE.search(line)]
    lines.append(f"snapshots during the run: {len(snapshots)}")
    lines += [f"  {line}" for line in snapshots]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="demo data (copied)")
    parser.add_argument("--cards", type=int, required=True, help="demo cards in it")
    parser.add_argument("--rate", type=float, default=10_000.0, help="requests/s, open loop")
    parser.add_argument("--mixed", action="store_true", help="POS traffic too, not only taps")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pin", help="SWITCH_CPUS/GENERATOR_CPUS for taskset, e.g. 0/1")
    parser.add_argument("--config", type=Path, help="the switch's TOML configuration")
    parser.add_argument("--depth", type=int, default=0, help="closed loop: requests in flight")
    parser.add_argument(
        "--qr-share", type=float, default=0.0, help="payments made with e-card QR codes"
    )
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio", "trio"), default="uvloop", help="switch loop"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="onecard-probe-") as work:
        print("\n".join(probe(args, Path(work))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
