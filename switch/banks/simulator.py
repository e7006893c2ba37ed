"""A partner bank's host, speaking the switch's ISO 8583 (docs/iso8583.md section 7): for
the tests, the demo (`onecard banksim`) and the bench.

`BankHost` is the bank, sans-I/O: accounts by card number, holds and postings by RRN
(DE37), and the answer to each message. Reversals are idempotent and leave a tombstone, so
an original that reaches the bank after its reversal is refused rather than booked.

`BankSimulator` serves a BankHost over TCP and misbehaves on request: latency, declines,
answers withheld (the switch times out; `release()` sends them late), requests dropped,
reversals ignored, and the whole host going down and coming back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anyio
import anyio.abc

from protocols.codes import ResponseCode
from protocols.iso8583.codec import IsoCodec, IsoMessage, encode_message
from protocols.iso8583.mac import MacKey
from protocols.iso8583.messages import (
    AMOUNT_DIGITS,
    Account,
    AmountType,
    Mti,
    TransactionType,
    additional_amounts,
    base_mti,
    response_fields,
)

log = logging.getLogger("onecard.banksim")

C = ResponseCode
# Every card's account starts with ¥10,000 unless a test says otherwise.
BALANCE_FEN_DEFAULT = 1_000_000
RECEIVE_BYTES = 64 * 1024


@dataclass
class BankHost:
    bank_id: str
    balance_fen_default: int = BALANCE_FEN_DEFAULT
    balances: dict[str, int] = field(default_factory=dict)
    holds: dict[int, tuple[str, int]] = field(default_factory=dict)  # RRN → (card, fen)
    posted: dict[int, tuple[str, int]] = field(default_factory=dict)  # RRN → (card, fen)
    reversed: set[int] = field(default_factory=set)
    declines: dict[str, str] = field(default_factory=dict)  # card → code to answer
    received: list[tuple[str, int]] = field(default_factory=list)  # (MTI, RRN), in order

    def balance(self, card: str) -> int:
        return self.balances.get(card, self.balance_fen_default)

    def available(self, card: str) -> int:
        held = sum(fen for holder, fen in self.holds.values() if holder == card)
        return self.balance(card) - held

    def total_fen(self, cards: list[str]) -> int:
        """The ledger balances of `cards` (holds are not money moved)."""
        return sum(self.balance(card) for card in cards)

    def _move(self, card: str, fen: int) -> None:
        self.balances[card] = self.balance(card) + fen

    def handle(self, message: IsoMessage) -> dict[str, str]:
        """The bank's answer to one message (already MAC-checked)."""
        fields = message.fields
        mti = base_mti(message.mti)
        rrn_text = fields.get("37", "")
        rrn = int(rrn_text) if rrn_text.isdigit() else -1
        self.received.append((message.mti, rrn))
        if mti == Mti.NETWORK:
            return response_fields(fields, C.APPROVED, {})
        card = fields.get("2", "")
        amount = int(fields.get("4", "0") or 0)
        if mti in (Mti.REVERSAL, Mti.REVERSAL_ADVICE):
            return response_fields(fields, self._reverse(rrn), {})
        if mti in (Mti.FINANCIAL_ADVICE, Mti.AUTHORISATION_ADVICE):
            self._advice(mti, rrn, card, amount)
            return response_fields(fields, C.APPROVED, {})
        code = self._request(mti, fields.get("3", "000000")[:2], rrn, card, amount)
        extra = {}
        if code == C.APPROVED and fields.get("3", "")[:2] == TransactionType.BALANCE:
            extra["54"] = additional_amounts(
                [
                    (Account.DEFAULT, AmountType.LEDGER_BALANCE, self.balance(card)),
                    (Account.DEFAULT, AmountType.AVAILABLE_BALANCE, self.available(card)),
                ]
            )
        return response_fields(fields, code, extra)

    def _request(self, mti: str, transaction: str, rrn: int, card: str, amount: int) -> str:
        if rrn in self.reversed or rrn in self.posted or rrn in self.holds:
            return C.INVALID_TRANSACTION.value  # reversed before it arrived, or a replay
        if card in self.declines:
            return self.declines[card]
        if transaction == TransactionType.BALANCE:
            return C.APPROVED.value
        if amount <= 0 or amount >= 10**AMOUNT_DIGITS:
            return C.INVALID_AMOUNT.value
        if self.available(card) < amount:
            return C.INSUFFICIENT_FUNDS.value
        if mti == Mti.AUTHORISATION:
            self.holds[rrn] = (card, amount)
        else:
            self._move(card, -amount)
            self.posted[rrn] = (card, amount)
        return C.APPROVED.value

    def _advice(self, mti: str, rrn: int, card: str, amount: int) -> None:
        """Advices are never refused: the switch has approved already. Repeats do nothing."""
        if rrn in self.reversed:
            return
        if mti == Mti.AUTHORISATION_ADVICE:
            self.holds.setdefault(rrn, (card, amount))
            return
        if rrn in self.posted:
            return  # a repeat
        hold = self.holds.pop(rrn, None)  # a completion posts what its hold reserved
        if hold is not None:
            card = hold[0]
        self._move(card, -amount)
        self.posted[rrn] = (card, amount)

    def _reverse(self, rrn: int) -> str:
        if rrn in self.reversed:
            return C.APPROVED.value  # done already: a repeat
        self.reversed.add(rrn)
        posted = self.posted.pop(rrn, None)
        hold = self.holds.pop(rrn, None)
        if posted is not None:
            self._move(posted[0], posted[1])
        if posted is None and hold is None:
            return C.ORIGINAL_NOT_FOUND.value  # never booked: the tombstone keeps it out
        return C.APPROVED.value


@dataclass
class Behaviour:
    """How the simulated host misbehaves; tests change it while it runs."""

    latency_s: float = 0.0
    withhold: set[str] = field(default_factory=set)  # cards: book, answer only on release()
    drop: set[str] = field(default_factory=set)  # cards: neither book nor answer
    ignore_reversals: bool = False  # reversals neither booked nor answered
    down: bool = False


class BankSimulator:
    def __init__(self, host: BankHost, key: bytes, behaviour: Behaviour | None = None) -> None:
        self.host = host
        self.key = MacKey(key)
        self.behaviour = behaviour or Behaviour()
        self.port = 0
        # One lock per connection: answers are written by the connection's reply tasks and
        # by release() in the caller's task, and two tasks must never write one stream at
        # once (trio and anyio refuse it with BusyResourceError, which took the whole
        # simulator down when a late answer met the answer to a reversal).
        self._streams: dict[anyio.abc.SocketStream, anyio.Lock] = {}
        self._withheld: list[tuple[anyio.abc.SocketStream, dict[str, str]]] = []
        self.signed_on = anyio.Event()
        self.sign_ons_total = 0

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started(self.port)
            await listener.serve(self._handle)

    async def go_down(self) -> None:
        """Drop every connection and refuse new ones until come_up()."""
        self.behaviour.down = True
        for stream in list(self._streams):
            await stream.aclose()

    def come_up(self) -> None:
        self.behaviour.down = False
        self.signed_on = anyio.Event()

    async def release(self) -> int:
        """Send the withheld answers (late, from the switch's point of view)."""
        withheld, self._withheld = self._withheld, []
        for stream, answer in withheld:
            await self._send(stream, answer)
        return len(withheld)

    @property
    def withheld(self) -> int:
        return len(self._withheld)

    async def _send(self, stream: anyio.abc.SocketStream, answer: dict[str, str]) -> None:
        writing = self._streams.get(stream)
        try:
            if writing is None:
                raise anyio.ClosedResourceError
            async with writing:
                await stream.send(encode_message(answer, self.key))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.info("%s: answer lost with its connection", self.host.bank_id)

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        if self.behaviour.down:
            await stream.aclose()
            return
        self._streams[stream] = anyio.Lock()
        codec = IsoCodec()
        try:
            async with anyio.create_task_group() as replies:
                try:
                    while True:
                        codec.receive_data(await stream.receive(RECEIVE_BYTES))
                        for message in codec.next_messages():
                            if not isinstance(message, IsoMessage) or not message.verify(self.key):
                                continue  # a bank host ignores what it cannot authenticate
                            answer = self._answer(stream, message)
                            if answer is not None:
                                replies.start_soon(self._reply, stream, answer)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
        finally:
            self._streams.pop(stream, None)
            await stream.aclose()

    def _answer(self, stream: anyio.abc.SocketStream, message: IsoMessage) -> dict[str, str] | None:
        behaviour = self.behaviour
        mti = base_mti(message.mti)
        card = message.fields.get("2", "")
        if mti in (Mti.REVERSAL, Mti.REVERSAL_ADVICE) and behaviour.ignore_reversals:
            self.host.received.append((message.mti, -1))  # seen, neither booked nor answered
            return None
        if mti in (Mti.AUTHORISATION, Mti.FINANCIAL) and card in behaviour.drop:
            return None
        answer = self.host.handle(message)
        if mti == Mti.NETWORK:
            self.sign_ons_total += message.fields.get("70") == "001"
            self.signed_on.set()
        if mti in (Mti.AUTHORISATION, Mti.FINANCIAL) and card in behaviour.withhold:
            self._withheld.append((stream, answer))
            return None
        return answer

    async def _reply(self, stream: anyio.abc.SocketStream, answer: dict[str, str]) -> None:
        if self.behaviour.latency_s:
            await anyio.sleep(self.behaviour.latency_s)
        await self._send(stream, answer)
