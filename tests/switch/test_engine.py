"""The authorisation engine, sans I/O: every rule, idempotency and replay."""

from __future__ import annotations

import pytest

from protocols.codes import ResponseCode as C
from protocols.terminal import Balance, Echo, MacKey, Purchase, Reversal, Tap
from protocols.terminal.codec import encode_request
from switch.config import EngineConfig
from switch.engine import SEQ_JUMP_MAX
from switch.journal.records import CardStatusChanged
from tests.switch.harness import T0_MS, EngineHarness

FULL = 20_000
FARE = 200


@pytest.fixture
def h() -> EngineHarness:
    return EngineHarness()


def tap(seq: int, card: str = "X00000001", terminal: str = "G0001", t: int = T0_MS) -> Tap:
    return Tap(terminal, seq, t, card)


def buy(seq: int, amount: int, card: str = "X00000001", terminal: str = "P0001") -> Purchase:
    return Purchase(terminal, seq, T0_MS, card, amount)


def test_tap_is_approved_and_journalled(h: EngineHarness) -> None:
    response = h.one(tap(1))
    assert (response.code, response.amount_fen, response.balance_fen) == ("00", FARE, FULL - FARE)
    assert response.reference is not None
    (decision,) = h.decisions()
    assert (decision.moved_fen, decision.balance_fen, decision.reference) == (
        -FARE,
        FULL - FARE,
        response.reference,
    )
    assert h.purse("X00000001") == FULL - FARE


def test_purchase_debits_the_amount(h: EngineHarness) -> None:
    response = h.one(buy(1, 350))
    assert (response.code, response.amount_fen, response.balance_fen) == ("00", 350, FULL - 350)


@pytest.mark.parametrize(
    ("card", "code", "balance"),
    [
        ("X00000002", C.LOST_CARD, None),  # temporarily lost
        ("X00000003", C.LOST_CARD, None),  # lost
        ("X00000005", C.INVALID_CARD, None),  # cancelled
        ("X00000006", C.INVALID_CARD, None),  # replaced
        ("X00000007", C.INSUFFICIENT_FUNDS, 0),  # empty purse
        ("X99999999", C.INVALID_CARD, None),  # unknown
        ("not-a-card", C.INVALID_CARD, None),  # wrong shape, still a string
    ],
)
def test_tap_declines(h: EngineHarness, card: str, code: C, balance: int | None) -> None:
    response = h.one(tap(1, card))
    assert (response.code, response.amount_fen, response.balance_fen) == (code, 0, balance)
    (decision,) = h.decisions()  # a decline is a decision too: a retry gets it again
    assert decision.code == code and decision.moved_fen == 0


def test_suspension_leaves_the_transit_purse_usable(h: EngineHarness) -> None:
    # Regulation art. 17 suspends social-security functions; transport is a one-card one.
    assert h.one(tap(1, "X00000004")).code == C.APPROVED


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (0, C.INVALID_AMOUNT),
        (-1, C.INVALID_AMOUNT),
        (-(2**63), C.INVALID_AMOUNT),
        (20_001, C.EXCEEDS_AMOUNT_LIMIT),
        (2**64 - 1, C.EXCEEDS_AMOUNT_LIMIT),
    ],
)
def test_purchase_amount_checks(h: EngineHarness, amount: int, code: C) -> None:
    assert h.one(buy(1, amount)).code == code
    assert h.purse("X00000001") == FULL


def test_purchase_of_exactly_the_balance_then_one_fen_more(h: EngineHarness) -> None:
    assert h.one(buy(1, FULL)).balance_fen == 0
    response = h.one(buy(2, 1))
    assert (response.code, response.balance_fen) == (C.INSUFFICIENT_FUNDS, 0)


def test_terminal_kind_rules(h: EngineHarness) -> None:
    assert h.one(tap(1, terminal="P0001")).code == C.NOT_PERMITTED_TO_TERMINAL
    assert h.one(buy(1, 100, terminal="G0001")).code == C.NOT_PERMITTED_TO_TERMINAL
    assert h.purse("X00000001") == FULL


def test_balance_enquiry(h: EngineHarness) -> None:
    h.one(tap(1))
    response = h.one(Balance("P0001", 1, T0_MS, "X00000001"))
    assert (response.code, response.amount_fen, response.balance_fen) == ("00", 0, FULL - FARE)
    assert h.one(Balance("G0001", 2, T0_MS, "X00000003")).code == C.LOST_CARD


def test_echo_is_answered_and_not_journalled(h: EngineHarness) -> None:
    response = h.one(Echo("G0001", 1, T0_MS))
    assert (response.code, response.reference) == ("00", None)
    assert h.decisions() == []


def test_unknown_terminal_gets_03_unsigned_and_nothing_is_journalled(h: EngineHarness) -> None:
    data = encode_request(tap(1, terminal="G9999"), MacKey(bytes(16)))
    ((response, mac_ok),) = h.feed(data)
    assert response.code == C.INVALID_MERCHANT and not mac_ok
    assert h.decisions() == []


def test_wrong_mac_gets_63_unsigned_and_nothing_moves(h: EngineHarness) -> None:
    data = encode_request(tap(1), MacKey(b"\x01" * 16))
    ((response, mac_ok),) = h.feed(data)
    assert response.code == C.SECURITY_VIOLATION and not mac_ok
    assert h.decisions() == [] and h.purse("X00000001") == FULL
    # The forged seq is not burnt: the real terminal can still use it.
    assert h.one(tap(1)).code == C.APPROVED


def test_tampered_body_fails_the_mac(h: EngineHarness) -> None:
    data = bytearray(encode_request(buy(1, 100), h.key("P0001")))
    data[data.index(b"X00000001") + 8] = ord("2")  # same length, another card
    ((response, _),) = h.feed(bytes(data), "P0001")
    assert response.code == C.SECURITY_VIOLATION


def test_retry_gets_the_original_answer_and_moves_no_money(h: EngineHarness) -> None:
    first = h.one(tap(7))
    again = h.one(tap(7, t=T0_MS + 5_000))  # a retry may carry a new terminal time
    assert again == first
    assert len(h.decisions()) == 1
    assert h.purse("X00000001") == FULL - FARE


def test_retry_of_a_decline_gets_the_decline_even_if_it_would_now_pass(h: EngineHarness) -> None:
    assert h.one(tap(1, "X00000002")).code == C.LOST_CARD
    h.engine.apply(CardStatusChanged(T0_MS, "X00000002", "active", "loss report lifted"))
    assert h.one(tap(1, "X00000002")).code == C.LOST_CARD
    assert h.one(tap(2, "X00000002")).code == C.APPROVED


def test_same_seq_other_content_is_94_and_changes_nothing(h: EngineHarness) -> None:
    original = h.one(buy(3, 100))
    assert h.one(buy(3, 101)).code == C.DUPLICATE_TRANSMISSION
    assert h.one(buy(3, 100, card="X00000008")).code == C.DUPLICATE_TRANSMISSION
    assert h.one(buy(3, 100)) == original
    assert len(h.decisions()) == 1


def test_retry_within_one_batch(h: EngineHarness) -> None:
    first, second = h.send(tap(1), tap(1))
    assert first == second
    assert h.purse("X00000001") == FULL - FARE


def test_seq_older_than_the_window_is_refused(h: EngineHarness) -> None:
    window = h.config.idempotency_window
    h.one(tap(window + 10))
    assert h.one(tap(9)).code == C.DUPLICATE_TRANSMISSION
    assert h.one(tap(11, "X00000008")).code == C.APPROVED  # just inside the window
    assert len(h.decisions()) == 2


def test_a_seq_far_beyond_the_highest_is_refused_and_the_terminal_keeps_working(
    h: EngineHarness,
) -> None:
    clock_seq = 1_796_004_000_000_000  # a counter taken from the clock in microseconds
    h.one(tap(clock_seq))  # a fresh terminal's first jump is allowed
    wild = clock_seq + SEQ_JUMP_MAX + 1
    [(answer, mac_ok)] = h.feed(encode_request(tap(wild, "X00000008"), h.key("G0001")), "G0001")
    assert (answer.code, answer.reference, mac_ok) == (C.FORMAT_ERROR, None, False)
    assert len(h.decisions()) == 1  # not journalled, and the floor did not move
    assert h.one(tap(clock_seq + SEQ_JUMP_MAX, "X00000008")).code == C.APPROVED  # at the edge
    assert h.one(tap(clock_seq + SEQ_JUMP_MAX - 1, "X00000009")).code == C.APPROVED  # in window


def test_out_of_order_seqs_are_never_forgotten_inside_the_window() -> None:
    # Regression guard: evicting by insertion age would drop seq 500 (inserted first)
    # while it is still inside the window, and let its retry move money again.
    h = EngineHarness(EngineConfig(idempotency_window=16))
    h.one(tap(500))
    balance = h.purse("X00000001")
    for seq in range(485, 500):  # 15 older, all inside the window, inserted later
        h.one(tap(seq, "X00000008"))
    for seq in range(501, 520):
        h.one(tap(seq, "X00000009"))
        h.one(tap(500))  # retry: same answer, no money
    assert h.purse("X00000001") == balance


def test_pipelined_batch_answers_in_order() -> None:
    h = EngineHarness(cards=128)
    requests = [tap(seq, f"X{8 + seq:08d}") for seq in range(1, 101)]
    responses = h.send(*requests)
    assert [r.seq for r in responses] == list(range(1, 101))
    assert all(r.code == "00" for r in responses)
    references = [r.reference or 0 for r in responses]
    assert references == sorted(references) and len(set(references)) == 100


def test_reversal_restores_the_purse_exactly_once(h: EngineHarness) -> None:
    h.one(buy(1, 350))
    reversal = h.one(Reversal("P0001", 2, T0_MS, 1))
    assert (reversal.code, reversal.amount_fen, reversal.balance_fen) == ("00", 350, FULL)
    assert h.one(Reversal("P0001", 2, T0_MS, 1)) == reversal  # its own retry
    again = h.one(Reversal("P0001", 3, T0_MS, 1))  # a second reversal of the same
    assert again.code == C.DUPLICATE_TRANSMISSION
    assert h.purse("X00000001") == FULL
    assert h.one(buy(1, 350)).amount_fen == 350  # the original's retry still answers


def test_reversal_of_a_tap_at_a_gate(h: EngineHarness) -> None:
    h.one(tap(1))
    assert h.one(Reversal("G0001", 2, T0_MS, 1)).balance_fen == FULL


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ([], C.ORIGINAL_NOT_FOUND),  # nothing at seq 1
        ([tap(1, "X00000003")], C.INVALID_TRANSACTION),  # a decline moved nothing
        ([Balance("G0001", 1, T0_MS, "X00000001")], C.INVALID_TRANSACTION),
        ([tap(1), Reversal("G0001", 5, T0_MS, 1)], C.DUPLICATE_TRANSMISSION),
    ],
)
def test_reversal_refusals(
    h: EngineHarness, setup: list[Tap | Balance | Reversal], code: C
) -> None:
    for request in setup:
        h.one(request)
    assert h.one(Reversal("G0001", 9, T0_MS, 1)).code == code


def test_reversal_of_a_reversal_is_invalid(h: EngineHarness) -> None:
    h.one(tap(1))
    h.one(Reversal("G0001", 2, T0_MS, 1))
    assert h.one(Reversal("G0001", 3, T0_MS, 2)).code == C.INVALID_TRANSACTION


def test_reversal_is_per_terminal(h: EngineHarness) -> None:
    h.one(tap(1, terminal="G0001"))
    assert h.one(Reversal("G0002", 1, T0_MS, 1)).code == C.ORIGINAL_NOT_FOUND


def test_reversal_returns_money_to_a_card_reported_lost_since(h: EngineHarness) -> None:
    h.one(tap(1))
    h.engine.apply(CardStatusChanged(T0_MS, "X00000001", "lost", "formal loss report"))
    assert h.one(Reversal("G0001", 2, T0_MS, 1)).code == C.APPROVED
    assert h.purse("X00000001") == FULL


def test_replay_rebuilds_identical_caches_and_answers(h: EngineHarness) -> None:
    h.send(*(tap(seq, f"X{8 + seq % 5:08d}") for seq in range(1, 40)))
    h.send(buy(1, 999), buy(2, 5), Reversal("P0001", 3, T0_MS, 1))
    replayed = h.replayed_engine()
    assert {n: c.purse_fen for n, c in replayed.cards.items()} == {
        n: c.purse_fen for n, c in h.engine.cards.items()
    }
    assert replayed.next_reference == h.engine.next_reference
    before = h.one(buy(2, 5))
    h.engine = replayed
    assert h.one(buy(2, 5)) == before


def test_answers_are_counted_by_type_and_code(h: EngineHarness) -> None:
    h.send(tap(1), tap(1), tap(2, "X00000003"))
    assert h.engine.answered[("tap", "00")] == 2
    assert h.engine.answered[("tap", "41")] == 1


def test_window_edge_is_exact_for_retries_and_reversals() -> None:
    h = EngineHarness(EngineConfig(idempotency_window=16))
    h.one(tap(1))
    h.one(tap(17, "X00000008"))  # high = 17: seq 1 is exactly at the floor
    assert h.one(tap(1)).code == C.DUPLICATE_TRANSMISSION
    assert h.one(Reversal("G0001", 18, T0_MS, 1)).code == C.ORIGINAL_NOT_FOUND
    assert h.purse("X00000001") == FULL - FARE


def test_replay_with_a_smaller_window_than_the_one_that_decided() -> None:
    h = EngineHarness(EngineConfig(idempotency_window=1024))
    h.one(tap(1))
    for seq in range(2, 200):
        h.one(tap(seq, "X00000008"))
    h.one(Reversal("G0001", 200, T0_MS, 1))
    small = EngineHarness(EngineConfig(idempotency_window=16))
    small.keys, small.genesis, small.journal = h.keys, h.genesis, h.journal
    assert small.replayed_engine().cards["X00000001"].purse_fen == FULL


def test_decisions_keep_the_terminal_time(h: EngineHarness) -> None:
    h.one(tap(1, t=T0_MS - 1234))
    assert h.decisions()[0].terminal_time_ms == T0_MS - 1234
