"""What the runner asks of a load generator process, and what it reports back (JSON files:
the generator runs in its own process so that it never shares an interpreter, a GIL or an
event loop with anything it measures)."""

from __future__ import annotations

from typing import Literal

import msgspec

from bench.histogram import LatencySummary
from bench.mix import Mix

Mode = Literal["open", "closed"]
OPEN: Mode = "open"  # requests sent on a schedule fixed in advance, whatever the answers do
CLOSED: Mode = "closed"  # each connection keeps `depth` requests in flight: measures peak


class LoadSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int
    data_dir: str  # for the terminal keys (keys.json)
    # One connection per terminal id: sequence numbers are per terminal.
    gates: list[str]
    pos: list[str]
    mode: Mode
    duration_seconds: float
    warmup_seconds: float
    first_seq: int  # above every seq these terminals used before (see switch.client.clock_seq)
    cards: int  # demo cards in the data directory
    rate_per_second: float = 0.0  # open loop: requests per second over all connections
    depth: int = 1  # closed loop: requests in flight per connection
    arrivals: Literal["poisson", "uniform"] = "poisson"
    seed: int = 1
    mix: Mix = Mix()
    # Where in the demo cards this run's connections start walking (bench.mix): the
    # runner continues from where the previous step stopped, so that no card comes back
    # to a gate within the switch's repeat-tap guard.
    card_start: int = 0
    # The server's process id, so its CPU time is read at the measured window's edges.
    server_pid: int | None = None
    # A file the generator creates when its schedule starts, after connecting (and reading
    # the e-cards when it shows QR codes): for tools that watch the server meanwhile.
    started_path: str | None = None


class LoadResult(msgspec.Struct, frozen=True):
    mode: str
    connections: int
    depth: int
    offered_rate_per_second: float | None  # open loop only
    measured_seconds: float
    sent: int  # requests scheduled (open) or sent (closed) inside the measured window
    answered: int  # answers received inside the measured window
    unanswered: int  # measured requests still without an answer when the drain ended
    sent_rate_per_second: float
    achieved_rate_per_second: float
    # Open loop: from each request's scheduled send time (coordinated omission corrected);
    # closed loop: from its actual send time.
    latency: LatencySummary
    # From the actual send time, both modes: the server's share, without the generator's lag.
    service: LatencySummary
    # Open loop: actual send time minus scheduled send time.
    lag: LatencySummary | None
    # Open loop: the generator sent what it claims at the times it claims (see loadgen).
    schedule_kept: bool
    codes: dict[str, dict[str, int]]  # intent label -> response code -> answers
    unexpected_answers: int  # codes outside mix.EXPECTED_CODES for the intent
    mac_failures: int
    retries: int
    retry_mismatches: int  # retries whose answer differed from the first try's
    unmatched_answers: int  # answers to no request in flight
    connections_lost: int
    cards_used: int  # how far the run walked through the cards (see LoadSpec.card_start)
    # CPU time in the measured window (seconds, summed over CPUs): the generator's own, the
    # server's (None without server_pid) and the whole machine's, so what the other work
    # on the machine took is machine - generator - server.
    cpu_seconds: float
    server_cpu_seconds: float | None
    machine_cpu_seconds: float
    # The server's main thread alone (event loop, engine): the one that cannot use a second
    # core, so it is the one that saturates first (None without server_pid, and in results
    # written before it was measured).
    server_main_thread_cpu_seconds: float | None = None
