"""A metro station at rush hour, as locust users speaking the terminal protocol over TCP.

    .venv/bin/locust -f bench/locustfile.py --headless -u 40 -r 20 -t 60s \\
        --host tcp://127.0.0.1:7700 --onecard-data-dir data --onecard-cards 200000

Each user is one terminal with its own connection and sequence numbers: metro entry gates
tapping passengers in, exit gates tapping out passengers who entered earlier (at any
station), the bus validators outside, and the station shops' POS taking purchases and
balance enquiries. A share of passengers and shoppers (`--onecard-qr-share`, 0.3 by
default) show their e-card's QR code instead of the card: a fresh payment code signed with
the data directory's QR signing key, as the app service would (the e-cards are read from a
copy of the journal when the first user needs them: seconds for a few hundred thousand
cards). The mix, the declines and the retries are bench.mix's, as in the load generator.
Every answer fires locust's request event named "<intent> <code>" (a QR payment's intent is
the card's, prefixed "qr-") with its response time; answers outside what the intent allows,
failed MACs and retries answered differently count as failures. Users beyond the data
directory's terminals of their kind stop at their first task (the demo has one entry and
one exit gate per metro station).

locust runs on gevent, so this file uses plain blocking sockets (which locust
monkey-patches) and never asyncio. One locust process spends far more CPU per request than
the switch does and cannot saturate it: use it for realistic pacing and behaviour, and
`onecard bench` (bench/loadgen.py) for capacity.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from locust import User, between, events, task
from locust.exception import StopUser

from bench.mix import (
    EXPECTED_CODES,
    METRO_ENTRY,
    QR_METRO_ENTRY,
    RETRY,
    Mix,
    Planned,
    QrWallet,
    Role,
    TerminalScript,
)
from bench.wallet import wallet_of
from protocols.errors import RemoteProtocolError
from protocols.terminal import ClientCodec, MacKey, Response
from switch.client import clock_seq
from switch.keystore import KeyStore

DEFAULT_PORT = 7700
RECEIVE_BYTES = 64 * 1024
# A gate gives up on the switch after 300 ms and lets the passenger retry; a load test
# waits longer so that a slow switch shows up as slow answers rather than as errors.
RESPONSE_TIMEOUT_SECONDS = 5.0
REQUEST_TYPE = "onecard"
# Terminal id prefixes of each role in the demo data (switch/demo.py).
PREFIXES = {Role.GATE: "G", Role.METRO_ENTRY: "MI", Role.METRO_EXIT: "MO", Role.POS: "P"}
# Passengers inside the metro whom exit gates may tap out: bounds memory if exits lag.
INSIDE_MAX = 100_000
# A metro ride takes minutes; a short headless run cannot wait that long, but a passenger
# must at least stay inside longer than the network's repeat-tap guard (2 s on M, answered
# 65), or the exit would be refused as a double tap.
RIDE_SECONDS_MIN = 5.0
# Passengers and shoppers who show the e-card's QR code rather than the card. A guess: the
# regulation gives both equal validity, and phones are at hand in a queue.
QR_SHARE = 0.3

log = logging.getLogger("onecard.locust")


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]  # unannotated
def _options(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument(
        "--onecard-data-dir",
        default=os.environ.get("ONECARD_DATA_DIR", "data"),
        help="the switch's data directory, for terminal keys (keys.json)",
    )
    parser.add_argument(
        "--onecard-cards",
        type=int,
        default=int(os.environ.get("ONECARD_CARDS", "1000")),
        help="demo cards the switch holds (onecard demo --cards)",
    )
    parser.add_argument(
        "--onecard-qr-share",
        type=float,
        default=float(os.environ.get("ONECARD_QR_SHARE", str(QR_SHARE))),
        help="share of payments made with the e-card's QR code instead of the card",
    )


class AnswerError(Exception):
    """An answer the switch should not have given."""


class Roster:
    """Terminal ids handed out to users, one user per terminal at a time, and the cards
    inside the metro (tapped in, not yet out)."""

    def __init__(self, data_dir: Path) -> None:
        self.keys = KeyStore.load(data_dir).terminals
        self._data_dir = data_dir
        self._free = {
            role: deque(sorted(t for t in self.keys if t.startswith(prefix)))
            for role, prefix in PREFIXES.items()
        }
        self.inside: deque[tuple[float, str]] = deque(maxlen=INSIDE_MAX)  # (entered, card)
        self._lock = threading.Lock()

    def take(self, role: Role) -> str | None:
        with self._lock:
            free = self._free[role]
            return free.popleft() if free else None

    def give_back(self, role: Role, terminal_id: str) -> None:
        with self._lock:
            self._free[role].append(terminal_id)

    @functools.cached_property
    def wallet(self) -> QrWallet:
        """The e-cards, read when a user first needs them (a replay of the journal)."""
        return wallet_of(self._data_dir)


_rosters: dict[Path, Roster] = {}


def roster_for(data_dir: Path) -> Roster:
    if data_dir not in _rosters:
        _rosters[data_dir] = Roster(data_dir)
    return _rosters[data_dir]


class TerminalLink:
    """One terminal's connection: a request out, its answer back (blocking, gevent-safe)."""

    def __init__(self, host: str, port: int, key: MacKey) -> None:
        self._socket = socket.create_connection((host, port), timeout=RESPONSE_TIMEOUT_SECONDS)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._codec = ClientCodec(key)
        self._ready: deque[tuple[Response, bool]] = deque()

    def request(self, frame: bytes) -> tuple[Response, bool]:
        self._socket.sendall(frame)
        while not self._ready:
            data = self._socket.recv(RECEIVE_BYTES)
            if not data:
                raise ConnectionError("connection closed by the switch")
            self._codec.receive_data(data)
            self._ready.extend(self._codec.next_responses())
        return self._ready.popleft()

    def close(self) -> None:
        self._socket.close()


def _address(host: str | None) -> tuple[str, int]:
    parts = urlsplit(host if host and "//" in host else f"tcp://{host or '127.0.0.1'}")
    return parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT


class TerminalUser(User):
    abstract = True
    role = Role.GATE

    def on_start(self) -> None:
        options = self.environment.parsed_options
        data_dir = Path(getattr(options, "onecard_data_dir", "data"))
        cards = int(getattr(options, "onecard_cards", 1000))
        qr_share = float(getattr(options, "onecard_qr_share", QR_SHARE))
        self._roster = roster_for(data_dir)
        self._script: TerminalScript | None = None
        self._link: TerminalLink | None = None
        terminal_id = self._roster.take(self.role)
        if terminal_id is None:
            # locust does not catch StopUser in on_start; the first task raises it instead.
            log.warning("no free %s terminal in the data directory", self.role)
            return
        self._terminal_id = terminal_id
        key = self._key = MacKey(self._roster.keys[terminal_id])
        self._script = TerminalScript(
            terminal_id,
            self.role,
            key,
            first_seq=clock_seq(),
            cards=cards,
            mix=Mix(qr_share=qr_share),
            rng=random.Random(),
            card_start=random.randrange(cards),
            wallet=self._roster.wallet if qr_share > 0 else None,
        )
        host, port = _address(self.host)
        self._link = TerminalLink(host, port, key)

    def on_stop(self) -> None:
        if self._link is not None:
            self._link.close()
        if self._script is not None:
            self._roster.give_back(self.role, self._terminal_id)

    def send_next(self, card: str | None = None) -> tuple[Planned, Response] | None:
        """Send the script's next request and report it; returns it with its answer."""
        script = self._script
        if script is None:
            raise StopUser()
        link = self._link
        if link is None:
            host, port = _address(self.host)
            link = self._link = TerminalLink(host, port, self._key)
        planned = script.next_request(time.time_ns() // 1_000_000, card)
        started = time.perf_counter()
        try:
            response, mac_ok = link.request(planned.frame)
        except (OSError, RemoteProtocolError) as exc:
            self._fire(planned, "error", started, 0, exc)
            link.close()
            self._link = None  # reconnect on the next task
            return None
        problem = _check(planned, response, mac_ok, script)
        self._fire(planned, response.code, started, len(planned.frame), problem)
        return planned, response

    def _fire(
        self,
        planned: Planned,
        code: str,
        started: float,
        length: int,
        exception: Exception | None,
    ) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=f"{planned.label} {code}",
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            response=None,
            context={"terminal": self._terminal_id, "code": code, "card": planned.card},
            exception=exception,
        )


def _check(
    planned: Planned, response: Response, mac_ok: bool, script: TerminalScript
) -> Exception | None:
    if not mac_ok:
        return AnswerError("answer MAC did not verify")
    if response.seq != planned.seq:
        return AnswerError(f"answer for seq {response.seq}, asked {planned.seq}")
    if not script.answered(planned, response):
        return AnswerError("retry answered differently from the first try")
    allowed = EXPECTED_CODES.get(planned.label)
    if planned.label != RETRY and allowed is not None and response.code not in allowed:
        return AnswerError(f"code {response.code} for {planned.label}")
    return None


class MetroEntryUser(TerminalUser):
    """A station's entry gate at rush hour: a passenger taps in about every second."""

    weight = 2
    role = Role.METRO_ENTRY
    wait_time = between(0.5, 1.5)

    @task
    def tap_in(self) -> None:
        sent = self.send_next()
        if sent is not None:
            planned, response = sent
            if planned.label in (METRO_ENTRY, QR_METRO_ENTRY) and response.code == "00":
                self._roster.inside.append((time.monotonic(), planned.card))


class MetroExitUser(TerminalUser):
    """An exit gate: taps out passengers who came in through an entry gate."""

    weight = 2
    role = Role.METRO_EXIT
    wait_time = between(0.5, 1.5)

    @task
    def tap_out(self) -> None:
        inside = self._roster.inside
        if not inside or time.monotonic() - inside[0][0] < RIDE_SECONDS_MIN:
            return  # nobody has ridden long enough yet
        _entered, card = inside.popleft()
        self.send_next(card)


class BusValidatorUser(TerminalUser):
    """A validator on the bus line outside the station (flat fare)."""

    weight = 6
    role = Role.GATE
    wait_time = between(1.0, 3.0)

    @task
    def tap(self) -> None:
        self.send_next()


class MerchantUser(TerminalUser):
    """A station shop's POS: a purchase or a balance enquiry every few seconds."""

    weight = 1
    role = Role.POS
    wait_time = between(2.0, 6.0)

    @task
    def sell(self) -> None:
        self.send_next()
