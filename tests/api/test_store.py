"""The same behaviour against both stores: embedded (uvloop and trio) and PostgreSQL (the
real server, asyncio). Integrity file with evidence, complaints and their deadlines, fraud
recovery orders, misuse review flags, the access report and the accounts projection."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from protocols.codes import ResponseCode as C
from protocols.ecard import BusinessType
from switch.ecard.issue import mint_qr
from switch.journal.records import Decision
from switch.privacy.purposes import Role
from switch.store.config import StoreConfig
from switch.store.tail import JournalTail
from tests.api.harness import Desk, desk_config, running_desk
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio
SUPERVISOR = Role.SUPERVISOR


def decision_index(desk: Desk, card: str) -> int:
    """The journal index of the card's latest decision."""
    journal = desk.switch.journal
    records = JournalTail(journal.directory).read(0, journal.durable_position, 10**9)
    return max(
        index
        for index, record in enumerate(records)
        if type(record) is Decision and record.card == card
    )


async def holder_of(desk: Desk, card: str) -> str:
    token: str = (await desk.call("GET", f"/cards/{card}"))["holder_token"]
    return token


async def test_integrity_file_cites_journal_evidence(store_desk: Desk) -> None:
    desk = store_desk
    assert await desk.tap("G0001", "X00000040") == C.APPROVED
    assert await desk.tap("G0002", "X00000041") == C.APPROVED
    await desk.switch.journal.flush()
    evidence = decision_index(desk, "X00000040")
    other = decision_index(desk, "X00000041")
    entry = {
        "card": "X00000040",
        "violation": "lending",
        "evidence": [evidence],
        "reference": "SY-HRSS-2026-0101",
    }
    wrong = await desk.call(
        "POST", "/integrity", entry | {"evidence": [other]}, role=SUPERVISOR, expect=409
    )
    assert "does not concern" in wrong["detail"]
    missing = await desk.call(
        "POST", "/integrity", entry | {"evidence": [10**9]}, role=SUPERVISOR, expect=409
    )
    assert "does not exist" in missing["detail"]
    created = await desk.call("POST", "/integrity", entry, role=SUPERVISOR, expect=201)
    holder = await holder_of(desk, "X00000040")
    assert created["holder_token"] == holder
    listed = await desk.call("GET", f"/holders/{holder}/integrity", role=Role.AUDITOR)
    assert [
        (e["entry_id"], e["violation"], e["evidence"], e["actor"]) for e in listed["entries"]
    ] == [(1, "lending", [evidence], "test-supervisor")]
    clean = await holder_of(desk, "X00000041")
    assert (await desk.call("GET", f"/holders/{clean}/integrity", role=SUPERVISOR))["entries"] == []


async def test_complaints_are_assigned_answered_and_overdue_ones_show(store_desk: Desk) -> None:
    desk = store_desk
    first = await desk.call(
        "POST",
        "/complaints",
        {"kind": "complaint", "channel": "desk", "text": "gate G0001 charged twice"},
        expect=201,
    )
    second = await desk.call(
        "POST",
        "/complaints",
        {
            "kind": "report",
            "channel": "online",
            "text": "someone lends a card",
            "card": "X00000042",
        },
        role=Role.PARTNER_SYSTEM,
        expect=201,
    )
    days = desk.api.config.casework.complaint_answer_days
    assert first["due_ms"] == desk.clock() + days * 86_400_000
    assert second["holder_token"] == await holder_of(desk, "X00000042")
    one, two = first["complaint_id"], second["complaint_id"]
    assigned = await desk.call(
        "POST", f"/complaints/{one}/assign", {"assignee": "desk-0117"}, role=SUPERVISOR
    )
    assert (assigned["state"], assigned["assignee"]) == ("assigned", "desk-0117")
    overdue = await desk.call("GET", "/complaints", params={"overdue": "true"})
    assert overdue["complaints"] == []
    desk.clock.advance(minutes=days * 24 * 60 + 1)
    overdue = await desk.call("GET", "/complaints", params={"overdue": "true"})
    assert [c["complaint_id"] for c in overdue["complaints"]] == [one, two]
    assert all(c["overdue"] and c["text"] is None for c in overdue["complaints"])
    answered = await desk.call(
        "POST", f"/complaints/{one}/answer", {"text": "refunded 2 yuan"}, role=SUPERVISOR
    )
    assert (answered["state"], answered["overdue"]) == ("answered", False)
    twice = await desk.call(
        "POST", f"/complaints/{one}/answer", {"text": "again"}, role=SUPERVISOR, expect=409
    )
    assert (twice["state"], twice["command"]) == ("complaint answered", "answer")
    overdue = await desk.call("GET", "/complaints", params={"overdue": "true"})
    assert [c["complaint_id"] for c in overdue["complaints"]] == [two]
    everything = await desk.call("GET", "/complaints", role=Role.AUDITOR)
    assert [c["state"] for c in everything["complaints"]] == ["answered", "filed"]
    await desk.call(
        "POST", "/complaints/999/assign", {"assignee": "desk-1"}, role=SUPERVISOR, expect=404
    )


async def test_recovery_orders_fine_two_to_five_times(store_desk: Desk) -> None:
    desk = store_desk
    client = await desk.terminal("P0001")
    assert (await client.request(client.purchase("X00000043", 5_000))).code == C.APPROVED
    await desk.switch.journal.flush()
    evidence = [decision_index(desk, "X00000043")]
    order = {
        "card": "X00000043",
        "amount_fen": 5_000,
        "evidence": evidence,
        "reference": "SY-HRSS-2026-0202",
    }
    for fine in (9_999, 25_001):
        refused = await desk.call(
            "POST", "/recovery-orders", order | {"fine_fen": fine}, role=SUPERVISOR, expect=409
        )
        assert "2 to 5 times" in refused["detail"]
    made = await desk.call(
        "POST", "/recovery-orders", order | {"fine_fen": 15_000}, role=SUPERVISOR, expect=201
    )
    holder = await holder_of(desk, "X00000043")
    assert [(o["amount_fen"], o["fine_fen"], o["evidence"]) for o in made["orders"]] == [
        (5_000, 15_000, evidence)
    ]
    listed = await desk.call("GET", f"/holders/{holder}/recovery-orders", role=Role.AUDITOR)
    assert listed == made
    await desk.call("POST", "/recovery-orders", order | {"fine_fen": 15_000}, expect=403)


async def test_misuse_rules_raise_review_flags(store_desk: Desk) -> None:
    desk = store_desk
    # Impossible travel: in at M00, out 52 km away 5 minutes later.
    assert await desk.tap("MI01", "X00000044") == C.APPROVED
    desk.clock.advance(minutes=5)
    assert await desk.tap("MO07", "X00000044") == C.APPROVED
    # QR and chip: the card at M00 and its e-card at M33 (33 km) 3 minutes apart.
    desk.clock.advance(minutes=60)
    assert await desk.tap("MI01", "X00000045") == C.APPROVED
    desk.clock.advance(minutes=3)
    engine = desk.switch.engine
    qr = mint_qr(
        engine.ecard, desk.keys.qr_signing, "X00000045", BusinessType.PAYMENT, desk.clock()
    )
    gate = await desk.terminal("MO05")  # the journey ends there, paid by QR
    assert (await gate.request(gate.scan(qr))).code == C.APPROVED
    # An honest ride raises nothing: in at M00, out at M06 (6 km) 15 minutes later.
    assert await desk.tap("MI01", "X00000046") == C.APPROVED
    desk.clock.advance(minutes=15)
    assert await desk.tap("MO02", "X00000046") == C.APPROVED
    await desk.switch.journal.flush()
    watcher = desk.api.watcher  # its follower process judges; the watcher journals flags
    async with anyio.create_task_group() as group:
        await group.start(watcher.run)
        await watcher.wait_judged(desk.switch.journal.durable_position)
        group.cancel_scope.cancel()
    assert watcher.flags_total == 2
    flags = (
        await desk.call("GET", "/review-flags", params={"open": "true"}, role=Role.OPERATIONS)
    )["flags"]
    assert [(f["card"], f["rule"], f["outcome"]) for f in flags] == [
        ("X00000044", "impossible_travel", ""),
        ("X00000045", "qr_and_chip", ""),
    ]
    assert flags[0]["detail"] == "50.8 km in 5 min"  # as the crow flies
    first = flags[0]["flag_id"]
    resolved = await desk.call(
        "POST", f"/review-flags/{first}/resolve", {"outcome": "dismissed"}, role=SUPERVISOR
    )
    assert [f["outcome"] for f in resolved["flags"]] == ["dismissed", ""]
    await desk.call(
        "POST",
        f"/review-flags/{first}/resolve",
        {"outcome": "confirmed"},
        role=SUPERVISOR,
        expect=409,
    )
    still_open = await desk.call("GET", "/review-flags", params={"open": "true"}, role=SUPERVISOR)
    assert [f["card"] for f in still_open["flags"]] == ["X00000045"]
    # A confirmed flag's evidence backs an integrity-file entry.
    entry = {
        "card": "X00000045",
        "violation": "lending",
        "evidence": flags[1]["evidence"],
        "reference": "SY-HRSS-2026-0303",
    }
    await desk.call("POST", "/integrity", entry, role=SUPERVISOR, expect=201)


async def test_accounts_and_access_report_from_the_store(store_desk: Desk) -> None:
    desk = store_desk
    client = await desk.terminal("P0002")
    assert (await client.request(client.purchase("X00000047", 1_234))).code == C.APPROVED
    await desk.call("POST", "/cards/X00000047/loss", {"kind": "formal"})
    replaced = await desk.call("POST", "/cards/X00000047/replace", {"reason": "lost"}, expect=201)
    new = replaced["new_card"]["card"]
    operations = desk.api.operations
    assert operations is not None
    await operations.current()
    store = desk.api.store
    assert store is not None
    old_accounts = await store.card_accounts("X00000047")
    new_accounts = await store.card_accounts(new)
    assert old_accounts is not None and new_accounts is not None
    assert (old_accounts.status, old_accounts.purse_fen, old_accounts.medical_fen) == (
        "replaced",
        0,
        0,
    )
    assert (new_accounts.status, new_accounts.purse_fen) == ("active", 20_000 - 1_234)
    assert new_accounts.medical_fen == replaced["new_card"]["medical_fen"]
    holder = new_accounts.holder_token
    await desk.call("GET", f"/holders/{holder}", params={"purpose": "card_service"})
    report = await desk.call("GET", f"/holders/{holder}/access-report", role=Role.AUDITOR)
    assert [(r["actor"], r["what"], r["unmasked"]) for r in report["reads"]] == [
        ("test-service-desk", "holder", True)
    ]


@pytest.mark.parametrize("anyio_backend", [("trio", {})], ids=["trio"])
async def test_on_trio_a_configured_postgres_falls_back_to_embedded_and_says_so(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = desk_config(StoreConfig(dsn="postgresql://postgres@127.0.0.1:5432/test"))
    async with running_desk(data_dir, clock, config) as desk:
        assert desk.api.store is not None and desk.api.store.kind == "embedded"
        assert (await desk.call("GET", "/cards/X00000001"))["stage"] == "active"
    assert "PostgreSQL projection is DISABLED" in caplog.text
