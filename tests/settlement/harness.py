"""A day at the switch for settlement tests: the real engine decides taps and purchases,
settlement's records are submitted as the switch submits them, and the journal is written
in its real on-disk format for settlement to read back."""

from __future__ import annotations

import itertools
from pathlib import Path

from protocols.terminal import OfflineTap, OfflineUpload, Purchase, Response, Reversal, Tap
from settlement.config import Funder, PayeeAccount, SettlementConfig
from settlement.cycle import close_record
from settlement.records import CycleClosed, SubsidyCredit, SubsidyCredited
from settlement.synthetic import SegmentWriter
from switch.banks.records import IsoPayment
from switch.engine import Engine
from switch.journal.records import Record
from switch.keystore import KeyStore
from switch.lifecycle.records import MedicalSettled, PurseRefunded
from tests.switch.harness import EngineHarness

MINUTE_MS = 60_000
# Small segments, so that every test cycle spans several of them.
SEGMENT_BYTES_TEST = 4 * 1024
# Write groups of a few records, as a switch under light load does.
RECORDS_PER_WRITE_TEST = 8


def settlement_config(**overrides: object) -> SettlementConfig:
    fields: dict[str, object] = {
        "payees": [
            PayeeAccount("shiyan-bus", "ABC", "6228480402564890018"),
            PayeeAccount("shiyan-metro", "ABC", "6228480402564890026"),
            PayeeAccount("merchant-0001", "ICBC", "6212260200000000001"),
            PayeeAccount("hospital-0001", "CCB", "6217000000000000001"),
        ],
        "funders": [Funder("finance-bureau", "ICBC"), Funder("hrss", "HBRCU")],
        "fee_rates_bp": {"merchant": 60},
    }
    fields.update(overrides)
    return SettlementConfig(**fields)  # type: ignore[arg-type]


class Day:
    def __init__(self, cards: int = 32) -> None:
        self.harness = EngineHarness(cards=cards)
        self._seq = itertools.count(1)

    @property
    def engine(self) -> Engine:
        return self.harness.engine

    @property
    def keys(self) -> KeyStore:
        return self.harness.keys

    @property
    def journal(self) -> list[Record]:
        return self.harness.journal

    @property
    def now_ms(self) -> int:
        return self.harness.now_ms

    def advance(self, minutes: float) -> None:
        self.harness.now_ms += round(minutes * MINUTE_MS)

    def tap(self, card: str, terminal: str = "G0001") -> Response:
        self.advance(10)  # past the flat line's single-charge window
        return self.harness.one(Tap(terminal, next(self._seq), self.now_ms, card))

    def purchase(self, card: str, amount_fen: int, terminal: str = "P0001") -> Response:
        self.advance(1)
        return self.harness.one(Purchase(terminal, next(self._seq), self.now_ms, card, amount_fen))

    def reverse(self, terminal: str, original_seq: int) -> Response:
        return self.harness.one(Reversal(terminal, next(self._seq), self.now_ms, original_seq))

    def offline(self, terminal: str, taps: list[OfflineTap]) -> Response:
        return self.harness.one(OfflineUpload(terminal, next(self._seq), self.now_ms, taps))

    def submit(self, *records: Record) -> None:
        self.harness.submit(*records)

    def close(self, cutover_ms: int | None = None) -> CycleClosed:
        """Close the open cycle now (a minute on: cutovers only move forward), as the
        scheduler does."""
        self.advance(1)
        record = close_record(
            self.engine.settlement,
            len(self.journal),
            self.now_ms,
            self.now_ms if cutover_ms is None else cutover_ms,
        )
        self.submit(record)
        return record

    def write(self, data_dir: Path, segment_bytes_max: int = SEGMENT_BYTES_TEST) -> Path:
        """The data directory: key store and the journal so far (written afresh)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self.keys.save(data_dir)
        journal = data_dir / "journal"
        for path in journal.glob("*.journal"):
            path.unlink()
        writer = SegmentWriter(
            journal,
            self.keys.journal,
            segment_bytes_max=segment_bytes_max,
            records_per_write=RECORDS_PER_WRITE_TEST,
        )
        writer.append(self.journal)
        writer.close()
        return data_dir


def iso_payment(
    day: Day,
    card: str,
    *,
    bank_fen: int = 0,
    medical_fen: int = 0,
    payee: str = "merchant-0001",
    kind: str = "purchase",
    bank_id: str = "ABC",
) -> IsoPayment:
    """An approved ISO 8583 payment as switch/banks journals it: the holder's legs, and the
    payee owed their sum."""
    reference = day.engine.next_reference + 100_000
    day.engine.next_reference = reference + 1
    return IsoPayment(
        time_ms=day.now_ms,
        terminal_id="P0001",
        stan=f"{reference % 1_000_000:06d}",
        transmission="1130100000",
        mti="0200",
        kind=kind,
        card=card,
        amount_fen=-(bank_fen + medical_fen),
        code="00",
        reference=reference,
        content=f"{card}:{reference}",
        route="medical" if medical_fen else "bank",
        medical_fen=medical_fen,
        bank_fen=bank_fen,
        bank_id=bank_id if bank_fen else "",
        bank_reference=reference + 7_000_000 if bank_fen else 0,
        payee=payee,
        payee_fen=-(bank_fen + medical_fen),
    )


def busy_day(day: Day) -> None:
    """Every kind of money movement settlement knows, decided by the real engine where the
    engine decides it: taps, purchases at a configured and an unconfigured merchant, a
    reversal, offline taps that leave a debt, ISO 8583 bank and medical payments, a
    subsidy credit, a medical account settled out, a purse refunded on cancellation."""
    for serial in range(10, 20):
        assert day.tap(f"X{serial:08d}").code == "00"
    assert day.purchase("X00000010", 350).code == "00"
    assert day.purchase("X00000011", 1_200, terminal="P0002").code == "00"
    day.purchase("X00000012", 800)
    original = day.harness.decisions()[-1].seq
    assert day.reverse("P0001", original).code == "00"
    # An empty purse rides offline: the fare becomes debt.
    upload = [
        OfflineTap(1, day.now_ms - 3_600_000, "X00000007"),
        OfflineTap(2, day.now_ms - 60_000, "X00000013"),
    ]
    assert day.offline("G0002", upload).code == "00"
    day.submit(iso_payment(day, "X00000014", bank_fen=-5_000))
    medical_card = day.engine.cards["X00000015"]
    day.submit(
        iso_payment(
            day,
            "X00000015",
            medical_fen=-min(300, medical_card.medical_fen),
            bank_fen=-200,
            payee="hospital-0001",
            kind="medical",
        )
    )
    day.submit(
        SubsidyCredited(
            day.now_ms,
            "B-TEST-1",
            "0" * 64,
            1,
            1,
            "finance-bureau",
            "heating",
            [
                SubsidyCredit(
                    1,
                    "X00000016",
                    "ICBC",
                    "621226******0001",
                    "4203**********0014",
                    50_000,
                    "person",
                    "",
                )
            ],
            [],
        )
    )
    settled_card = day.engine.cards["X00000017"]
    day.submit(MedicalSettled(day.now_ms, "X00000017", settled_card.medical_fen, "desk-1"))
    refunded = day.engine.cards["X00000018"]
    day.submit(
        PurseRefunded(
            day.now_ms,
            "X00000018",
            refunded.purse_fen,
            refunded.debt_fen,
            refunded.purse_fen - refunded.debt_fen,
            "desk-1",
        )
    )
