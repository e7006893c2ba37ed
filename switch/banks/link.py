"""One partner-bank link: the switch as ISO 8583 client of the bank's host.

Connect, sign on (0800/001), then read answers, write what the core sends, and probe with
an echo (0800/301) every `echo_interval_s`; an echo or sign-on unanswered within the
link's timeout, a broken connection or a framing error takes the link down, and it is
reconnected with backoff. Up and down are reported to the core, which stands in while a
link is down and drains the store-and-forward queue when it is back.

The bank's answers must verify with the link's key: one that does not is dropped and
counted (the request it claims to answer then times out and is reversed, which is safe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from protocols.errors import ProtocolError
from protocols.iso8583.codec import IsoCodec, IsoMessage, encode_message
from protocols.iso8583.mac import MacKey
from protocols.iso8583.messages import (
    STAN_MODULUS,
    Mti,
    NetworkCode,
    base_mti,
    transmission_time,
)
from switch.banks.config import BankLink

if TYPE_CHECKING:
    from switch.banks.runtime import PaymentsRuntime

log = logging.getLogger("onecard.banks")

# Reconnection backoff: quick after a blip, at most every 30 s against a host that is down.
RECONNECT_S_MIN = 0.2
RECONNECT_S_MAX = 30.0
RECEIVE_BYTES = 64 * 1024
# Messages waiting to be written to one bank: everything the core may have outstanding
# there (its pending limit, one queue entry) plus network management.
OUTBOX_MAX = 512


class LinkFailed(Exception):
    """The bank did not answer a sign-on or echo in time, or refused the sign-on."""


class BankLinkRunner:
    def __init__(self, link: BankLink, runtime: PaymentsRuntime, clock: Callable[[], int]) -> None:
        self.link = link
        self.runtime = runtime
        self.clock = clock
        self.key = MacKey(link.mac_key)
        self._send: MemoryObjectSendStream[bytes] | None = None
        self._stan = 0
        self._network_answered: anyio.Event | None = None
        self._network_code = ""

    def send_nowait(self, fields: dict[str, str]) -> None:
        """Queue a message for the bank; dropped when the link is down (the core's timers
        turn that into a timeout or a retry)."""
        send = self._send
        if send is None:
            return
        try:
            send.send_nowait(encode_message(fields, self.key))
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            log.warning("bank %s: outbox full or closed; message dropped", self.link.id)

    async def run(self) -> None:
        backoff = RECONNECT_S_MIN
        while True:
            try:
                with anyio.fail_after(self.link.timeout_ms / 1000):
                    stream = await anyio.connect_tcp(self.link.host, self.link.port)
            except (OSError, TimeoutError) as exc:
                log.debug("bank %s: connect failed: %s", self.link.id, exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_S_MAX)
                continue
            backoff = RECONNECT_S_MIN
            try:
                await self._session(stream)
            except* (
                OSError,
                TimeoutError,
                LinkFailed,
                ProtocolError,
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ) as lost:
                reason = lost.exceptions[0]
                log.warning("bank %s: link lost: %r", self.link.id, reason)
            finally:
                self._send = None
                self.runtime.dispatch(self.runtime.acquirer.link_down(self.link.id, self.clock()))
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
            await anyio.sleep(RECONNECT_S_MIN)

    def _network(self, code: NetworkCode) -> bytes:
        self._stan = (self._stan + 1) % STAN_MODULUS
        fields = {
            "t": Mti.NETWORK,
            "7": transmission_time(self.clock()),
            "11": f"{self._stan:06d}",
            "41": "ONECARD ",
            "70": code,
        }
        return encode_message(fields, self.key)

    async def _ask(self, stream: anyio.abc.ByteStream, code: NetworkCode) -> None:
        """Send a network message and wait for its 0810 (the reader task sees it)."""
        answered = self._network_answered = anyio.Event()
        await stream.send(self._network(code))
        with anyio.move_on_after(self.link.timeout_ms / 1000):
            await answered.wait()
        if not answered.is_set():
            raise LinkFailed(f"no answer to {code.name.lower()} within {self.link.timeout_ms} ms")
        if self._network_code != "00":
            raise LinkFailed(f"{code.name.lower()} answered {self._network_code}")

    async def _session(self, stream: anyio.abc.SocketStream) -> None:
        send, receive = anyio.create_memory_object_stream[bytes](OUTBOX_MAX)
        codec = IsoCodec()
        async with anyio.create_task_group() as group:
            group.start_soon(self._read, stream, codec)
            await self._ask(stream, NetworkCode.SIGN_ON)
            self._send = send
            self.runtime.dispatch(self.runtime.acquirer.link_up(self.link.id, self.clock()))
            group.start_soon(self._write, stream, receive)
            try:
                while True:
                    await anyio.sleep(self.link.echo_interval_s)
                    await self._ask(stream, NetworkCode.ECHO)
            finally:
                group.cancel_scope.cancel()

    async def _write(
        self, stream: anyio.abc.ByteStream, receive: anyio.abc.ObjectReceiveStream[bytes]
    ) -> None:
        async with receive:
            async for data in receive:
                await stream.send(data)

    async def _read(self, stream: anyio.abc.ByteStream, codec: IsoCodec) -> None:
        while True:
            codec.receive_data(await stream.receive(RECEIVE_BYTES))
            for message in codec.next_messages():
                if not isinstance(message, IsoMessage):
                    raise message.error  # the stream is not one we can trust any more
                if not message.verify(self.key):
                    self.runtime.acquirer.statistics.bad_mac_replies_total += 1
                    log.error("bank %s: answer with a bad MAC dropped", self.link.id)
                    continue
                if base_mti(message.mti) == Mti.NETWORK_RESPONSE:
                    self._network_code = message.fields.get("39", "")
                    if self._network_answered is not None:
                        self._network_answered.set()
                    continue
                acquirer = self.runtime.acquirer
                self.runtime.dispatch(acquirer.bank_message(self.link.id, message, self.clock()))
