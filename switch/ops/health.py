"""What /healthz and /readyz answer, and the event-loop heartbeat behind liveness.

Liveness (/healthz) — the process can still do its job; restart it if not:
  * while the journal is being recovered: alive (replaying is work, not a hang);
  * afterwards: alive while the event loop keeps running the heartbeat. A loop that has
    not run it for LOOP_STALL_SECONDS_MAX is stuck, and restarting is safe: everything
    answered is in the journal.

Readiness (/readyz) — send terminals here. The switch becomes ready once all of these hold:
  1. journal recovery is complete: the caches hold every durable record;
  2. the channels listen (terminal, and ISO 8583 and the service API when enabled);
  3. every configured bank link has signed on — or BANK_SIGN_ON_WAIT_SECONDS_MAX has
     passed since the channels opened, and the links still down are answered in stand-in.
It stops being ready the moment a stop begins (draining), so a load balancer moves
terminals elsewhere while the decided requests are still being answered.

Readiness latches between those two moments: a bank link lost after the switch became
ready does not make it unready. Stand-in answers for that bank and the
OnecardBankLinkDown alert pages; taking the switch out of the load balancer would take
every transit gate with it.

The state is written from the event loop (and, during recovery, from the main thread) and
read from the HTTP server's threads: single attribute stores and reads, under a lock where
several go together.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import anyio
import msgspec

from switch.stats import LATENCY_BUCKETS_SECONDS, BucketHistogram

# How often the event loop proves it runs. One second keeps the cost nil (one timer a
# second) and measures loop lag at the resolution a dashboard shows.
HEARTBEAT_SECONDS = 1.0
# A loop that has not run the heartbeat for this long is stuck. A gate waits 300 ms for an
# answer; nothing legitimate (not a full GC, not a large journal group) blocks the loop for
# ten seconds, and a false restart costs only a reconnect of the terminals.
LOOP_STALL_SECONDS_MAX = 10.0
# How long readiness waits for bank links to sign on after the channels open. The link
# retries with backoff up to 30 s (switch/banks/link.py), so two minutes is several
# attempts; a bank host still unreachable after that is down, and keeping transit gates
# out of the switch for it would turn one bank's outage into the whole city's.
BANK_SIGN_ON_WAIT_SECONDS_MAX = 120.0


class Phase(enum.StrEnum):
    RECOVERING = "recovering"  # replaying the journal into the caches
    STARTING = "starting"  # recovered; opening the channels
    SERVING = "serving"  # channels open
    DRAINING = "draining"  # a stop began: answering what was decided, taking nothing new


class Verdict(msgspec.Struct, frozen=True):
    """One answer of /healthz or /readyz: the HTTP status follows `ok`, the body is this
    as JSON. `reasons` says what is missing (empty when ok) or, for a ready switch, what
    it is doing without (bank links in stand-in)."""

    ok: bool
    phase: str
    reasons: list[str]

    @property
    def status(self) -> int:
        return 200 if self.ok else 503


@dataclass
class RecoverySummary:
    records: int
    segments: int
    truncated_bytes: int
    seconds: float


@dataclass
class Health:
    """The switch's health as the service moves through its phases."""

    # Monotonic seconds; tests pass their own to step past the waits without sleeping.
    clock: Callable[[], float] = time.monotonic
    phase: Phase = Phase.RECOVERING
    recovery: RecoverySummary | None = None
    # The loop's lag behind each heartbeat's due time: the loop's own queueing delay, which
    # every answer pays on top of its work.
    loop_lag_seconds: BucketHistogram = field(
        default_factory=lambda: BucketHistogram(LATENCY_BUCKETS_SECONDS)
    )
    _banks: Mapping[str, bool] = field(default_factory=dict, init=False)
    _serving_since: float = field(default=0.0, init=False)
    _last_beat: float | None = field(default=None, init=False)
    _ready_latched: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    # -- what the service reports ------------------------------------------------------------

    def recovered(self, summary: RecoverySummary) -> None:
        """The journal is replayed; the channels are about to open."""
        self.recovery = summary
        if self.phase == Phase.RECOVERING:
            self.phase = Phase.STARTING

    def serving(self, banks: Mapping[str, bool]) -> None:
        """Every channel listens. `banks`: each configured bank link → signed on now (a
        live view, read at every probe; empty without the ISO 8583 channel)."""
        with self._lock:
            self._banks = banks
            self._serving_since = self.clock()
            self._last_beat = self._serving_since
            self.phase = Phase.SERVING

    def draining(self) -> None:
        with self._lock:
            self.phase = Phase.DRAINING

    def beat(self, lag_seconds: float = 0.0) -> None:
        self._last_beat = self.clock()
        self.loop_lag_seconds.observe(max(lag_seconds, 0.0))

    # -- what the probes read --------------------------------------------------------------

    def liveness(self) -> Verdict:
        phase, last_beat = self.phase, self._last_beat
        if phase == Phase.RECOVERING or last_beat is None:
            return Verdict(True, phase, [])
        silent = self.clock() - last_beat
        if silent > LOOP_STALL_SECONDS_MAX:
            return Verdict(False, phase, [f"event loop silent for {silent:.1f} s"])
        return Verdict(True, phase, [])

    def readiness(self) -> Verdict:
        with self._lock:
            phase = self.phase
            if phase == Phase.RECOVERING:
                return Verdict(False, phase, ["journal recovery in progress"])
            if phase == Phase.STARTING:
                return Verdict(False, phase, ["channels not yet listening"])
            if phase == Phase.DRAINING:
                return Verdict(False, phase, ["draining: a stop is in progress"])
            down = sorted(bank for bank, up in dict(self._banks).items() if not up)
            if self._ready_latched:
                return Verdict(True, phase, [f"bank {bank}: link down, stand-in" for bank in down])
            waited = self.clock() - self._serving_since
            if down and waited < BANK_SIGN_ON_WAIT_SECONDS_MAX:
                return Verdict(False, phase, [f"bank {bank}: not signed on yet" for bank in down])
            self._ready_latched = True
            return Verdict(
                True,
                phase,
                [f"bank {bank}: did not sign on in {waited:.0f} s, stand-in" for bank in down],
            )

    @property
    def ready(self) -> bool:
        return self.readiness().ok


async def keep_beating(health: Health) -> None:
    """The heartbeat task: runs until cancelled, in the service's task group."""
    clock = health.clock
    while True:
        due = clock() + HEARTBEAT_SECONDS
        await anyio.sleep(HEARTBEAT_SECONDS)
        health.beat(clock() - due)
