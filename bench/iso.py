"""ISO 8583 mode of the bench: `python -m bench.iso` (docs/performance.md, "ISO 8583").

Two measurements:

1. per message, in process: what pyiso8583 costs to decode and encode a purchase next to
   what the acquirer core costs to decide it, to tell whether the codec dominates;
2. end to end: the switch (`onecard run --demo --iso-port`) and the demo bank hosts
   (`onecard banksim`) as child processes, and pipelined pyiso8583 clients sending
   purchases from the transit purse (decided in house) or from the bank account (a round
   trip to the simulated bank) for a fixed time; throughput and latency percentiles.

Everything runs on this machine's loopback; the request loops are bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import iso8583

from protocols.iso8583.codec import IsoCodec, encode_message
from protocols.iso8583.mac import MacKey
from protocols.iso8583.spec import SPEC
from switch.banks.config import BankLink, BanksConfig
from switch.banks.core import Acquirer
from switch.config import EngineConfig
from switch.demo import PARTNER_BANKS, DemoSpec, demo_records
from switch.engine import Engine
from switch.keystore import KeyStore

HEADER_BYTES = 2
ISO_LINE = re.compile(rb"onecard: ISO 8583 on [\d.]+:(\d+)")
# Bounds: every wait on a child process, and the longest run allowed.
CHILD_SECONDS_MAX = 30
RUN_SECONDS_MAX = 120


def _purchase(terminal: str, stan: int, card: str, fen: int, account: str) -> dict[str, str]:
    return {
        "t": "0200",
        "2": card,
        "3": f"00{account}00",
        "4": f"{fen:012d}",
        "7": "1130020000",
        "11": f"{stan % 1_000_000:06d}",
        "41": terminal.ljust(8),
        "49": "156",
    }


def per_message(count: int) -> dict[str, float]:
    """Microseconds per message for each step, in this process."""
    keys = KeyStore()
    records = demo_records(DemoSpec(cards=1000, pos=8), keys, EngineConfig())
    engine = Engine(EngineConfig(), keys.terminals)
    for record in records:
        engine.apply(record)
    acquirer = Acquirer(engine, BanksConfig(links=[BankLink(b) for b in PARTNER_BANKS]))
    key = MacKey(keys.terminals["P0001"])
    frames = [
        encode_message(_purchase("P0001", n, f"X{1 + n % 900:08d}", 1, "96"), key)
        for n in range(1, count + 1)
    ]

    class Sink:
        def deliver(self, data: bytes) -> None:
            pass

    sink = Sink()
    started = time.perf_counter()
    for frame in frames:
        iso8583.decode(frame[HEADER_BYTES:], SPEC)
    decode_us = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    fields = _purchase("P0001", 1, "X00000001", 1, "96")
    for _ in range(count):
        encode_message(fields, key)
    encode_us = (time.perf_counter() - started) / count * 1e6
    codec = IsoCodec()
    codec.receive_data(b"".join(frames))
    messages = codec.next_messages()
    now = 1_796_004_000_000
    started = time.perf_counter()
    effects = acquirer.requests(messages, sink, now)
    whole_us = (time.perf_counter() - started) / count * 1e6
    assert len(effects.answers) == count
    return {
        "pyiso8583 decode": decode_us,
        "pyiso8583 encode (with MAC)": encode_us,
        "core: check, decide, journal record, encode answer": whole_us,
    }


@contextlib.contextmanager
def _child(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out)
        try:
            yield process
        finally:
            process.terminate()
            process.wait(CHILD_SECONDS_MAX)


def _wait_line(process: subprocess.Popen[bytes], pattern: re.Pattern[bytes]) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + CHILD_SECONDS_MAX
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = pattern.search(line)
        if match:
            return int(match[1])
        if not line and process.poll() is not None:
            break
    raise RuntimeError("child did not start; see its log")


async def _client(
    port: int, terminal: str, key: bytes, account: str, depth: int, until: float, out: list[float]
) -> None:
    mac_key = MacKey(key)
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        codec = IsoCodec()
        stan = 0
        sent: dict[str, float] = {}
        while time.perf_counter() < until or sent:
            while len(sent) < depth and time.perf_counter() < until:
                stan += 1
                request = _purchase(terminal, stan, f"X{10 + stan % 900:08d}", 1, account)
                sent[request["11"]] = time.perf_counter()
                await stream.send(encode_message(request, mac_key))
            codec.receive_data(await stream.receive())
            for message in codec.next_messages():
                started = sent.pop(getattr(message, "fields", {}).get("11", ""), None)
                if started is not None:
                    out.append(time.perf_counter() - started)


def end_to_end(seconds: float, connections: int, depth: int, account: str) -> dict[str, float]:
    seconds = min(seconds, RUN_SECONDS_MAX)
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        base = [sys.executable, "-m", "switch"]
        bank_log, switch_log = data / "banksim.log", data / "switch.log"
        with (
            _child([*base, "banksim"], bank_log),
            _child(
                [
                    *(*base, "--data-dir", str(data / "d"), "run", "--demo"),
                    *("--pos", str(connections), "--port", "0", "--metrics-port", "0"),
                    *("--iso-port", "0", "--api-port", "0"),
                ],
                switch_log,
            ) as switch,
        ):
            port = _wait_line(switch, ISO_LINE)
            keys = KeyStore.load(data / "d")
            time.sleep(1.0)  # the bank links sign on
            latencies: list[float] = []
            until = time.perf_counter() + seconds

            async def run() -> None:
                async with anyio.create_task_group() as group:
                    for number in range(1, connections + 1):
                        terminal = f"P{number:04d}"
                        group.start_soon(
                            _client,
                            port,
                            terminal,
                            keys.terminals[terminal],
                            account,
                            depth,
                            until,
                            latencies,
                        )

            started = time.perf_counter()
            anyio.run(run)
            elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000

    return {
        "requests": len(latencies),
        "per second": len(latencies) / elapsed,
        "p50 ms": percentile(0.5),
        "p99 ms": percentile(0.99),
        "max ms": latencies[-1] * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.iso", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--depth", type=int, default=16, help="requests in flight per connection")
    parser.add_argument("--messages", type=int, default=20_000, help="for the per-message figures")
    args = parser.parse_args(argv)
    for step, micros in per_message(args.messages).items():
        print(f"{step:55s} {micros:8.1f} µs/message")
    for label, account in (("purse (in house)", "96"), ("bank account (simulated bank)", "00")):
        result = end_to_end(args.seconds, args.connections, args.depth, account)
        figures = "  ".join(f"{name} {value:,.1f}" for name, value in result.items())
        print(f"{label:32s} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
