"""Subsidy and benefit batches: every row validated, per-household payments routed to the
head of household's card, credits journalled once per batch id, settled to the banks, and
no citizen ID number kept anywhere in the clear."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from settlement.cycle import settle_cycle
from settlement.errors import BatchRefused, FileFormatError
from settlement.files import settlement_file_name
from settlement.ledger import Account
from settlement.records import SubsidyCredit, SubsidyCredited
from settlement.subsidy import PART_ROWS_MAX, Reason, import_batch, prepare_import
from switch.config import Config, EngineConfig
from switch.core import open_switch
from switch.demo import DemoSpec, demo_records
from switch.journal.records import encoder
from switch.journal.segment import RECORD_BYTES_MAX
from switch.keystore import KeyStore
from switch.lifecycle.records import BankFunctionChanged
from tests.conftest import DEMO_CARDS, FakeClock
from tests.settlement.harness import Day, settlement_config

CARDS = 32
CONFIG = settlement_config()
NOBODY = "420302196503150014"  # valid, and no demo holder's (facts.md)
NOBODY_LOWER_X = "42030319580101002x"  # valid once normalised, and nobody's either
BAD_CHECKSUM = "340524198001010013"  # facts.md: the check character should be X


def citizen_ids() -> dict[str, str]:
    ids: dict[str, str] = {}
    demo_records(DemoSpec(cards=CARDS), KeyStore(), EngineConfig(), ids)
    return ids


def batch(rows: list[tuple[str, str, str, str, int]], batch_id: str = "HEAT-2026-11") -> bytes:
    lines = [
        f"batch,{batch_id},finance-bureau,heating-subsidy,{len(rows)},"
        f"{sum(row[4] for row in rows)}",
        "row,scope,household_id,relation,citizen_id,amount_fen",
    ]
    lines.extend(
        f"{number},{scope},{household},{relation},{citizen},{amount}"
        for number, (scope, household, relation, citizen, amount) in enumerate(rows, start=1)
    )
    return ("\n".join(lines) + "\n").encode()


def mixed_batch(ids: dict[str, str]) -> bytes:
    return batch(
        [
            ("person", "", "", ids["X00000010"], 50_000),  # 1 credited
            ("person", "", "", BAD_CHECKSUM, 50_000),  # 2 invalid ID
            ("person", "", "", ids["X00000003"], 50_000),  # 3 card lost
            ("person", "", "", NOBODY, 50_000),  # 4 no card at all
            ("person", "", "", ids["X00000010"], 50_000),  # 5 twice in the batch
            ("person", "", "", ids["X00000019"], 0),  # 6 nothing to pay
            ("household", "H1", "head", ids["X00000011"], 120_000),  # 7 credited to the head
            ("household", "H1", "member", ids["X00000012"], 0),  # 8 a member: checked
            ("household", "H2", "member", ids["X00000013"], 0),  # 9 no head
            ("household", "H3", "head", ids["X00000014"], 1_000),  # 10 two heads
            ("household", "H3", "head", ids["X00000015"], 1_000),  # 11
            ("household", "H4", "member", ids["X00000016"], 500),  # 12 paid to a member
            ("household", "H4", "head", ids["X00000017"], 80_000),  # 13 credited
            ("family", "", "", ids["X00000020"], 50_000),  # 14 no such scope
            ("household", "H5", "head", ids["X00000011"], 9_000),  # 15 heads H1 already
            ("person", "", "", ids["X00000018"], 50_000),  # 16 bank account lost
            ("person", "", "", NOBODY_LOWER_X, 50_000),  # 17 normalised: no card
        ]
    )


def test_a_batch_with_invalid_rows(tmp_path: Path) -> None:
    day = Day(cards=CARDS)
    ids = citizen_ids()
    day.submit(BankFunctionChanged(day.now_ms, "X00000018", "lost", "bank-ABC"))
    data = mixed_batch(ids)
    prepared = prepare_import(data, "heat.csv", day.engine, day.keys.holder_secret, CONFIG, 1)
    reasons = {r.row: Reason(r.reason) for r in prepared.validation.rejections}
    assert reasons == {
        2: Reason.INVALID_ID,
        3: Reason.NO_ACTIVE_CARD,
        4: Reason.NO_ACTIVE_CARD,
        5: Reason.DUPLICATE_PERSON,
        6: Reason.INVALID_AMOUNT,
        9: Reason.HOUSEHOLD_WITHOUT_HEAD,
        10: Reason.HOUSEHOLD_SEVERAL_HEADS,
        11: Reason.HOUSEHOLD_SEVERAL_HEADS,
        12: Reason.AMOUNT_ON_MEMBER,
        14: Reason.MALFORMED_ROW,
        15: Reason.HEAD_OF_SEVERAL_HOUSEHOLDS,
        16: Reason.NO_BANK_ACCOUNT,
        17: Reason.NO_ACTIVE_CARD,
    }
    credits = {c.row: c for c in prepared.validation.credits}
    assert sorted(credits) == [1, 7, 13]
    # Each credit goes to the financial account of the card, at the card's own bank.
    for row, card in ((1, "X00000010"), (7, "X00000011"), (13, "X00000017")):
        cached = day.engine.cards[card]
        assert (credits[row].card, credits[row].bank_id) == (card, cached.bank_id)
        assert credits[row].bank_account_masked == cached.bank_account_masked
    report = prepared.report.decode()
    assert report.count("\nrejected,") == len(reasons)
    assert "rejected,2,,invalid_id" in report  # an invalid number is not even masked
    assert f"rejected,3,{ids['X00000003'][:4]}**********{ids['X00000003'][-4:]}," in report


def test_per_household_subsidies_go_to_the_head_s_card(tmp_path: Path) -> None:
    day = Day(cards=CARDS)
    ids = citizen_ids()
    data = batch(
        [
            ("household", "H7", "member", ids["X00000021"], 0),
            ("household", "H7", "head", ids["X00000022"], 60_000),
            ("household", "H7", "member", ids["X00000023"], 0),
        ]
    )
    prepared = prepare_import(data, "h.csv", day.engine, day.keys.holder_secret, CONFIG, 1)
    (credit,) = prepared.validation.credits
    assert (credit.card, credit.scope, credit.household, credit.amount_fen) == (
        "X00000022",
        "household",
        "H7",
        60_000,
    )
    assert prepared.validation.rejections == []


def test_credits_are_journalled_once_per_batch_and_settled_to_the_banks(tmp_path: Path) -> None:
    day = Day(cards=CARDS)
    ids = citizen_ids()
    data = mixed_batch(ids)
    secret = day.keys.holder_secret
    prepared = prepare_import(data, "heat.csv", day.engine, secret, CONFIG, day.now_ms)
    assert len(prepared.records) == 1
    day.submit(*prepared.records)
    again = prepare_import(data, "heat.csv", day.engine, secret, CONFIG, day.now_ms)
    assert again.already_imported and again.records == []
    other = data.replace(b"50000", b"50001", 1).replace(b",50000\n", b",49999\n", 1)
    with pytest.raises(BatchRefused, match="other content"):
        prepare_import(other, "heat.csv", day.engine, secret, CONFIG, day.now_ms)
    close = day.close()
    settled = settle_cycle(day.write(tmp_path), CONFIG, day.keys.journal, close, None)
    funder = [p for p in settled.positions.positions if p.account == Account.FUNDER]
    # Rows 1, 7, 13 and 16 (its bank account is in order in this test).
    assert [(p.party, p.net_fen) for p in funder] == [("finance-bureau", -300_000)]
    for credit in prepared.validation.credits:
        text = settled.files.files[settlement_file_name(credit.bank_id, 1)].decode()
        assert f"SUBS{'HEAT-2026-11/' + format(credit.row, '06d'):40}{credit.card}" in text
    # No citizen ID number in the clear: not in the journal, the report or the files.
    journal = b"".join(encoder.encode(record) for record in day.journal)
    produced = b"".join(settled.files.files.values()) + prepared.report
    for citizen in ids.values():
        assert citizen.encode() not in journal
        assert citizen.encode() not in produced


def test_an_import_cut_short_is_completed_by_importing_again() -> None:
    day = Day(cards=CARDS)
    rows = [("person", "", "", BAD_CHECKSUM, 100)] * (PART_ROWS_MAX + 1)
    data = batch(rows, "BIG-1")
    secret = day.keys.holder_secret
    prepared = prepare_import(data, "big.csv", day.engine, secret, CONFIG, day.now_ms)
    assert [(r.part, r.parts) for r in prepared.records] == [(1, 2), (2, 2)]
    day.submit(prepared.records[0])  # the crash came before part 2 was journalled
    resumed = prepare_import(data, "big.csv", day.engine, secret, CONFIG, day.now_ms)
    assert [r.part for r in resumed.records] == [2]
    assert len(resumed.records[0].rejections) == 1


def test_the_largest_part_fits_a_journal_record() -> None:
    credit = SubsidyCredit(
        999_999,
        "X99999999",
        "HBRCU999",
        "6228480402564890018",
        "4203**********002X",
        10_000_000,
        "household",
        "H" * 32,
    )
    part = SubsidyCredited(
        2**62,
        "B" * 20,
        "f" * 64,
        200,
        200,
        "finance-bureau-12345",
        "i" * 32,
        [credit] * PART_ROWS_MAX,
        [],
    )
    assert len(msgspec.msgpack.encode(part)) < RECORD_BYTES_MAX // 2


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: d.replace(b",17,", b",16,", 1), "header says 16 rows"),
        (lambda d: d.replace(b"row,scope", b"row,kind", 1), "column names"),
        (lambda d: d.replace(b"\n3,person", b"\n4,person", 1), "row number 4"),
        (lambda d: d.replace(b"finance-bureau,heating-subsidy", b"x,bad item", 1), "item"),
        (lambda d: d.replace(b",50000\n", b",5e4\n", 1), "whole number"),
        (lambda d: b"\xff" + d, "UTF-8"),
    ],
)
def test_a_malformed_batch_is_refused_whole(damage: object, problem: str) -> None:
    day = Day(cards=CARDS)
    assert callable(damage)
    data = damage(mixed_batch(citizen_ids()))
    with pytest.raises(FileFormatError, match=problem):
        prepare_import(data, "x.csv", day.engine, day.keys.holder_secret, CONFIG, 1)


def test_an_unknown_funder_is_refused() -> None:
    day = Day(cards=CARDS)
    data = batch([("person", "", "", NOBODY, 1)]).replace(b"finance-bureau", b"lottery", 1)
    with pytest.raises(BatchRefused, match="lottery"):
        prepare_import(data, "x.csv", day.engine, day.keys.holder_secret, CONFIG, 1)


@pytest.mark.anyio
async def test_a_batch_imported_into_the_running_switch(data_dir: Path, clock: FakeClock) -> None:
    switch = open_switch(data_dir, Config(), clock)
    keys = KeyStore.load(data_dir)
    ids: dict[str, str] = {}
    demo_records(DemoSpec(cards=DEMO_CARDS), KeyStore(), EngineConfig(), ids)
    data = batch([("person", "", "", ids["X00000050"], 12_345)], "LIVE-1")
    directory = data_dir / "settlement"
    async with anyio.create_task_group() as group:
        group.start_soon(switch.journal.run)
        imported = await import_batch(
            switch, data, "live.csv", keys.holder_secret, CONFIG, directory
        )
        assert switch.journal.durable_position == switch.journal.appended_position
        again = await import_batch(switch, data, "live.csv", keys.holder_secret, CONFIG, directory)
        group.cancel_scope.cancel()
    switch.journal.close()
    assert [c.card for c in imported.validation.credits] == ["X00000050"]
    assert again.already_imported
    assert switch.engine.settlement.batches["LIVE-1"].complete
    assert "LIVE-1,finance-bureau" in (directory / "subsidy" / "LIVE-1.csv").read_text()
