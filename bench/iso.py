"""ISO 8583 mode of the bench: `onecard bench --iso`, or `python -m bench.iso`
(docs/performance.md, "ISO 8583"). Every figure comes with one measured in the same run to
compare it with:

1. the codec, in process: our codec (protocols.iso8583) against pyiso8583, the reference,
   decoding and encoding (with its MAC) the same purchase, and what the acquirer core
   costs to decide one, to tell whether the codec dominates;
2. end to end: the switch (`onecard run --demo --iso-port`) with the demo bank hosts
   (`onecard banksim`), and the ISO baseline (bench/iso_baseline.py: the same codec, a
   fixed approval, nothing else), each as a child process, under pipelined clients sending
   purchases from the transit purse (decided in house) or the bank account (a round trip
   to the simulated bank) for a fixed time; throughput and latency percentiles, and the
   switch's figures as ratios of the baseline's.

Everything runs on this machine's loopback; the request loops are bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import iso8583
import msgspec

from bench.servers import BenchError
from protocols.iso8583.codec import IsoCodec, encode_message
from protocols.iso8583.fields import decode_fields
from protocols.iso8583.mac import MAC_SIZE, MacKey
from protocols.iso8583.spec import SPEC
from switch.banks.config import BankLink, BanksConfig
from switch.banks.core import Acquirer
from switch.config import EngineConfig
from switch.demo import PARTNER_BANKS, DemoSpec, demo_records
from switch.engine import Engine
from switch.keystore import KeyStore

HEADER_BYTES = 2
# The line the switch and the baseline print once listening.
ISO_LINE = re.compile(rb"(?:onecard|baseline): ISO 8583 on [\d.]+:(\d+)")
# Bounds: every wait on a child process, the longest run allowed, and how long clients
# wait for the answers still owed when a run's time is up.
CHILD_SECONDS_MAX = 30
RUN_SECONDS_MAX = 120
DRAIN_SECONDS_MAX = 10
# The codec figures are the best of this many rounds: on a shared machine the best round
# is the one least disturbed by other work.
CODEC_ROUNDS = 5
SWITCH = "switch"
BASELINE = "baseline"
PURSE = "96"  # decided in house
BANK = "00"  # a round trip to the simulated bank


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


class CodecFigures(msgspec.Struct, frozen=True):
    """Microseconds per purchase, best of CODEC_ROUNDS, all in one process."""

    ours_decode_us: float
    reference_decode_us: float  # pyiso8583
    ours_encode_us: float  # with the MAC
    reference_encode_us: float  # pyiso8583, the MAC computed the same way
    core_us: float  # the acquirer core: check, decide, journal record, encode the answer


class EndToEnd(msgspec.Struct, frozen=True):
    server: str  # SWITCH | BASELINE
    account: str  # PURSE | BANK
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def _best_us(action: Callable[[], object], count: int) -> float:
    best = float("inf")
    for _ in range(CODEC_ROUNDS):
        started = time.perf_counter()
        for _ in range(count):
            action()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def _reference_encode(fields: dict[str, str], key: bytes) -> bytes:
    """What a merchant's pyiso8583 client does: encode with a zero MAC, then sign."""
    raw, _ = iso8583.encode({**fields, "64": "00" * MAC_SIZE}, SPEC)
    body = bytes(raw[:-MAC_SIZE])
    return body + hmac.new(key, body, hashlib.sha256).digest()[:MAC_SIZE]


def per_message(count: int) -> CodecFigures:
    """Our codec against pyiso8583 on the same purchase, and the core, in this process."""
    keys = KeyStore()
    records = demo_records(DemoSpec(cards=1000, pos=8), keys, EngineConfig())
    engine = Engine(EngineConfig(), keys.terminals)
    for record in records:
        engine.apply(record)
    acquirer = Acquirer(engine, BanksConfig(links=[BankLink(b) for b in PARTNER_BANKS]))
    key_bytes = keys.terminals["P0001"]
    key = MacKey(key_bytes)
    fields = _purchase("P0001", 1, "X00000001", 1, PURSE)
    raw = encode_message(fields, key)[HEADER_BYTES:]
    assert decode_fields(raw) == iso8583.decode(raw, SPEC)[0], "the codecs disagree"
    assert _reference_encode(fields, key_bytes) == raw, "the codecs disagree"
    figures = {
        "ours_decode_us": _best_us(lambda: decode_fields(raw), count),
        "reference_decode_us": _best_us(lambda: iso8583.decode(raw, SPEC), count),
        "ours_encode_us": _best_us(lambda: encode_message(fields, key), count),
        "reference_encode_us": _best_us(lambda: _reference_encode(fields, key_bytes), count),
    }

    class Sink:
        def deliver(self, data: bytes) -> None:
            pass

    frames = [
        encode_message(_purchase("P0001", n, f"X{1 + n % 900:08d}", 1, PURSE), key)
        for n in range(1, count + 1)
    ]
    codec = IsoCodec()
    codec.receive_data(b"".join(frames))
    messages = codec.next_messages()
    started = time.perf_counter()
    effects = acquirer.requests(messages, Sink(), 1_796_004_000_000)
    core_us = (time.perf_counter() - started) / count * 1e6
    assert len(effects.answers) == count
    return CodecFigures(core_us=core_us, **figures)


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
    raise BenchError("child did not start; see its log")


async def _client(
    port: int, terminal: str, key: bytes, account: str, depth: int, until: float, out: list[float]
) -> None:
    mac_key = MacKey(key)
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        codec = IsoCodec()
        stan = 0
        sent: dict[str, float] = {}
        with anyio.move_on_after(until - time.perf_counter() + DRAIN_SECONDS_MAX):
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


def _load(
    port: int, keys: KeyStore, seconds: float, connections: int, depth: int, account: str
) -> tuple[list[float], float]:
    """Pipelined clients for `seconds`: every answer's latency, and the time taken."""
    latencies: list[float] = []
    until = time.perf_counter() + seconds

    async def run() -> None:
        async with anyio.create_task_group() as group:
            for number in range(1, connections + 1):
                terminal = f"P{number:04d}"
                key = keys.terminals[terminal]
                group.start_soon(_client, port, terminal, key, account, depth, until, latencies)

    started = time.perf_counter()
    anyio.run(run)
    return latencies, time.perf_counter() - started


def _figures(server: str, account: str, latencies: list[float], elapsed: float) -> EndToEnd:
    if not latencies:
        raise BenchError(f"{server}: no answer in the whole run; see its log")
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000

    return EndToEnd(
        server,
        account,
        len(latencies),
        len(latencies) / elapsed,
        percentile(0.5),
        percentile(0.99),
        latencies[-1] * 1000,
    )


def end_to_end(seconds: float, connections: int, depth: int) -> list[EndToEnd]:
    """The baseline, then the switch, under the same clients: purse purchases on both,
    bank-account purchases on the switch (the baseline has no bank)."""
    seconds = min(seconds, RUN_SECONDS_MAX)
    out = []
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        base = [sys.executable, "-m", "switch"]
        with _child([sys.executable, "-m", "bench.iso_baseline"], data / "baseline.log") as bare:
            port = _wait_line(bare, ISO_LINE)
            # The baseline checks no MAC: any keys will do, as long as there are enough.
            keys = KeyStore()
            for number in range(1, connections + 1):
                keys.terminals[f"P{number:04d}"] = bytes(16)
            out.append(
                _figures(BASELINE, PURSE, *_load(port, keys, seconds, connections, depth, PURSE))
            )
        with (
            _child([*base, "banksim"], data / "banksim.log"),
            _child(
                [
                    *(*base, "--data-dir", str(data / "d"), "run", "--demo"),
                    *("--pos", str(connections), "--port", "0", "--metrics-port", "0"),
                    *("--iso-port", "0", "--api-port", "0"),
                ],
                data / "switch.log",
            ) as switch,
        ):
            port = _wait_line(switch, ISO_LINE)
            keys = KeyStore.load(data / "d")
            time.sleep(1.0)  # the bank links sign on
            for account in (PURSE, BANK):
                latencies, elapsed = _load(port, keys, seconds, connections, depth, account)
                out.append(_figures(SWITCH, account, latencies, elapsed))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.iso", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--depth", type=int, default=16, help="requests in flight per connection")
    parser.add_argument("--messages", type=int, default=20_000, help="for the codec figures")
    args = parser.parse_args(argv)
    from bench.report import iso_markdown  # noqa: PLC0415 (matplotlib only when used)

    codec = per_message(args.messages)
    runs = end_to_end(args.seconds, args.connections, args.depth)
    print(iso_markdown(codec, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
