"""An engine fed through the real codec, with no I/O: the sans-I/O core under test."""

from __future__ import annotations

from protocols.ecard import BusinessType
from protocols.terminal import ClientCodec, MacKey, Request, Response, Scan, ServerCodec
from protocols.terminal.codec import encode_request
from switch.config import EngineConfig
from switch.demo import DemoSpec, demo_records
from switch.ecard.issue import mint_qr
from switch.engine import Engine
from switch.journal.records import Decision, Record
from switch.keystore import KeyStore

T0_MS = 1_764_400_000_000


class EngineHarness:
    def __init__(self, config: EngineConfig | None = None, cards: int = 16) -> None:
        self.config = config or EngineConfig()
        self.keys = KeyStore()
        self.genesis = demo_records(DemoSpec(cards=cards), self.keys, self.config)
        self.engine = self.fresh_engine()
        self.journal: list[Record] = list(self.genesis)
        self.now_ms = T0_MS

    def fresh_engine(self) -> Engine:
        engine = Engine(self.config, self.keys.terminals)
        for record in self.genesis:
            engine.apply(record)
        return engine

    def replayed_engine(self) -> Engine:
        engine = Engine(self.config, self.keys.terminals)
        for record in self.journal:
            engine.apply(record)
        return engine

    def key(self, terminal_id: str) -> MacKey:
        return MacKey(self.keys.terminals[terminal_id])

    def feed(self, data: bytes, terminal_id: str = "G0001") -> list[tuple[Response, bool]]:
        """Authorise the frames in `data` as one batch; answers with MAC-ok flags."""
        codec = ServerCodec()
        codec.receive_data(data)
        out = self.engine.authorise(codec.next_frames(), self.now_ms, self.journal)
        client = ClientCodec(self.key(terminal_id))
        client.receive_data(out)
        return client.next_responses()

    def send(self, *requests: Request) -> list[Response]:
        data = b"".join(encode_request(r, self.key(r.terminal_id)) for r in requests)
        answers = self.feed(data, requests[0].terminal_id)
        assert all(mac_ok for _, mac_ok in answers)
        return [response for response, _ in answers]

    def one(self, request: Request) -> Response:
        (response,) = self.send(request)
        return response

    def decisions(self) -> list[Decision]:
        return [r for r in self.journal if isinstance(r, Decision)]

    def purse(self, card: str) -> int:
        return self.engine.cards[card].purse_fen

    # -- e-card ----------------------------------------------------------------------------

    def mint(
        self,
        card: str,
        business: BusinessType = BusinessType.PAYMENT,
        *,
        at_ms: int | None = None,
        validity_s: int | None = None,
    ) -> bytes:
        """A QR payload for `card`, minted at `at_ms` (default: now) with the demo keys."""
        return mint_qr(
            self.engine.ecard,
            self.keys.qr_signing,
            card,
            business,
            self.now_ms if at_ms is None else at_ms,
            validity_s=validity_s,
        )

    def scan(self, terminal_id: str, seq: int, qr: bytes, amount_fen: int = 0) -> Response:
        return self.one(Scan(terminal_id, seq, self.now_ms, qr, amount_fen))

    def submit(self, *records: Record) -> None:
        """Administrative records: applied to the engine and journalled, as the switch does."""
        for record in records:
            self.engine.apply(record)
            self.journal.append(record)
