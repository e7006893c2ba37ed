"""Every lifecycle transition and every illegal one, through the service API (both loops),
and what each does at the gates: refusals in the very next batch, deny-list deltas,
balances carried to a replacement, refunds on cancellation."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.codes import ResponseCode as C
from protocols.ecard import BusinessType
from switch.ecard.issue import mint_qr
from switch.lifecycle.machine import TRANSITIONS, Command, Stage
from switch.privacy.purposes import Role
from switch.transit.denylist import unpack
from tests.api.cards import COMMANDS, Cards
from tests.api.harness import (
    APPLICANT_ID,
    ELDERLY_APPLICANT_ID,
    Desk,
    desk_config,
    running_desk,
)
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio

# Commands with an endpoint: expiry is the switch's own (test_temporary_loss_lifts_itself).
API_COMMANDS = [command for command in Command if command is not Command.EXPIRE_TEMPORARY_LOSS]


async def test_every_legal_transition(desk: Desk) -> None:
    cards = Cards(desk)
    for stage, row in TRANSITIONS.items():
        for command, target in row.items():
            if command is Command.EXPIRE_TEMPORARY_LOSS:
                continue
            card = await cards.in_stage(stage)
            answer = await cards.command(card, command.value)
            if command is Command.REPLACE:
                assert answer["old_card"] == card
                # A suspension carries over to the new card (machine.py).
                carried = "suspended" if stage is Stage.SUSPENDED else "active"
                assert answer["new_card"]["stage"] == carried
            view = await desk.call("GET", f"/cards/{card}")
            assert view["stage"] == target.value, (stage, command)


async def test_every_illegal_transition_is_refused_naming_state_and_command(desk: Desk) -> None:
    cards = Cards(desk)
    for stage, row in TRANSITIONS.items():
        card = await cards.in_stage(stage)
        for command in API_COMMANDS:
            if command in row or (command is Command.CANCEL and stage is Stage.APPLIED):
                continue  # legal (cancelling an application withdraws it)
            if command is Command.WITHDRAW and Command.CANCEL in row:
                continue  # the cancel endpoint: legal here
            answer = await cards.command(card, command.value, expect=409)
            assert answer["error"] == "illegal_transition"
            assert answer["state"] == stage.value, (stage, command)
            shown = "cancel" if command is Command.WITHDRAW else command.value
            assert answer["command"] == shown
            assert stage.value in answer["detail"] and shown in answer["detail"]
            view = await desk.call("GET", f"/cards/{card}")
            assert view["stage"] == stage.value  # nothing changed


async def test_loss_refused_at_the_gate_in_the_next_batch_and_in_the_denylist_delta(
    desk: Desk,
) -> None:
    gate = await desk.terminal("G0003")
    full = await gate.denylist_page(0)
    version = full.denylist_version
    assert await desk.tap("G0001", "X00000021") == C.APPROVED
    # The answer to the loss report is sent once the change is durable; the caches
    # changed before the journal append, so every batch decided after it refuses the card.
    await desk.call(
        "POST", "/cards/X00000021/loss", {"kind": "temporary"}, role=Role.PARTNER_SYSTEM
    )
    assert await desk.tap("G0002", "X00000021") == C.LOST_CARD
    delta = await gate.denylist_page(version)
    assert (delta.full, unpack(delta.added), unpack(delta.removed)) == (False, ["X00000021"], [])
    await desk.call("POST", "/cards/X00000021/lift")
    again = await gate.denylist_page(delta.denylist_version)
    assert unpack(again.removed) == ["X00000021"]
    desk.clock.advance(seconds=30)
    assert await desk.tap("G0004", "X00000021") == C.APPROVED


async def test_temporary_loss_lifts_itself_after_the_configured_days(desk: Desk) -> None:
    await desk.call("POST", "/cards/X00000022/loss", {"kind": "temporary"})
    view = await desk.call("GET", "/cards/X00000022")
    days = desk.api.config.lifecycle.temporary_loss_days
    assert view["temporary_loss_until_ms"] == desk.clock() + days * 86_400_000
    operations = desk.api.operations
    assert operations is not None
    desk.clock.advance(minutes=days * 24 * 60 - 1)
    assert await operations.expire_losses() == 0
    assert await desk.tap("G0001", "X00000022") == C.LOST_CARD
    desk.clock.advance(minutes=1)
    assert await operations.expire_losses() == 1
    assert (await desk.call("GET", "/cards/X00000022"))["stage"] == "active"
    assert await desk.tap("G0001", "X00000022") == C.APPROVED
    # A loss report lifted by hand, then made formal, never expires.
    await desk.call("POST", "/cards/X00000023/loss", {"kind": "temporary"})
    await desk.call("POST", "/cards/X00000023/loss", {"kind": "formal"})
    desk.clock.advance(minutes=days * 24 * 60 + 1)
    assert await operations.expire_losses() == 0
    assert (await desk.call("GET", "/cards/X00000023"))["stage"] == "lost"


async def test_replacement_carries_everything_and_kills_the_old_card(desk: Desk) -> None:
    engine = desk.switch.engine
    old = "X00000024"
    assert await desk.tap("MI01", old) == C.APPROVED  # a metro journey is open
    before = await desk.call("GET", f"/cards/{old}")
    await desk.call("POST", f"/cards/{old}/loss", {"kind": "formal"})
    answer = await desk.call("POST", f"/cards/{old}/replace", {"reason": "lost"}, expect=201)
    new = answer["new_card"]
    number = new["card"]
    assert number != old and new["stage"] == "active" and new["replaces"] == old
    assert (new["purse_fen"], new["medical_fen"], new["ecard_level"]) == (
        before["purse_fen"],
        before["medical_fen"],
        before["ecard_level"],
    )
    assert new["holder_token"] == before["holder_token"]
    assert (await desk.call("GET", f"/cards/{old}"))["replaced_by"] == number
    assert await desk.tap("G0001", old) == C.INVALID_CARD
    assert old in engine.denylist.blocked and number not in engine.denylist.blocked
    # The open journey continues on the new card: the exit is priced (6.1 km: ¥4).
    desk.clock.advance(minutes=12)
    client = await desk.terminal("MO03")
    exit_answer = await client.request(client.tap(number))
    assert (exit_answer.code, exit_answer.amount_fen) == (C.APPROVED, 400)
    # The holder's phone keeps working: the same e-card token now stands for the new card.
    qr = mint_qr(engine.ecard, desk.keys.qr_signing, number, BusinessType.PAYMENT, desk.clock())
    gate = await desk.terminal("G0005")
    scanned = await gate.request(gate.scan(qr))
    assert scanned.code == C.APPROVED
    with pytest.raises(Exception, match="no e-card"):
        mint_qr(engine.ecard, desk.keys.qr_signing, old, BusinessType.PAYMENT, desk.clock())


async def test_a_reversal_after_replacement_credits_the_card_that_holds_the_purse(
    desk: Desk,
) -> None:
    engine = desk.switch.engine
    old = "X00000026"
    pos = await desk.terminal("P0001")
    bought = await pos.request(pos.purchase(old, 1_250))
    assert bought.code == C.APPROVED
    await desk.call("POST", f"/cards/{old}/loss", {"kind": "formal"})
    first = (await desk.call("POST", f"/cards/{old}/replace", {"reason": "lost"}, expect=201))[
        "new_card"
    ]["card"]
    second = (
        await desk.call("POST", f"/cards/{first}/replace", {"reason": "damaged"}, expect=201)
    )["new_card"]["card"]
    holding = engine.cards[second].purse_fen
    reversed_ = await pos.request(pos.reversal(bought.seq))
    assert (reversed_.code, reversed_.balance_fen) == (C.APPROVED, holding + 1_250)
    assert engine.cards[second].purse_fen == holding + 1_250
    assert engine.cards[old].purse_fen == engine.cards[first].purse_fen == 0
    again = await pos.request(pos.reversal(bought.seq))
    assert again.code == C.DUPLICATE_TRANSMISSION  # money moves back once
    assert engine.cards[second].purse_fen == holding + 1_250


async def test_cancellation_needs_settled_accounts_and_refunds_the_purse(desk: Desk) -> None:
    card = "X00000025"
    view = await desk.call("GET", f"/cards/{card}")
    refused = await desk.call("POST", f"/cards/{card}/cancel", {"reason": "emigration"}, expect=409)
    assert "medical account" in refused["detail"]
    medical = view["medical_fen"]
    wrong = await desk.call(
        "POST",
        f"/cards/{card}/medical-settlement",
        {"amount_fen": medical + 1},
        role=Role.PARTNER_SYSTEM,
        expect=409,
    )
    assert wrong["error"] == "refused"
    await desk.call(
        "POST",
        f"/cards/{card}/medical-settlement",
        {"amount_fen": medical},
        role=Role.PARTNER_SYSTEM,
    )
    refused = await desk.call("POST", f"/cards/{card}/cancel", {"reason": "emigration"}, expect=409)
    assert "financial account" in refused["detail"]
    await desk.call(
        "POST", f"/cards/{card}/bank-function", {"status": "settled"}, role=Role.PARTNER_SYSTEM
    )
    cancelled = await desk.call("POST", f"/cards/{card}/cancel", {"reason": "emigration"})
    assert (cancelled["stage"], cancelled["purse_fen"], cancelled["medical_fen"]) == (
        "cancelled",
        0,
        0,
    )
    assert await desk.tap("G0001", card) == C.INVALID_CARD
    refunds = [r for r in journal_records(desk) if type(r).__name__ == "PurseRefunded"]
    assert [(r.card, r.refund_fen) for r in refunds] == [(card, view["purse_fen"])]  # type: ignore[attr-defined]


def journal_records(desk: Desk) -> list[object]:
    from switch.store.tail import JournalTail  # noqa: PLC0415

    journal = desk.switch.journal
    return list(JournalTail(journal.directory).read(0, journal.durable_position, 10**9))


async def test_suspension_blocks_social_security_functions_only(desk: Desk) -> None:
    card = "X00000026"
    sanction = {"reference": "SY-HRSS-2026-0042"}
    forbidden = await desk.call("POST", f"/cards/{card}/suspend", sanction, expect=403)
    assert forbidden["error"] == "forbidden"
    await desk.call("POST", f"/cards/{card}/suspend", sanction, role=Role.SUPERVISOR)
    assert await desk.tap("G0001", card) == C.APPROVED  # the purse is a transport function
    qr = mint_qr(
        desk.switch.engine.ecard, desk.keys.qr_signing, card, BusinessType.MEDICAL, desk.clock()
    )
    counter = await desk.terminal("H0001")
    assert (await counter.request(counter.scan(qr))).code == C.RESTRICTED_CARD
    # A suspended card reported lost comes back suspended: lifting cannot clear a sanction.
    await desk.call("POST", f"/cards/{card}/loss", {"kind": "temporary"})
    assert (await desk.call("GET", f"/cards/{card}/"[:-1]))["suspended"]
    lifted = await desk.call("POST", f"/cards/{card}/lift")
    assert lifted["stage"] == "suspended"
    restored = await desk.call("POST", f"/cards/{card}/restore", sanction, role=Role.SUPERVISOR)
    assert (restored["stage"], restored["suspended"]) == ("active", False)


async def test_pin_rules_tries_and_lock(desk: Desk) -> None:
    cards = Cards(desk)
    card = await cards.in_stage(Stage.ISSUED)
    for pin, financial, why in [
        ("123456", None, "too easy"),
        ("111111", None, "too easy"),
        ("802613", "802613", "must differ"),
    ]:
        body = {"pin": pin} | ({} if financial is None else {"financial_pin": financial})
        answer = await desk.call("POST", f"/cards/{card}/activate", body, expect=409)
        assert why in answer["detail"]
    shape = await desk.call("POST", f"/cards/{card}/activate", {"pin": "80261"}, expect=422)
    assert shape["error"] == "invalid"
    await cards.command(card, "activate")
    verify = f"/cards/{card}/pin/verify"
    good = {"function": "social_security", "pin": "802613"}
    bad = {"function": "social_security", "pin": "802614"}
    assert (await desk.call("POST", verify, good))["verified"]
    for tries_left in (2, 1, 0):
        answer = await desk.call("POST", verify, bad, role=Role.PARTNER_SYSTEM)
        assert (answer["verified"], answer["tries_left"]) == (False, tries_left)
    assert answer["locked"]
    assert (await desk.call("GET", f"/cards/{card}"))["pin_locked"]
    locked = await desk.call("POST", verify, good, expect=409)
    assert "locked" in locked["detail"]
    same = await desk.call(
        "PUT", f"/cards/{card}/pin", {"function": "social_security", "pin": "551302"}, expect=409
    )
    assert "differ" in same["detail"]  # the financial PIN's value
    await desk.call("PUT", f"/cards/{card}/pin", {"function": "social_security", "pin": "739104"})
    assert (await desk.call("POST", verify, {"function": "social_security", "pin": "739104"}))[
        "verified"
    ]
    # Only hashes are journalled: no PIN in any record.
    for record in journal_records(desk):
        encoded = repr(record)
        assert "802613" not in encoded and "739104" not in encoded


async def test_eligibility_and_one_card_per_holder(desk: Desk) -> None:
    body = {
        "name": "李四",
        "citizen_id": APPLICANT_ID,
        "contact": "",
        "category": "standard",
        "basis": "insured_locally",
    }
    first = await desk.call("POST", "/applications", body, expect=201)
    again = await desk.call("POST", "/applications", body, expect=409)
    assert first["card"] in again["detail"]
    elderly = body | {"citizen_id": "360426199101010071", "category": "elderly"}
    refused = await desk.call("POST", "/applications", elderly, expect=409)
    assert "65" in refused["detail"]
    older = body | {"citizen_id": ELDERLY_APPLICANT_ID, "category": "elderly"}
    await desk.call("POST", "/applications", older, expect=201)
    bad_check = body | {"citizen_id": "340524198001010013"}
    assert (await desk.call("POST", "/applications", bad_check, expect=409))["error"] == "refused"
    not_eligible = body | {"citizen_id": "420304200002290037", "basis": "tourist"}
    assert (await desk.call("POST", "/applications", not_eligible, expect=422))["error"] == (
        "invalid"
    )


async def test_bank_function_loss_is_separate_and_gates_level_2_ecards(desk: Desk) -> None:
    card = "X00000027"
    lost = await desk.call(
        "POST", f"/cards/{card}/bank-function", {"status": "lost"}, role=Role.PARTNER_SYSTEM
    )
    assert (lost["stage"], lost["bank_function"]) == ("active", "lost")
    assert await desk.tap("G0001", card) == C.APPROVED  # the purse is not the bank
    refused = await desk.call("PUT", f"/cards/{card}/ecard", {"level": 2}, expect=409)
    assert "bank" in refused["detail"]
    assert (await desk.call("PUT", f"/cards/{card}/ecard", {"level": 1}))["ecard_level"] == 1
    await desk.call("POST", f"/cards/{card}/bank-function", {"status": "active"})
    assert (await desk.call("PUT", f"/cards/{card}/ecard", {"level": 2}))["ecard_level"] == 2
    assert (await desk.call("DELETE", f"/cards/{card}/ecard"))["ecard_level"] == 0
    illegal = await desk.call(
        "POST", f"/cards/{card}/bank-function", {"status": "active"}, expect=409
    )
    assert illegal["state"] == "bank function active"


async def test_authentication_and_least_privilege(desk: Desk) -> None:
    anonymous = await desk.client().get("/cards/X00000001", headers={"authorization": ""})
    assert anonymous.status_code == 401
    wrong = await desk.client().get(
        "/cards/X00000001", headers={"authorization": "Bearer " + "A" * 43}
    )
    assert wrong.status_code == 401
    for role, path, body in [
        (Role.AUDITOR, "/cards/X00000001/loss", {"kind": "formal"}),
        (Role.OPERATIONS, "/cards/X00000001/lift", None),
        (Role.PARTNER_SYSTEM, "/cards/X00000001/suspend", {"reference": "A-1"}),
        (Role.SERVICE_DESK, "/integrity", {}),
    ]:
        answer = await desk.call("POST", path, body, role=role, expect=403)
        assert answer["error"] == "forbidden"
    assert (await desk.call("GET", "/cards/X00000001", role=Role.OPERATIONS))["stage"] == "active"
    assert set(COMMANDS) >= {command.value for command in API_COMMANDS}


async def test_a_restart_replays_the_lifecycle_exactly(data_dir: Path, clock: FakeClock) -> None:
    views: dict[str, object] = {}
    async with running_desk(data_dir, clock, desk_config()) as desk:
        cards = Cards(desk)
        made = [await cards.in_stage(stage) for stage in Stage]
        await desk.call(
            "POST", f"/cards/{made[2]}/pin/verify", {"function": "social_security", "pin": "000001"}
        )
        await desk.call("POST", "/cards/X00000028/loss", {"kind": "temporary"})
        for card in [*made, "X00000028"]:
            views[card] = await desk.call("GET", f"/cards/{card}")
    async with running_desk(data_dir, clock, desk_config()) as again:
        for card, view in views.items():
            assert await again.call("GET", f"/cards/{card}") == view
        lost = made[list(Stage).index(Stage.TEMPORARILY_LOST)]
        due = again.switch.engine.lifecycle.due_expiries(clock() + 16 * 86_400_000)
        assert sorted(due) == sorted([lost, "X00000028"])
