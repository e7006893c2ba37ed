"""Load generator for the terminal protocol: uvloop, asyncio Protocols, one process.

    python -m bench.loadgen SPEC.json RESULT.json      (bench.spec.LoadSpec / LoadResult)

Open loop: request times are fixed in advance (Poisson arrivals by default, spread over
the connections at random) and each request's latency runs from its *scheduled* time, so
a server that stalls is charged for every request it kept waiting, not only for the one
it was slow on (coordinated omission). The generator sends whatever is due whenever it is
awake — on its timer tick and after every read — and reports how late it sent (the lag):
a generator that cannot keep its schedule says so instead of quietly offering less.

Closed loop ("peak"): every connection keeps `depth` requests in flight and replaces each
answered one at once; the answers per second are the server's peak for that regime.

Per request the generator signs one frame and checks one answer and appends samples to
arrays; histograms are built after the run. It must cost less than the server it
measures: the runner reports both processes' CPU time.
"""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, cast

import msgspec
import uvloop

from bench.histogram import samples, summarise
from bench.machine import main_thread_cpu_seconds, process_tree_cpu_seconds, system_cpu_seconds
from bench.mix import EXPECTED_CODES, Planned, Role, TerminalScript
from bench.spec import CLOSED, LoadResult, LoadSpec
from bench.wallet import wallet_of
from protocols.errors import RemoteProtocolError
from protocols.terminal import ClientCodec, MacKey
from switch.keystore import KeyStore

# The open-loop timer period. uvloop timers have millisecond resolution, and a shorter
# period would spin the loop and steal CPU from the server on a small machine.
TICK_SECONDS = 0.001
# After the last scheduled send, how long answers may still arrive before the requests
# still waiting count as unanswered: far beyond any latency we would call working.
DRAIN_SECONDS = 5.0
# Loopback connections are accepted in milliseconds; a server that has not accepted a
# run's connections in this long is not serving.
CONNECT_SECONDS = 10.0
# The schedule counts as kept while 99% of sends leave within two timer ticks of their
# scheduled time: below that the lag is the timer's granularity, not a generator that
# has fallen behind. Either way the lag is inside the reported latency.
LAG_P99_TOLERANCE_MS = 2.0
MICROSECONDS = 1_000_000

PendingEntry = tuple[float, float, Planned]  # scheduled time, send time, request


class Recorder:
    """What one run counts; the measured window is [measure_from, measure_until)."""

    __slots__ = (
        "answered",
        "codes",
        "connections_lost",
        "lag_us",
        "latency_us",
        "mac_failures",
        "measure_from",
        "measure_until",
        "retries",
        "retry_mismatches",
        "sent",
        "service_us",
        "unmatched",
    )

    def __init__(self, measure_from: float, measure_until: float) -> None:
        self.measure_from = measure_from
        self.measure_until = measure_until
        self.latency_us = samples()
        self.service_us = samples()
        self.lag_us = samples()
        self.codes: dict[str, dict[str, int]] = {}
        self.sent = 0
        self.answered = 0
        self.mac_failures = 0
        self.retries = 0
        self.retry_mismatches = 0
        self.unmatched = 0
        self.connections_lost = 0


class Connection(asyncio.Protocol):
    """One terminal's connection: sends what the driver asks, matches answers by seq."""

    __slots__ = ("_codec", "_driver", "_recorder", "outbox", "pending", "script", "transport")

    def __init__(
        self, script: TerminalScript, key: MacKey, recorder: Recorder, driver: Driver
    ) -> None:
        self.script = script
        self._codec = ClientCodec(key)
        self._recorder = recorder
        self._driver = driver
        self.pending: dict[int, PendingEntry] = {}
        self.outbox: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._recorder.connections_lost += 1
        self._driver.lost(self)

    def send(self, scheduled: float, now: float, now_ms: int) -> None:
        """Queue the script's next request; flush() writes the queue."""
        planned = self.script.next_request(now_ms)
        self.pending[planned.seq] = (scheduled, now, planned)
        self.outbox.append(planned.frame)

    def flush(self) -> None:
        outbox = self.outbox
        if outbox and self.transport is not None:
            self.transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
        self.outbox = []

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        codec = self._codec
        codec.receive_data(data)
        try:
            responses = codec.next_responses()
        except RemoteProtocolError:
            if self.transport is not None:
                self.transport.abort()
            return
        recorder = self._recorder
        pending = self.pending
        script = self.script
        measure_from = recorder.measure_from
        measure_until = recorder.measure_until
        in_window = measure_from <= now < measure_until
        matched = 0
        for response, mac_ok in responses:
            entry = pending.pop(response.seq, None)
            if entry is None:
                recorder.unmatched += 1
                continue
            matched += 1
            scheduled, sent, planned = entry
            if not mac_ok:
                recorder.mac_failures += 1
            if planned.expected is not None:
                recorder.retries += 1
            if not script.answered(planned, response):
                recorder.retry_mismatches += 1
            if in_window:
                recorder.answered += 1
            if measure_from <= scheduled < measure_until:
                recorder.latency_us.append(int((now - scheduled) * MICROSECONDS))
                recorder.service_us.append(int((now - sent) * MICROSECONDS))
                by_code = recorder.codes.get(planned.label)
                if by_code is None:
                    by_code = recorder.codes[planned.label] = {}
                by_code[response.code] = by_code.get(response.code, 0) + 1
        self._driver.answered(self, matched, now)


class Driver:
    """Decides when connections send; finishes once sending is over and all answered."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, recorder: Recorder, rng: random.Random
    ) -> None:
        self._loop = loop
        self._recorder = recorder
        self._random = rng
        self.live: list[Connection] = []
        self.outstanding = 0
        self.sending_done = False
        self.done: asyncio.Future[None] = loop.create_future()

    def start(self, connections: list[Connection], now: float) -> None:
        self.live = list(connections)

    def answered(self, connection: Connection, matched: int, now: float) -> None:
        self.outstanding -= matched
        self._check_done()

    def lost(self, connection: Connection) -> None:
        if connection in self.live:
            self.live.remove(connection)
            self.outstanding -= len(connection.pending)
        if not self.live:
            self.sending_done = True
        self._check_done()

    def finish_sending(self) -> None:
        self.sending_done = True
        self._check_done()

    def _check_done(self) -> None:
        if self.sending_done and self.outstanding <= 0 and not self.done.done():
            self.done.set_result(None)


class OpenLoop(Driver):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        recorder: Recorder,
        rng: random.Random,
        *,
        rate_per_second: float,
        poisson: bool,
    ) -> None:
        super().__init__(loop, recorder, rng)
        self._next_time = 0.0
        self._uniform_index = 0
        interval = 1.0 / rate_per_second
        self._gap: Callable[[], float] = (
            (lambda: rng.expovariate(rate_per_second)) if poisson else (lambda: interval)
        )
        self._poisson = poisson

    def start(self, connections: list[Connection], now: float) -> None:
        super().start(connections, now)
        self._next_time = now
        self._tick()

    def answered(self, connection: Connection, matched: int, now: float) -> None:
        self.outstanding -= matched
        self.pump(now)
        self._check_done()

    def _tick(self) -> None:
        self.pump(time.perf_counter())
        if not self.sending_done:
            self._loop.call_later(TICK_SECONDS, self._tick)

    def pump(self, now: float) -> None:
        if self.sending_done:
            return
        if self._next_time <= now:
            self._send_due(now)
        # Not before the window closes, even if the last request went out earlier: the
        # window's CPU times are read at its end.
        if now >= self._recorder.measure_until:
            self.finish_sending()

    def _send_due(self, now: float) -> None:
        """Send every request whose scheduled time has come: one write per connection."""
        next_time = self._next_time
        live = self.live
        count = len(live)
        recorder = self._recorder
        measure_from = recorder.measure_from
        measure_until = end = recorder.measure_until
        gap = self._gap
        randbelow = self._random.randrange
        now_ms = time.time_ns() // 1_000_000
        touched: list[Connection] = []
        sent = 0
        while next_time <= now and next_time < end:
            if self._poisson:
                connection = live[randbelow(count)]
            else:
                connection = live[self._uniform_index % count]
                self._uniform_index += 1
            if not connection.outbox:
                touched.append(connection)
            connection.send(next_time, now, now_ms)
            sent += 1
            if measure_from <= next_time < measure_until:
                recorder.sent += 1
                recorder.lag_us.append(int((now - next_time) * MICROSECONDS))
            next_time += gap()
        self._next_time = next_time
        self.outstanding += sent
        for connection in touched:
            connection.flush()


class ClosedLoop(Driver):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        recorder: Recorder,
        rng: random.Random,
        *,
        depth: int,
    ) -> None:
        super().__init__(loop, recorder, rng)
        self._depth = depth

    def start(self, connections: list[Connection], now: float) -> None:
        super().start(connections, now)
        now_ms = time.time_ns() // 1_000_000
        for connection in connections:
            for _ in range(self._depth):
                connection.send(now, now, now_ms)
            connection.flush()
        self.outstanding += self._depth * len(connections)
        self._loop.call_later(self._recorder.measure_until - now, self.finish_sending)

    def answered(self, connection: Connection, matched: int, now: float) -> None:
        self.outstanding -= matched
        if matched and not self.sending_done and connection.transport is not None:
            if now >= self._recorder.measure_until:
                self.finish_sending()
                return
            now_ms = time.time_ns() // 1_000_000
            for _ in range(matched):
                connection.send(now, now, now_ms)
            connection.flush()
            self.outstanding += matched
            recorder = self._recorder
            if recorder.measure_from <= now:
                recorder.sent += matched
        self._check_done()


class CpuMark(NamedTuple):
    own: float
    server: float | None
    server_main: float | None
    machine: float


def _cpu_mark(server_pid: int | None) -> CpuMark:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    server = server_main = None
    if server_pid is not None:
        server = process_tree_cpu_seconds(server_pid)
        server_main = main_thread_cpu_seconds(server_pid)
    return CpuMark(usage.ru_utime + usage.ru_stime, server, server_main, system_cpu_seconds()[0])


async def generate(spec: LoadSpec) -> LoadResult:
    loop = asyncio.get_running_loop()
    keys = KeyStore.load(Path(spec.data_dir)).terminals
    # QR codes are shown only when asked for: the wallet costs a replay of the journal.
    wallet = wallet_of(Path(spec.data_dir)) if spec.mix.qr_share > 0 else None
    rng = random.Random(spec.seed)
    # Placeholders until the start time is known; set before the first send.
    recorder = Recorder(0.0, 0.0)
    terminals = [(t, Role.GATE) for t in spec.gates] + [(t, Role.POS) for t in spec.pos]
    # Connection i takes cards start+i, start+i+n, ...: together they walk the cards once
    # before any card comes back.
    card_start = spec.card_start
    driver: Driver
    if spec.mode == CLOSED:
        driver = ClosedLoop(loop, recorder, rng, depth=spec.depth)
    else:
        driver = OpenLoop(
            loop,
            recorder,
            rng,
            rate_per_second=spec.rate_per_second,
            poisson=spec.arrivals == "poisson",
        )

    def connection_for(index: int, terminal_id: str, role: Role) -> Connection:
        key = MacKey(keys[terminal_id])
        script = TerminalScript(
            terminal_id,
            role,
            key,
            first_seq=spec.first_seq,
            cards=spec.cards,
            mix=spec.mix,
            rng=random.Random(f"{spec.seed}:{terminal_id}"),
            card_start=card_start + index,
            card_stride=len(terminals),
            wallet=wallet,
        )
        return Connection(script, key, recorder, driver)

    async def connect(index: int, terminal_id: str, role: Role) -> Connection:
        _, protocol = await loop.create_connection(
            lambda: connection_for(index, terminal_id, role), spec.host, spec.port
        )
        return protocol

    async with asyncio.timeout(CONNECT_SECONDS):
        connections = await asyncio.gather(
            *(connect(index, t, role) for index, (t, role) in enumerate(terminals))
        )

    start = time.perf_counter()
    if spec.started_path is not None:
        Path(spec.started_path).touch()
    recorder.measure_from = start + spec.warmup_seconds
    recorder.measure_until = recorder.measure_from + spec.duration_seconds
    cpu_marks: list[CpuMark] = []
    loop.call_later(spec.warmup_seconds, lambda: cpu_marks.append(_cpu_mark(spec.server_pid)))
    loop.call_later(
        spec.warmup_seconds + spec.duration_seconds,
        lambda: cpu_marks.append(_cpu_mark(spec.server_pid)),
    )
    driver.start(connections, start)
    deadline = recorder.measure_until + DRAIN_SECONDS
    await asyncio.wait([driver.done], timeout=deadline - time.perf_counter())
    while len(cpu_marks) < 2 and time.perf_counter() < deadline:
        await asyncio.sleep(TICK_SECONDS)  # the window's closing timer is about to fire
    unanswered = _charge_unanswered(connections, recorder, time.perf_counter())
    cards_used = max(c.script.card_position for c in connections) - card_start
    result = _result(spec, recorder, len(connections), unanswered, cpu_marks, cards_used)
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    return result


def _charge_unanswered(connections: list[Connection], recorder: Recorder, now: float) -> int:
    """Requests still waiting count at the latency they have reached by now: leaving them
    out would flatter the percentiles exactly when the server is failing."""
    unanswered = 0
    for connection in connections:
        for scheduled, sent, _planned in connection.pending.values():
            if recorder.measure_from <= scheduled < recorder.measure_until:
                unanswered += 1
                recorder.latency_us.append(int((now - scheduled) * MICROSECONDS))
                recorder.service_us.append(int((now - sent) * MICROSECONDS))
    return unanswered


def _result(
    spec: LoadSpec,
    recorder: Recorder,
    connections: int,
    unanswered: int,
    cpu_marks: list[CpuMark],
    cards_used: int,
) -> LoadResult:
    duration = spec.duration_seconds
    open_loop = spec.mode != CLOSED
    lag = summarise(recorder.lag_us) if open_loop else None
    unexpected = sum(
        count
        for label, by_code in recorder.codes.items()
        if label in EXPECTED_CODES
        for code, count in by_code.items()
        if code not in EXPECTED_CODES[label]
    )
    if len(cpu_marks) != 2:
        raise RuntimeError("the measured window did not close: the run was cut short")
    before, after = cpu_marks
    return LoadResult(
        mode=spec.mode,
        connections=connections,
        depth=spec.depth if not open_loop else 0,
        offered_rate_per_second=spec.rate_per_second if open_loop else None,
        measured_seconds=duration,
        sent=recorder.sent,
        answered=recorder.answered,
        unanswered=unanswered,
        sent_rate_per_second=recorder.sent / duration,
        achieved_rate_per_second=recorder.answered / duration,
        latency=summarise(recorder.latency_us),
        service=summarise(recorder.service_us),
        lag=lag,
        schedule_kept=lag is None or lag.p99_ms <= LAG_P99_TOLERANCE_MS,
        codes=recorder.codes,
        unexpected_answers=unexpected,
        mac_failures=recorder.mac_failures,
        retries=recorder.retries,
        retry_mismatches=recorder.retry_mismatches,
        unmatched_answers=recorder.unmatched,
        connections_lost=recorder.connections_lost,
        cards_used=cards_used,
        cpu_seconds=after.own - before.own,
        server_cpu_seconds=None
        if after.server is None or before.server is None
        else after.server - before.server,
        server_main_thread_cpu_seconds=None
        if after.server_main is None or before.server_main is None
        else after.server_main - before.server_main,
        machine_cpu_seconds=after.machine - before.machine,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.loadgen SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = msgspec.json.decode(Path(args[0]).read_bytes(), type=LoadSpec)
    result = uvloop.run(generate(spec))
    Path(args[1]).write_bytes(msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
