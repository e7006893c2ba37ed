"""The acquirer and bank core with no I/O: requests in through the real codec, the bank
played by the simulator's BankHost, time moved by hand. Every record the core returns is
kept, so a test can replay the journal into a fresh engine and compare."""

from __future__ import annotations

from protocols.iso8583.codec import IsoCodec, IsoMessage, decode_message, encode_message
from protocols.iso8583.mac import MacKey
from switch.banks.config import BankLink, BanksConfig
from switch.banks.core import Acquirer, Effects
from switch.banks.simulator import BankHost
from switch.banks.state import PaymentState
from switch.config import EngineConfig
from switch.demo import PARTNER_BANKS, DemoSpec, demo_records
from switch.engine import Engine
from switch.journal.records import Record
from switch.keystore import KeyStore
from tests.iso8583.client import decode, encode

T0_MS = 1_796_004_000_000  # Monday 2026-11-30 10:00 in Shiyan
BANKS = tuple(sorted(PARTNER_BANKS))


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver(self, data: bytes) -> None:
        self.frames.append(data)


class Harness:
    def __init__(self, banks: BanksConfig | None = None, cards: int = 32) -> None:
        self.keys = KeyStore()
        self.config = EngineConfig()
        self.banks = banks or BanksConfig(links=[BankLink(bank) for bank in BANKS])
        self.journal: list[Record] = list(
            demo_records(DemoSpec(cards=cards), self.keys, self.config)
        )
        self.engine = self.replayed()
        self.acquirer = Acquirer(self.engine, self.banks)
        self.hosts = {bank: BankHost(bank) for bank in BANKS}
        self.outbox: list[tuple[str, dict[str, str]]] = []
        self.sink = Sink()
        self.now_ms = T0_MS
        self.stan = 0
        for bank in BANKS:
            self.run(self.acquirer.link_up(bank, self.now_ms))

    def replayed(self) -> Engine:
        engine = Engine(self.config, self.keys.terminals)
        for record in self.journal:
            engine.apply(record)
        return engine

    def restart(self) -> None:
        """A new process: the engine from the journal, a new core, links to sign on."""
        self.engine = self.replayed()
        self.acquirer = Acquirer(self.engine, self.banks)
        self.outbox.clear()  # whatever was in flight died with the process
        self.run(self.acquirer.recover(self.now_ms))

    @property
    def state(self) -> PaymentState:
        return self.engine.payments

    def run(self, effects: Effects) -> None:
        self.journal.extend(effects.records)
        for sink, data in effects.answers:
            sink.deliver(data)
        self.outbox.extend(effects.to_banks)

    # -- merchants ---------------------------------------------------------------------------

    def message(self, mti: str, terminal: str = "P0001", **fields: str) -> dict[str, str]:
        self.stan += 1
        out = {"t": mti, "7": "1130020000", "11": f"{self.stan:06d}", "41": terminal.ljust(8)}
        out.update({name.removeprefix("de"): value for name, value in fields.items()})
        return out

    def send(self, request: dict[str, str]) -> dict[str, str] | None:
        """One request; its answer if the core gave one now (a bank request answers later)."""
        terminal = request["41"].strip()
        key = self.keys.terminals[terminal]
        codec = IsoCodec()
        codec.receive_data(encode(request, key))
        before = len(self.sink.frames)
        self.run(self.acquirer.requests(codec.next_messages(), self.sink, self.now_ms))
        return self.answer(before, key)

    def answer(self, before: int, key: bytes) -> dict[str, str] | None:
        if len(self.sink.frames) == before:
            return None
        (frame,) = self.sink.frames[before:]
        fields, mac_ok = decode(frame[2:], key)
        fields["_mac"] = "ok" if mac_ok else "bad"
        return fields

    def last_answer(self, terminal: str = "P0001") -> dict[str, str]:
        fields, _ = decode(self.sink.frames[-1][2:], self.keys.terminals[terminal])
        return fields

    # -- banks -----------------------------------------------------------------------------

    def bank_round(self, *, answer: bool = True) -> int:
        """Every message waiting for a bank reaches its host; the answers come back now
        (answer=False: the bank acts, its answers are lost)."""
        delivered = 0
        while self.outbox:
            bank, fields = self.outbox.pop(0)
            key = MacKey(self.banks.link(bank).mac_key)  # type: ignore[union-attr]
            message = decode_message(encode_message(fields, key)[2:])
            reply = self.hosts[bank].handle(message)
            delivered += 1
            if answer:
                raw = decode_message(encode_message(reply, key)[2:])
                assert isinstance(raw, IsoMessage) and raw.verify(key)
                self.run(self.acquirer.bank_message(bank, raw, self.now_ms))
        return delivered

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.run(self.acquirer.tick(self.now_ms))

    def money(self) -> int:
        cards = list(self.engine.cards)
        held = sum(c.purse_fen + c.medical_fen for c in self.engine.cards.values())
        owed = sum(self.state.positions_fen.values())
        return held + owed + sum(host.total_fen(cards) for host in self.hosts.values())

    def bank_of(self, card: str) -> BankHost:
        return self.hosts[self.engine.cards[card].bank_id]
