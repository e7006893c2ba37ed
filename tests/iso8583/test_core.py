"""The acquirer and bank state machine with fake time and in-process bank hosts: every flow
of docs/iso8583.md section 6, money conserved in each, and replay rebuilding the state."""

from __future__ import annotations

import pytest

from switch.banks.config import BankLink, BanksConfig, CardRange, MedicalRemainder, OnTimeout
from switch.banks.records import BankLateReply, IsoPayment, SafDelivered, SafQueued
from switch.banks.state import Kind
from switch.engine import Engine
from tests.iso8583.harness import BANKS, Harness

CARD = "X00000010"
FULL = 20_000
BANK_FULL = 1_000_000
TIMEOUT_MS = 5_000


def purchase(
    h: Harness, card: str, fen: int, account: str = "00", terminal: str = "P0001"
) -> dict[str, str]:
    return h.message("0200", terminal, de2=card, de3=f"00{account}00", de4=f"{fen:012d}")


def preauth(h: Harness, card: str, fen: int, account: str = "00") -> dict[str, str]:
    return h.message("0100", de2=card, de3=f"00{account}00", de4=f"{fen:012d}")


def original(request: dict[str, str]) -> str:
    return f"{request['t']}{request['11']}{request['7']}" + "0" * 22


def reversal(h: Harness, request: dict[str, str], mti: str = "0400") -> dict[str, str]:
    return h.message(mti, request["41"].strip(), de90=original(request))


def completion(h: Harness, request: dict[str, str], fen: int) -> dict[str, str]:
    return h.message(
        "0220", de2=request["2"], de3=request["3"], de4=f"{fen:012d}", de90=original(request)
    )


def medical(h: Harness, card: str, total: int, pooled: int) -> dict[str, str]:
    return h.message(
        "0200", "H0001", de2=card, de3="000000", de4=f"{total:012d}", de54=f"0090156C{pooled:012d}"
    )


def bill(h: Harness, card: str, fen: int, reference: str) -> dict[str, str]:
    de48 = f"01005WATER02{len(reference):03d}{reference}"
    return h.message("0200", de2=card, de3="500000", de4=f"{fen:012d}", de48=de48)


def code(answer: dict[str, str] | None) -> str:
    assert answer is not None
    return answer["39"]


def assert_replay_matches(h: Harness) -> None:
    """A fresh engine fed the journal holds exactly the live state."""
    replayed: Engine = h.replayed()
    live, again = h.state, replayed.payments
    assert again.holds.keys() == live.holds.keys()
    assert again.held_purse_fen == live.held_purse_fen
    assert {b: list(q) for b, q in again.saf.items()} == {b: list(q) for b, q in live.saf.items()}
    assert again.pending.keys() == live.pending.keys()
    assert again.bills == live.bills
    assert again.positions_fen == live.positions_fen
    assert again.standin_used_fen == live.standin_used_fen
    for number, card in h.engine.cards.items():
        assert (replayed.cards[number].purse_fen, replayed.cards[number].medical_fen) == (
            card.purse_fen,
            card.medical_fen,
        )


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_purse_purchase_is_decided_in_house(h: Harness) -> None:
    before = h.money()
    answer = h.send(purchase(h, CARD, 350, account="96"))
    assert code(answer) == "00" and answer is not None and answer["_mac"] == "ok"
    assert answer["38"] and answer["37"].isdigit()
    assert h.engine.cards[CARD].purse_fen == FULL - 350 and not h.outbox
    assert h.state.positions_fen["merchant-0001"] == 350
    assert h.money() == before
    assert_replay_matches(h)


def test_bank_purchase_approved(h: Harness) -> None:
    before = h.money()
    assert h.send(purchase(h, CARD, 1_000)) is None  # waits for the bank
    assert h.state.pending
    h.bank_round()
    assert code(h.last_answer()) == "00"
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL - 1_000
    assert not h.state.pending and h.money() == before
    assert_replay_matches(h)


def test_bank_decline_is_passed_on(h: Harness) -> None:
    h.bank_of(CARD).declines[CARD] = "51"
    h.send(purchase(h, CARD, 1_000))
    h.bank_round()
    assert code(h.last_answer()) == "51"
    assert h.state.positions_fen.get("merchant-0001", 0) == 0


def test_timeout_declines_91_and_reverses(h: Harness) -> None:
    before = h.money()
    request = purchase(h, CARD, 2_000)
    h.send(request)
    h.bank_round(answer=False)  # the bank debits; its answer is lost
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL - 2_000
    h.advance(TIMEOUT_MS)
    assert code(h.last_answer()) == "91"
    (entry,) = next(q for q in h.state.saf.values() if q).values()
    assert entry.mti == "0400"
    h.bank_round()
    assert h.state.saf_depth() == 0
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL and h.money() == before
    # A retransmission gets the same 91, and moves nothing.
    assert code(h.send(request)) == "91"
    assert_replay_matches(h)


def test_reversal_is_retried_with_the_repeat_mti_until_acknowledged(h: Harness) -> None:
    h.send(purchase(h, CARD, 2_000))
    h.bank_round(answer=False)
    h.advance(TIMEOUT_MS)
    _bank, first = h.outbox[0]
    assert first["t"] == "0400"
    h.outbox.clear()  # lost on the way
    h.advance(999)
    assert not h.outbox  # backoff: not yet
    h.advance(1)
    assert h.outbox[0][1]["t"] == "0401"
    h.bank_round()
    assert h.state.saf_depth() == 0
    assert any(isinstance(r, SafDelivered) for r in h.journal)


def test_late_reply_is_matched_and_the_reversal_stands(h: Harness) -> None:
    before = h.money()
    h.send(purchase(h, CARD, 2_000))
    bank, fields = h.outbox.pop(0)
    h.advance(TIMEOUT_MS)  # 91; the reversal is queued
    assert code(h.last_answer()) == "91"
    h.outbox.insert(0, (bank, fields))  # the original reaches the bank now, and is answered
    h.bank_round()
    late = [r for r in h.journal if isinstance(r, BankLateReply)]
    assert len(late) == 1 and late[0].code == "00"
    assert h.state.saf_depth() == 0 and h.money() == before
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL  # booked, then reversed
    assert_replay_matches(h)


def test_request_unresolved_at_restart_is_reversed(h: Harness) -> None:
    before = h.money()
    h.send(purchase(h, CARD, 3_000))
    h.bank_round(answer=False)
    h.restart()
    payment = [r for r in h.journal if isinstance(r, IsoPayment)][-1]
    assert (payment.code, payment.timed_out) == ("91", True)
    for bank in BANKS:
        h.run(h.acquirer.link_up(bank, h.now_ms))
    assert h.outbox[0][1]["t"] == "0400"  # queued by this run: its first try
    h.bank_round()
    assert h.state.saf_depth() == 0 and h.money() == before
    assert_replay_matches(h)


def test_reversal_queued_before_a_restart_is_delivered_after_it(h: Harness) -> None:
    before = h.money()
    h.send(purchase(h, CARD, 3_000))
    h.bank_round(answer=False)
    h.advance(TIMEOUT_MS)
    h.outbox.clear()  # the 0400 never arrived; then the switch stops
    h.restart()
    assert h.state.saf_depth() == 1  # rebuilt from the journal
    for bank in BANKS:
        h.run(h.acquirer.link_up(bank, h.now_ms))
    assert h.outbox[0][1]["t"] == "0401"  # it may have gone out before the restart
    h.bank_round()
    assert h.state.saf_depth() == 0 and h.money() == before
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL


def test_bank_down_stands_in_then_advises(h: Harness) -> None:
    before = h.money()
    bank = h.engine.cards[CARD].bank_id
    h.run(h.acquirer.link_down(bank, h.now_ms))
    answer = h.send(purchase(h, CARD, 4_000))
    assert code(answer) == "00"
    assert h.state.standin_used(CARD, h.now_ms) == 4_000 and not h.outbox
    # Over the floor (¥500 a day): declined 91.
    assert code(h.send(purchase(h, CARD, 46_001))) == "91"
    h.run(h.acquirer.link_up(bank, h.now_ms))
    assert h.outbox[0][1]["t"] == "0220"
    h.bank_round()
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL - 4_000
    assert h.state.saf_depth() == 0 and h.money() == before
    assert h.state.standin_approvals_total == 1
    assert_replay_matches(h)


def test_stand_in_refuses_a_card_not_active(h: Harness) -> None:
    lost = "X00000003"
    h.run(h.acquirer.link_down(h.engine.cards["X00000004"].bank_id, h.now_ms))
    assert code(h.send(purchase(h, lost, 100))) == "41"  # its last known status


def test_timeout_with_stand_in_reverses_then_advises(h: Harness) -> None:
    banks = BanksConfig(links=[BankLink(b, on_timeout=OnTimeout.STANDIN) for b in BANKS])
    h = Harness(banks)
    before = h.money()
    h.send(purchase(h, CARD, 2_500))
    h.bank_round(answer=False)
    h.advance(TIMEOUT_MS)
    assert code(h.last_answer()) == "00"
    queued = [r for r in h.journal if isinstance(r, SafQueued)]
    assert [q.mti for q in queued] == ["0400", "0220"]
    h.bank_round()
    h.advance(1_000)
    h.bank_round()
    assert h.state.saf_depth() == 0
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL - 2_500  # exactly one debit
    assert h.money() == before
    assert_replay_matches(h)


def test_purse_preauth_hold_completion_and_partial(h: Harness) -> None:
    before = h.money()
    auth = preauth(h, CARD, 10_000, account="96")
    assert code(h.send(auth)) == "00"
    assert h.state.purse_available(h.engine.cards[CARD]) == FULL - 10_000
    # The hold is respected: a purchase above what is available is refused.
    assert code(h.send(purchase(h, CARD, 10_001, account="96"))) == "51"
    answer = h.send(completion(h, auth, 6_000))
    assert code(answer) == "00" and answer is not None and answer["t"] == "0230"
    card = h.engine.cards[CARD]
    assert card.purse_fen == FULL - 6_000 and h.state.purse_available(card) == FULL - 6_000
    # The hold is gone: a second completion finds nothing.
    assert code(h.send(completion(h, auth, 1_000))) == "25"
    assert h.money() == before
    assert_replay_matches(h)


def test_completion_above_the_hold_is_refused(h: Harness) -> None:
    auth = preauth(h, CARD, 1_000, account="96")
    h.send(auth)
    assert code(h.send(completion(h, auth, 1_001))) == "13"


def test_hold_expires(h: Harness) -> None:
    auth = preauth(h, CARD, 5_000, account="96")
    h.send(auth)
    h.advance(h.banks.hold_expiry_s * 1000)
    assert not h.state.holds and h.state.purse_available(h.engine.cards[CARD]) == FULL
    assert code(h.send(completion(h, auth, 1_000))) == "25"
    assert_replay_matches(h)


def test_bank_preauth_completion_and_expiry(h: Harness) -> None:
    before = h.money()
    auth = preauth(h, CARD, 30_000)
    h.send(auth)
    h.bank_round()
    assert code(h.last_answer()) == "00"
    host = h.bank_of(CARD)
    assert host.available(CARD) == BANK_FULL - 30_000
    assert code(h.send(completion(h, auth, 12_000))) == "00"
    h.bank_round()  # the completion advice
    assert host.balance(CARD) == BANK_FULL - 12_000 and host.available(CARD) == BANK_FULL - 12_000
    other = preauth(h, "X00000011", 7_000)
    h.send(other)
    h.bank_round()
    h.advance(h.banks.hold_expiry_s * 1000)
    h.bank_round()  # the release (0400)
    assert h.bank_of("X00000011").available("X00000011") == BANK_FULL
    assert h.state.saf_depth() == 0 and h.money() == before
    assert_replay_matches(h)


def test_reversal_of_a_preauth_releases_the_hold(h: Harness) -> None:
    auth = preauth(h, CARD, 5_000, account="96")
    h.send(auth)
    assert code(h.send(reversal(h, auth))) == "00"
    assert not h.state.holds


def test_medical_split_and_its_reversal(h: Harness) -> None:
    before = h.money()
    card = h.engine.cards[CARD]
    personal_before = card.medical_fen
    total = personal_before + 10_000 + 3_000  # pooled 3,000; the account cannot pay it all
    request = medical(h, CARD, total, 3_000)
    assert h.send(request) is None  # the remainder goes to the bank
    h.bank_round()
    answer = h.last_answer("H0001")
    assert answer["39"] == "00"
    assert answer["54"] == f"9791156C{personal_before:012d}0092156C{10_000:012d}"
    assert card.medical_fen == 0
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL - 10_000
    assert h.state.positions_fen["hospital-0001"] == total - 3_000
    # One reversal undoes both legs; a second is refused.
    assert code(h.send(reversal(h, request))) == "00"
    h.bank_round()
    assert card.medical_fen == personal_before
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL
    assert code(h.send(reversal(h, request))) == "94"
    assert h.money() == before
    assert_replay_matches(h)


def test_medical_paid_from_the_personal_account_alone(h: Harness) -> None:
    card = h.engine.cards[CARD]
    card_medical = card.medical_fen
    answer = h.send(medical(h, CARD, 1_000, 600))
    assert code(answer) == "00" and not h.outbox
    assert card.medical_fen == card_medical - 400


def test_medical_remainder_refused_by_configuration() -> None:
    banks = BanksConfig(
        links=[BankLink(b) for b in BANKS], medical_remainder=MedicalRemainder.REFUSE
    )
    h = Harness(banks)
    card = h.engine.cards[CARD]
    assert code(h.send(medical(h, CARD, card.medical_fen + 1, 0))) == "51"


def test_medical_suspended_card_is_restricted(h: Harness) -> None:
    assert code(h.send(medical(h, "X00000004", 100, 0))) == "62"


def test_bill_paid_once(h: Harness) -> None:
    before = h.money()
    h.send(bill(h, CARD, 8_800, "2026-11-0001"))
    h.bank_round()
    assert code(h.last_answer()) == "00"
    assert h.state.positions_fen["biller:WATER"] == 8_800
    assert code(h.send(bill(h, "X00000011", 8_800, "2026-11-0001"))) == "88"
    assert h.money() == before
    assert_replay_matches(h)


def test_bill_in_progress_is_refused_too(h: Harness) -> None:
    h.send(bill(h, CARD, 100, "B-7"))
    assert code(h.send(bill(h, CARD, 100, "B-7"))) == "88"


def test_retransmission_and_changed_content(h: Harness) -> None:
    request = purchase(h, CARD, 500, account="96")
    first = h.send(request)
    assert h.send(request) == first
    changed = dict(request, **{"4": f"{501:012d}"})
    assert code(h.send(changed)) == "94"
    assert h.engine.cards[CARD].purse_fen == FULL - 500


def test_retransmission_while_the_bank_decides_gets_the_answer_too(h: Harness) -> None:
    request = purchase(h, CARD, 700)
    h.send(request)
    h.send(request)
    h.bank_round()
    assert len(h.sink.frames) == 2 and h.sink.frames[0] == h.sink.frames[1]
    assert code(h.last_answer()) == "00"
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL - 700  # once


def test_reversal_while_the_original_waits_for_the_bank(h: Harness) -> None:
    before = h.money()
    request = purchase(h, CARD, 700)
    h.send(request)
    assert h.send(reversal(h, request)) is None
    h.bank_round()  # the original's answer, then the reversal is decided
    h.bank_round()  # the reversal reaches the bank
    assert code(h.last_answer()) == "00"
    assert h.bank_of(CARD).balance(CARD) == BANK_FULL and h.money() == before


def test_reversal_codes(h: Harness) -> None:
    declined = purchase(h, "X00000007", 100, account="96")  # empty purse: 51
    h.send(declined)
    assert code(h.send(reversal(h, declined))) == "12"
    assert code(h.send(reversal(h, purchase(h, CARD, 1, account="96")))) == "25"  # never sent
    paid = purchase(h, CARD, 300, account="96")
    h.send(paid)
    assert code(h.send(reversal(h, paid, mti="0420"))) == "00"
    assert code(h.send(reversal(h, paid))) == "94"
    assert h.engine.cards[CARD].purse_fen == FULL


def test_routing_ranges_default_and_no_route() -> None:
    banks = BanksConfig(
        links=[BankLink("ABC")],
        ranges=[CardRange("X00000010", "X00000019", "ABC")],
    )
    h = Harness(banks)
    card = next(n for n, c in h.engine.cards.items() if c.bank_id != "ABC" and n > "X00000019")
    h.send(purchase(h, "X00000012", 100))
    assert h.outbox[0][0] == "ABC"
    assert code(h.send(purchase(h, card, 100))) == "92"
    h2 = Harness(BanksConfig(links=[BankLink("ABC")], default_route="ABC"))
    h2.send(purchase(h2, card, 100))
    assert h2.outbox[0][0] == "ABC"


def test_checks_before_the_decision(h: Harness) -> None:
    assert code(h.send(purchase(h, "X99999999", 100))) == "14"
    assert code(h.send(purchase(h, "X00000003", 100))) == "41"
    assert code(h.send(purchase(h, CARD, 0, account="96"))) == "13"
    assert code(h.send(purchase(h, CARD, 20_001, account="96"))) == "61"
    assert code(h.send(purchase(h, CARD, 100, account="55"))) == "12"
    assert code(h.send(purchase(h, CARD, 100, account="97"))) == "58"  # medical, at a POS
    assert (
        code(h.send(h.message("0200", "G0001", de2=CARD, de3="000000", de4="0" * 11 + "1"))) == "58"
    )


def test_balance_inquiries(h: Harness) -> None:
    answer = h.send(h.message("0100", de2=CARD, de3="319600", de4="0" * 12))
    assert answer is not None and answer["54"] == f"9601156C{FULL:012d}9602156C{FULL:012d}"
    h.send(h.message("0100", de2=CARD, de3="310000", de4="0" * 12))
    h.bank_round()
    assert h.last_answer()["54"].endswith(f"0002156C{BANK_FULL:012d}")


def test_unknown_terminal_bad_mac_and_format(h: Harness) -> None:
    request = purchase(h, CARD, 100, account="96")
    request["41"] = "P0999   "
    h.keys.terminals["P0999"] = bytes(16)
    answer = h.send(request)
    assert answer is not None and (answer["39"], answer["_mac"]) == ("03", "bad")
    forged = purchase(h, CARD, 100, account="96")
    h.keys.terminals["P0001"], real = bytes(16), h.keys.terminals["P0001"]
    answer = h.send(forged)
    h.keys.terminals["P0001"] = real
    assert answer is not None and answer["39"] == "63"
    bad = h.message("0200", de2=CARD, de3="00x600", de4=f"{100:012d}")
    assert code(h.send(bad)) == "30"
    assert h.engine.cards[CARD].purse_fen == FULL


def test_kinds_are_journalled_with_their_kind(h: Harness) -> None:
    h.send(purchase(h, CARD, 100, account="96"))
    payment = next(r for r in reversed(h.journal) if isinstance(r, IsoPayment))
    assert payment.kind == Kind.PURCHASE and payment.route == "purse"
