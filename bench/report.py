"""A benchmark run's outputs: results.json (everything), latency.png (p50/p99/p99.9 against
offered load, switch and baseline) and summary.md (the figures, ratios to the baseline,
the issue's targets, and every reason to doubt a figure)."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a benchmark machine

import matplotlib.pyplot as plt
import msgspec

from bench.iso import BASELINE as BASELINE_ISO
from bench.iso import PURSE as PURSE_ISO
from bench.iso import CodecFigures, EndToEnd
from bench.machine import Machine
from bench.spec import LoadResult

SWITCH = "switch"
BASELINE = "baseline"
PEAK_PIPELINED = "peak-pipelined"
PEAK_ONE_IN_FLIGHT = "peak-one-in-flight"
SWEEP = "sweep"
TAPS = "taps"

# The targets (issue 3, "Benchmarks that tell the truth").
THROUGHPUT_RATIO_MIN = 0.5  # durable switch vs baseline, both peak regimes
HALF_PEAK_FRACTION = 0.5
HALF_PEAK_P99_MS_MAX = 5.0
HALF_PEAK_P999_MS_MAX = 20.0
TAPS_P99_MS_MAX = 1.0
# An open-loop step whose answers per second fall this far below what was sent has
# saturated the server: its latencies grow with the run's length, not with the load.
SATURATED_BELOW = 0.97
# A generator using this much of one core may itself be what limits a peak figure.
GENERATOR_BOUND_CORE_SHARE = 0.9
PERCENT = 100.0


class Step(msgspec.Struct, frozen=True):
    name: str
    server: str  # SWITCH | BASELINE
    regime: str  # PEAK_PIPELINED | PEAK_ONE_IN_FLIGHT | SWEEP | TAPS
    fraction: float | None  # sweep steps: of the switch's peak
    result: LoadResult
    # Wall clock (Unix seconds) around the generator's run: warm-up, window and drain.
    started_unix: float = 0.0
    ended_unix: float = 0.0
    # Peak steps are measured in rounds (bench/options.py PEAK_ROUNDS): a switch step and
    # a baseline step of the same round make one ratio.
    round: int = 1
    # bench.machine.python_speed_us just before the step (0: not measured): how fast the
    # machine ran Python then, so that runs on a slow box can be told from slow code.
    speed_us: float = 0.0


# The switch's log says when a snapshot child starts and when it is done
# (switch/snapshotter.py); asctime is the local time of this same machine.
SNAPSHOT_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ \S+ onecard\.snapshot: "
    r"snapshot at record \d+(?::| written by| failed) .*?child (?P<pid>\d+)"
    r"(?P<started> writing)?"
)


def snapshot_windows(log_text: str, end_unix: float) -> list[tuple[float, float]]:
    """(start, end) Unix seconds of each snapshot child the switch's log names; a child
    still writing when the log ends runs to `end_unix`."""
    started: dict[str, float] = {}
    windows = []
    for line in log_text.splitlines():
        match = SNAPSHOT_LINE.match(line)
        if match is None:
            continue
        at = time.mktime(time.strptime(match["at"], "%Y-%m-%d %H:%M:%S"))
        if match["started"]:
            started[match["pid"]] = at
        elif match["pid"] in started:
            windows.append((started.pop(match["pid"]), at + 1.0))  # the log rounds down
    windows.extend((at, end_unix) for at in started.values())
    return sorted(windows)


class Target(msgspec.Struct, frozen=True):
    name: str
    limit: str
    measured: str
    met: bool | None  # None: the run did not measure it


class Run(msgspec.Struct, frozen=True):
    """What every bench report opens with: when, how it was started, on what machine."""

    started_at: str
    command: str
    machine: Machine
    options: dict[str, str]


class Report(Run, frozen=True):
    sweep_peak_per_second: float
    steps: list[Step]
    targets: list[Target]
    warnings: list[str]


def find(steps: Iterable[Step], server: str, regime: str) -> list[Step]:
    return [s for s in steps if s.server == server and s.regime == regime]


def _one(steps: Iterable[Step], server: str, regime: str) -> Step | None:
    found = find(steps, server, regime)
    return found[0] if found else None


def _ratio(switch: Step | None, baseline: Step | None) -> float | None:
    if switch is None or baseline is None or not baseline.result.achieved_rate_per_second:
        return None
    return switch.result.achieved_rate_per_second / baseline.result.achieved_rate_per_second


def peak_pairs(steps: Iterable[Step], regime: str) -> list[tuple[Step, Step]]:
    """(switch, baseline) of each round of a peak regime, in round order."""
    baselines = {step.round: step for step in find(steps, BASELINE, regime)}
    return [
        (step, baselines[step.round])
        for step in sorted(find(steps, SWITCH, regime), key=lambda step: step.round)
        if step.round in baselines
    ]


def median_ratio(steps: Iterable[Step], regime: str) -> tuple[float, list[float]] | None:
    """The median round's switch/baseline ratio of a peak regime, and every round's (the
    lower median for an even count: no figure is made up between two rounds)."""
    ratios = [ratio for pair in peak_pairs(steps, regime) if (ratio := _ratio(*pair)) is not None]
    if not ratios:
        return None
    return statistics.median_low(ratios), ratios


def targets(steps: list[Step]) -> list[Target]:
    out = []
    for regime, label in ((PEAK_PIPELINED, "pipelined"), (PEAK_ONE_IN_FLIGHT, "one in flight")):
        found = median_ratio(steps, regime)
        if found is None:
            measured = "not measured"
        else:
            ratio, rounds = found
            measured = f"{ratio:.1%}"
            if len(rounds) > 1:
                listed = ", ".join(f"{r:.1%}" for r in rounds)
                measured += f" (median of {len(rounds)} rounds: {listed})"
        out.append(
            Target(
                f"durable switch throughput / baseline, {label}",
                f">= {THROUGHPUT_RATIO_MIN:.0%}",
                measured,
                None if found is None else found[0] >= THROUGHPUT_RATIO_MIN,
            )
        )
    half = [s for s in find(steps, SWITCH, SWEEP) if s.fraction == HALF_PEAK_FRACTION]
    if half:
        latency = half[0].result.latency
        out.append(
            Target(
                "p99 at 50% of the switch's peak",
                f"<= {HALF_PEAK_P99_MS_MAX:g} ms",
                f"{latency.p99_ms:.2f} ms",
                latency.p99_ms <= HALF_PEAK_P99_MS_MAX,
            )
        )
        out.append(
            Target(
                "p99.9 at 50% of the switch's peak",
                f"<= {HALF_PEAK_P999_MS_MAX:g} ms",
                f"{latency.p999_ms:.2f} ms",
                latency.p999_ms <= HALF_PEAK_P999_MS_MAX,
            )
        )
    else:
        out.extend(
            Target(name, "", "not measured (0.5 not in --sweep)", None)
            for name in ("p99 at 50% of the switch's peak", "p99.9 at 50% of the switch's peak")
        )
    taps = _one(steps, SWITCH, TAPS)
    if taps is not None:
        rate = taps.result.offered_rate_per_second or 0.0
        out.append(
            Target(
                f"p99 at {rate:,.0f} taps/s",
                f"<= {TAPS_P99_MS_MAX:g} ms",
                f"{taps.result.latency.p99_ms:.2f} ms",
                taps.result.latency.p99_ms <= TAPS_P99_MS_MAX,
            )
        )
    return out


def overlapped(step: Step, windows: Sequence[tuple[float, float]]) -> bool:
    """Whether any of `windows` (snapshot_windows) overlaps the step's run."""
    return any(start < step.ended_unix and step.started_unix < end for start, end in windows)


def warnings(steps: list[Step], snapshots: Sequence[tuple[float, float]] = ()) -> list[str]:
    """Every reason a figure may not mean what it seems to. `snapshots`: when the switch
    had a snapshot child writing (snapshot_windows)."""
    out = []
    for step in steps:
        r = step.result
        problems = []
        if overlapped(step, snapshots):
            problems.append(
                "a switch snapshot child was writing during the step "
                "(a core's worth of other CPU; docs/performance.md)"
            )
        if step.server == SWITCH:
            # Only the switch answers by the rules; the baseline approves everything unsigned.
            if r.unexpected_answers:
                problems.append(
                    f"{r.unexpected_answers} answers with a code the mix did not expect"
                )
            if r.mac_failures:
                problems.append(f"{r.mac_failures} answers whose MAC failed")
        if r.retry_mismatches:
            problems.append(f"{r.retry_mismatches} retries answered differently from the first try")
        if r.unanswered:
            problems.append(f"{r.unanswered} requests unanswered after the drain")
        if r.connections_lost:
            problems.append(f"{r.connections_lost} connections lost")
        if r.unmatched_answers:
            problems.append(f"{r.unmatched_answers} answers matched no request")
        if not r.schedule_kept and r.lag is not None:
            problems.append(
                f"generator behind schedule: send lag p99 {r.lag.p99_ms:.2f} ms, "
                f"max {r.lag.max_ms:.2f} ms (inside the reported latency)"
            )
        if (
            r.mode == "open"
            and r.achieved_rate_per_second < SATURATED_BELOW * r.sent_rate_per_second
        ):
            problems.append(
                f"saturated: answered {r.achieved_rate_per_second:,.0f}/s of "
                f"{r.sent_rate_per_second:,.0f}/s sent"
            )
        if r.mode == "closed" and r.cpu_seconds >= GENERATOR_BOUND_CORE_SHARE * r.measured_seconds:
            problems.append(
                f"generator used {_core_share(r.cpu_seconds, r):.0f}% of a core: "
                "this peak may be the generator's, not the server's"
            )
        if problems:
            out.append(f"{step.name}: " + "; ".join(problems))
    return out


def _core_share(seconds: float | None, result: LoadResult) -> float:
    return float("nan") if seconds is None else seconds / result.measured_seconds * PERCENT


def _server_cpu(result: LoadResult) -> str:
    """The server's CPU, and its main thread's where measured: '98% (main 74%)'."""
    total = f"{_core_share(result.server_cpu_seconds, result):.0f}%"
    main = result.server_main_thread_cpu_seconds
    return total if main is None else f"{total} (main {_core_share(main, result):.0f}%)"


def _other_share(result: LoadResult) -> float:
    other = result.machine_cpu_seconds - result.cpu_seconds - (result.server_cpu_seconds or 0.0)
    return max(other, 0.0) / result.measured_seconds * PERCENT


def write_json(report: Report | IsoReport, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(report)))


def write_plot(report: Report, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(9, 5.5))
    styles = {SWITCH: "-", BASELINE: "--"}
    colours = {"p50": "tab:blue", "p99": "tab:orange", "p99.9": "tab:red"}
    for server, style in styles.items():
        sweep = sorted(find(report.steps, server, SWEEP), key=lambda s: s.fraction or 0.0)
        if not sweep:
            continue
        offered = [s.result.offered_rate_per_second or 0.0 for s in sweep]
        series = {
            "p50": [s.result.latency.p50_ms for s in sweep],
            "p99": [s.result.latency.p99_ms for s in sweep],
            "p99.9": [s.result.latency.p999_ms for s in sweep],
        }
        for label, values in series.items():
            axes.plot(
                offered,
                values,
                style,
                marker="o",
                markersize=3,
                color=colours[label],
                label=f"{server} {label}",
            )
    axes.set_yscale("log")
    axes.set_xlabel("offered load, requests/s (open loop, Poisson arrivals)")
    axes.set_ylabel("latency from scheduled send, ms (log)")
    axes.set_title(
        f"onecard: latency vs offered load — switch (durable) vs baseline\n"
        f"{report.machine.cpus} CPUs, {report.machine.cpu_model}, {report.started_at}"
    )
    axes.axhline(HALF_PEAK_P99_MS_MAX, color="grey", linewidth=0.8, linestyle=":")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(ncol=2, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _peak_row(regime: str, switch: Step, baseline: Step) -> str:
    s, b = switch.result, baseline.result
    return (
        f"| {regime} | {switch.round} | {s.connections} x {s.depth} "
        f"| {_rate(b.achieved_rate_per_second)} | {_rate(s.achieved_rate_per_second)} "
        f"| {_ratio(switch, baseline) or 0.0:.1%} | {_ms(s.latency.p99_ms)} "
        f"| {_core_share(b.server_cpu_seconds, b):.0f}% "
        f"| {_server_cpu(s)} "
        f"| {_core_share(b.cpu_seconds, b):.0f}%, {_core_share(s.cpu_seconds, s):.0f}% "
        f"| {_other_share(s):.0f}% |"
    )


def _sweep_row(switch: Step, baseline: Step | None) -> str:
    def figures(result: LoadResult | None) -> str:
        if result is None:
            return "| - | - | - | - "
        latency = result.latency
        return (
            f"| {_rate(result.achieved_rate_per_second)} | {_ms(latency.p50_ms)} "
            f"| {_ms(latency.p99_ms)} | {_ms(latency.p999_ms)} "
        )

    def lag(result: LoadResult | None) -> str:
        return _ms(result.lag.p99_ms) if result is not None and result.lag else "-"

    other = baseline.result if baseline is not None else None
    return (
        f"| {(switch.fraction or 0.0):.0%} | {_rate(switch.result.offered_rate_per_second)} "
        + figures(switch.result)
        + figures(other)
        + f"| {lag(switch.result)} | {lag(other)} | {_server_cpu(switch.result)} |"
    )


def _answer_mix(steps: list[Step]) -> str:
    """The switch's response codes over the whole run: what the figures were made of."""
    totals: dict[str, int] = {}
    for step in steps:
        if step.server == SWITCH:
            for by_code in step.result.codes.values():
                for code, count in by_code.items():
                    totals[code] = totals.get(code, 0) + count
    answered = sum(totals.values()) or 1
    shares = ", ".join(f"{code} {count / answered:.1%}" for code, count in sorted(totals.items()))
    return f"Switch response codes over all measured requests: {shares}."


def speed_lines(steps: Sequence[Step]) -> list[str]:
    speeds = sorted(step.speed_us for step in steps if step.speed_us)
    if not speeds:
        return []
    return [
        f"Python speed before each step (bench/machine.py `python_speed_us`, µs, lower is "
        f"faster): best {speeds[0]:.2f}, median {statistics.median_low(speeds):.2f}, worst "
        f"{speeds[-1]:.2f} over {len(speeds)} steps. Compare it between runs before "
        "comparing their absolute figures; the ratios are each of one moment.",
        "",
    ]


def markdown(report: Report) -> str:
    m = report.machine
    lines = [
        f"# onecard benchmark, {report.started_at}",
        "",
        f"Command: `{report.command}`",
        "",
        f"Machine: {m.cpus} CPUs ({m.cpu_model}), Python {m.python}, {m.platform}; "
        f"journal on {m.journal_filesystem}; load average at start "
        f"{m.load_average[0]:.2f} / {m.load_average[1]:.2f} / {m.load_average[2]:.2f}.",
        "",
        *speed_lines(report.steps),
        "## Targets",
        "",
        "| target | limit | measured | met |",
        "|---|---|---|---|",
    ]
    for t in report.targets:
        met = "not measured" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.name} | {t.limit} | {t.measured} | {met} |")
    lines += [
        "",
        "## Peak throughput (closed loop)",
        "",
        "Answers per second in the measured window; CPU as % of one core in that window "
        "(the switch's main thread, which runs the event loop and the engine, apart).",
        "",
        "| regime | round | connections x in flight | baseline /s | switch /s "
        "| switch / baseline | switch p99 ms | baseline CPU | switch CPU "
        "| generator CPU (baseline, switch) | other CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for regime in (PEAK_PIPELINED, PEAK_ONE_IN_FLIGHT):
        for switch, baseline in peak_pairs(report.steps, regime):
            lines.append(_peak_row(regime, switch, baseline))
    lines += [
        "",
        "## Latency vs offered load (open loop; switch peak "
        f"{report.sweep_peak_per_second:,.0f}/s)",
        "",
        "Latency in ms from each request's scheduled send time (coordinated omission "
        "corrected); the generator's own send lag is inside these figures and shown apart.",
        "",
        "| offered | offered /s | switch answered /s | switch p50 | p99 | p99.9 "
        "| baseline answered /s | baseline p50 | p99 | p99.9 | switch lag p99 | baseline lag p99 "
        "| switch CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    baseline_by_fraction = {step.fraction: step for step in find(report.steps, BASELINE, SWEEP)}
    for step in sorted(find(report.steps, SWITCH, SWEEP), key=lambda step: step.fraction or 0.0):
        lines.append(_sweep_row(step, baseline_by_fraction.get(step.fraction)))
    taps = find(report.steps, SWITCH, TAPS) + find(report.steps, BASELINE, TAPS)
    if taps:
        rate = taps[0].result.offered_rate_per_second or 0.0
        lines += [
            "",
            f"## Fixed rate: {rate:,.0f} taps/s at gates (open loop)",
            "",
            "| server | answered /s | p50 ms | p99 ms | p99.9 ms | max ms | service p99 ms "
            "| lag p99 ms | server CPU |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for step in taps:
            r = step.result
            lines.append(
                f"| {step.server} | {_rate(r.achieved_rate_per_second)} | {_ms(r.latency.p50_ms)} "
                f"| {_ms(r.latency.p99_ms)} | {_ms(r.latency.p999_ms)} | {_ms(r.latency.max_ms)} "
                f"| {_ms(r.service.p99_ms)} | {_ms(r.lag.p99_ms) if r.lag else '-'} "
                f"| {_server_cpu(r)} |"
            )
    lines += ["", "## Answers", "", _answer_mix(report.steps)]
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in report.warnings] or ["- none"]
    return "\n".join(lines) + "\n"


def write_markdown(report: Report, path: Path) -> None:
    path.write_text(markdown(report))


def write_all(report: Report, directory: Path) -> None:
    write_json(report, directory / "results.json")
    write_plot(report, directory / "latency.png")
    write_markdown(report, directory / "summary.md")


# -- ISO 8583 mode (`onecard bench --iso`, bench/iso.py) -------------------------------------


class IsoReport(Run, frozen=True):
    codec: CodecFigures
    runs: list[EndToEnd]


def _times(reference: float, ours: float) -> str:
    return f"{reference / ours:.1f}x" if ours else "-"


def iso_markdown(codec: CodecFigures, runs: list[EndToEnd], machine: Machine | None = None) -> str:
    """The ISO mode's figures: the codecs side by side, then each end-to-end run as a ratio
    of the baseline's (both measured in this run)."""
    lines = ["# onecard benchmark, ISO 8583 mode", ""]
    if machine is not None:
        lines += [
            f"Machine: {machine.cpus} CPUs ({machine.cpu_model}), Python {machine.python}; "
            f"load average at start {machine.load_average[0]:.2f} / "
            f"{machine.load_average[1]:.2f} / {machine.load_average[2]:.2f}.",
            "",
        ]
    lines += [
        "## Codec, per purchase (µs, best of rounds, one process)",
        "",
        "| step | ours | pyiso8583 | pyiso8583 / ours |",
        "|---|---|---|---|",
        f"| decode | {codec.ours_decode_us:.1f} | {codec.reference_decode_us:.1f} "
        f"| {_times(codec.reference_decode_us, codec.ours_decode_us)} |",
        f"| encode with MAC | {codec.ours_encode_us:.1f} | {codec.reference_encode_us:.1f} "
        f"| {_times(codec.reference_encode_us, codec.ours_encode_us)} |",
        "",
        f"The acquirer core (check, decide, journal record, encode the answer): "
        f"{codec.core_us:.1f} µs per purchase from the purse.",
        "",
        "## End to end (pipelined clients, loopback)",
        "",
        "| server | paid from | answers | /s | of baseline /s | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = next((run for run in runs if run.server == BASELINE_ISO), None)
    for run in runs:
        ratio = f"{run.per_second / base.per_second:.1%}" if base and base.per_second else "-"
        account = "purse" if run.account == PURSE_ISO else "bank account"
        lines.append(
            f"| {run.server} | {account} | {run.requests:,} | {run.per_second:,.0f} | {ratio} "
            f"| {_ms(run.p50_ms)} | {_ms(run.p99_ms)} | {_ms(run.max_ms)} |"
        )
    return "\n".join(lines) + "\n"


def write_iso(report: IsoReport, directory: Path) -> None:
    write_json(report, directory / "results.json")
    text = iso_markdown(report.codec, report.runs, report.machine)
    (directory / "summary.md").write_text(f"Command: `{report.command}`\n\n{text}")
