"""A terminal-protocol client over anyio streams (asyncio or trio): for the shell command,
the tests and the load tools. It is what a terminal vendor's client does, in few lines."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType

import anyio
import anyio.abc

from protocols.terminal import (
    Balance,
    ClientCodec,
    DenyListAnswer,
    DenyListRequest,
    Echo,
    MacKey,
    OfflineTap,
    OfflineUpload,
    Purchase,
    Request,
    Response,
    Reversal,
    Scan,
    Tap,
)

RECEIVE_BYTES = 64 * 1024


class ClosedByServer(Exception):
    """The switch closed the connection before answering everything."""


def clock_seq() -> int:
    """A sequence number from the clock (microseconds), for clients that keep no counter:
    it still increases across runs, as the idempotency window needs."""
    return time.time_ns() // 1000


class TerminalClient:
    def __init__(
        self, stream: anyio.abc.ByteStream, terminal_id: str, key: bytes, first_seq: int = 1
    ) -> None:
        self.stream = stream
        self.terminal_id = terminal_id
        self.codec = ClientCodec(MacKey(key))
        self.next_seq = first_seq
        self.mac_failures = 0
        # Seqs whose answer failed its MAC: a terminal takes those as declines, whatever
        # code they carry.
        self.unverified: set[int] = set()
        self._ready: deque[Response] = deque()

    @classmethod
    async def connect(
        cls, host: str, port: int, terminal_id: str, key: bytes, first_seq: int = 1
    ) -> TerminalClient:
        stream = await anyio.connect_tcp(host, port)
        return cls(stream, terminal_id, key, first_seq)

    async def __aenter__(self) -> TerminalClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stream.aclose()

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def _now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    # -- building requests (each takes the next sequence number unless given one) --------

    def tap(self, card: str, seq: int | None = None) -> Tap:
        return Tap(self.terminal_id, seq or self.take_seq(), self._now_ms(), card)

    def purchase(self, card: str, amount_fen: int, seq: int | None = None) -> Purchase:
        return Purchase(self.terminal_id, seq or self.take_seq(), self._now_ms(), card, amount_fen)

    def reversal(self, original_seq: int, seq: int | None = None) -> Reversal:
        return Reversal(self.terminal_id, seq or self.take_seq(), self._now_ms(), original_seq)

    def balance(self, card: str, seq: int | None = None) -> Balance:
        return Balance(self.terminal_id, seq or self.take_seq(), self._now_ms(), card)

    def denylist(
        self, since_version: int, cursor: str = "", seq: int | None = None
    ) -> DenyListRequest:
        return DenyListRequest(
            self.terminal_id, seq or self.take_seq(), self._now_ms(), since_version, cursor
        )

    def offline(self, taps: Sequence[OfflineTap], seq: int | None = None) -> OfflineUpload:
        return OfflineUpload(self.terminal_id, seq or self.take_seq(), self._now_ms(), list(taps))

    def scan(self, qr: bytes, amount_fen: int = 0, stop: str = "", seq: int | None = None) -> Scan:
        return Scan(self.terminal_id, seq or self.take_seq(), self._now_ms(), qr, amount_fen, stop)

    def echo(self, seq: int | None = None) -> Echo:
        return Echo(self.terminal_id, seq or self.take_seq(), self._now_ms())

    # -- talking ---------------------------------------------------------------------------

    async def send(self, requests: Sequence[Request]) -> None:
        await self.stream.send(b"".join(self.codec.send(r) for r in requests))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive(self) -> Response:
        """The next answer; counts (and still returns) answers whose MAC fails."""
        while not self._ready:
            try:
                data = await self.stream.receive(RECEIVE_BYTES)
            except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                raise ClosedByServer("connection closed by the switch") from exc
            self.codec.receive_data(data)
            for response, mac_ok in self.codec.next_responses():
                if not mac_ok:
                    self.mac_failures += 1
                    self.unverified.add(response.seq)
                self._ready.append(response)
        return self._ready.popleft()

    async def denylist_page(self, since_version: int, cursor: str = "") -> DenyListAnswer:
        request = self.denylist(since_version, cursor)
        self.codec.expect_denylist(request.seq)
        answer = await self.request(request)
        assert isinstance(answer, DenyListAnswer)
        return answer

    async def request(self, request: Request) -> Response:
        await self.send([request])
        return await self.receive()

    async def pipeline(self, requests: Sequence[Request]) -> dict[int, Response]:
        """Send all at once; answers by sequence number (they may come in any order)."""
        await self.send(requests)
        answers: dict[int, Response] = {}
        while len(answers) < len(requests):
            response = await self.receive()
            answers[response.seq] = response
        return answers
