"""E-card scans in the engine, sans I/O: every check, one-time use, key rotation, and that a
scan is decided by the very rules of the physical card it stands for."""

from __future__ import annotations

import pytest

from protocols.codes import ResponseCode as C
from protocols.ecard import BusinessType
from protocols.terminal import Reversal, Scan, Tap
from switch.ecard.issue import rotation
from switch.ecard.records import EcardBound, EcardUnbound
from switch.ecard.replay import NonceStore
from switch.errors import EcardError
from switch.journal.records import CardStatusChanged, Decision
from tests.ecard.helpers import claims_of, flip, resign
from tests.switch.harness import T0_MS, EngineHarness

FULL = 20_000
FARE = 200  # flat line B1 of the demo fare table (gates G0001..)
SKEW_MS = 15_000
VALIDITY_MS = 60_000
MINUTE_MS = 60_000
B = BusinessType
ELDERLY = "X00000095"  # 80 free rides a month
LEVEL_1 = "X00000008"


@pytest.fixture
def h() -> EngineHarness:
    return EngineHarness(cards=100)


def tap(seq: int, card: str = "X00000001", terminal: str = "G0001") -> Tap:
    return Tap(terminal, seq, T0_MS, card)


def scans(h: EngineHarness) -> list[Decision]:
    return [d for d in h.decisions() if d.kind == "scan"]


# -- approved, and decided as the physical card ----------------------------------------


def test_scan_at_a_gate_pays_the_fare_from_the_physical_cards_purse(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    response = h.scan("G0001", 1, qr)
    assert (response.code, response.amount_fen, response.balance_fen) == ("00", FARE, FULL - FARE)
    assert h.purse("X00000001") == FULL - FARE
    (decision,) = scans(h)
    assert (decision.card, decision.moved_fen, decision.reference) == (
        "X00000001",
        -FARE,
        response.reference,
    )
    assert decision.qr_nonce == claims_of(qr).nonce
    assert decision.qr_forget_after_ms == T0_MS + VALIDITY_MS + SKEW_MS


def test_scan_at_a_pos_pays_the_amount(h: EngineHarness) -> None:
    response = h.scan("P0001", 1, h.mint("X00000001"), amount_fen=350)
    assert (response.code, response.amount_fen, response.balance_fen) == ("00", 350, FULL - 350)


@pytest.mark.parametrize(
    ("amount", "code"), [(0, C.INVALID_AMOUNT), (20_001, C.EXCEEDS_AMOUNT_LIMIT)]
)
def test_scan_at_a_pos_meets_the_purchase_amount_rules(
    h: EngineHarness, amount: int, code: C
) -> None:
    assert h.scan("P0001", 1, h.mint("X00000001"), amount_fen=amount).code == code


def test_scan_and_tap_share_the_purse_and_the_transit_state(h: EngineHarness) -> None:
    assert h.one(tap(1)).amount_fen == FARE
    h.now_ms += 30_000  # within the flat line's 3 minutes: the same boarding, charged once
    again = h.scan("G0001", 2, h.mint("X00000001"))
    assert (again.code, again.amount_fen) == ("00", 0)
    h.now_ms += 2 * 60 * MINUTE_MS  # a new ride, hours later
    assert h.scan("G0001", 3, h.mint("X00000001")).amount_fen == FARE
    assert h.purse("X00000001") == FULL - 2 * FARE


def test_scan_and_tap_count_toward_the_same_free_rides(h: EngineHarness) -> None:
    assert h.one(tap(1, ELDERLY)).amount_fen == 0
    h.now_ms += 2 * 60 * MINUTE_MS
    assert h.scan("G0001", 2, h.mint(ELDERLY)).amount_fen == 0
    assert h.engine.transit[ELDERLY].free_rides_used == 2
    h.now_ms += 10_000  # a repeat within the line's 20 s is refused, whichever was shown
    assert h.one(tap(3, ELDERLY)).code == C.EXCEEDS_FREQUENCY_LIMIT


def test_query_code_answers_the_balance_at_a_pos_and_a_medical_counter(h: EngineHarness) -> None:
    for terminal in ("P0001", "H0001"):
        response = h.scan(terminal, 1, h.mint(LEVEL_1, B.QUERY))
        assert (response.code, response.amount_fen, response.balance_fen) == ("00", 0, FULL)


def test_medical_code_identifies_the_holder_and_moves_nothing(h: EngineHarness) -> None:
    response = h.scan("H0001", 1, h.mint(LEVEL_1, B.MEDICAL))
    assert (response.code, response.amount_fen, response.balance_fen) == ("00", 0, None)
    assert scans(h)[0].card == LEVEL_1


def test_medical_code_of_a_suspended_card_is_restricted(h: EngineHarness) -> None:
    assert h.scan("H0001", 1, h.mint("X00000004", B.MEDICAL)).code == C.RESTRICTED_CARD
    assert h.scan("G0001", 1, h.mint("X00000004")).code == C.APPROVED  # the purse still pays


def test_a_scan_can_be_reversed(h: EngineHarness) -> None:
    h.scan("P0001", 1, h.mint("X00000001"), amount_fen=777)
    reversal = h.one(Reversal("P0001", 2, T0_MS, 1))
    assert (reversal.code, reversal.amount_fen, reversal.balance_fen) == ("00", 777, FULL)


# -- each refusal, with its own code ---------------------------------------------------


def test_expired_code(h: EngineHarness) -> None:
    qr = h.mint("X00000001", at_ms=T0_MS - VALIDITY_MS - SKEW_MS - 1)
    assert h.scan("G0001", 1, qr).code == C.EXPIRED_CARD
    edge = h.mint("X00000001", at_ms=T0_MS - VALIDITY_MS - SKEW_MS)
    assert h.scan("G0001", 2, edge).code == C.APPROVED
    assert h.purse("X00000001") == FULL - FARE


def test_not_yet_valid_code(h: EngineHarness) -> None:
    assert h.scan("G0001", 1, h.mint("X00000001", at_ms=T0_MS + SKEW_MS + 1)).code == (
        C.QR_NOT_YET_VALID
    )
    assert h.scan("G0001", 2, h.mint("X00000001", at_ms=T0_MS + SKEW_MS)).code == C.APPROVED


def test_forged_signature(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    assert h.scan("G0001", 1, flip(qr, 90)).code == C.QR_SIGNATURE_INVALID
    other_card = resign(qr, bytes(32), card_token=claims_of(h.mint("X00000010")).card_token)
    assert h.scan("G0001", 2, other_card).code == C.QR_SIGNATURE_INVALID  # signed by a stranger
    assert h.purse("X00000001") == FULL and h.purse("X00000010") == FULL


def test_unknown_key_id(h: EngineHarness) -> None:
    qr = resign(h.mint("X00000001"), bytes(32), key_id=9)
    assert h.scan("G0001", 1, qr).code == C.QR_KEY_UNKNOWN


def test_retired_key_and_rotation(h: EngineHarness) -> None:
    old = h.mint("X00000001")
    key_id = h.engine.ecard.keys.next_key_id()
    public = h.keys.new_qr_key(key_id)
    h.submit(*rotation(h.engine.ecard, key_id, public, h.now_ms, retire_after_ms=MINUTE_MS))
    new = h.mint("X00000001")
    assert claims_of(old).key_id == 1 and claims_of(new).key_id == key_id
    assert h.scan("G0001", 1, old).code == C.APPROVED  # the previous key, before retirement
    h.now_ms += MINUTE_MS  # the old key's retirement time
    late = h.mint("X00000010", at_ms=h.now_ms - 1000)
    assert claims_of(late).key_id == key_id
    old_again = resign(late, h.keys.qr_signing[1], key_id=1)
    assert h.scan("G0001", 2, old_again).code == C.QR_KEY_RETIRED
    assert h.scan("G0001", 3, late).code == C.APPROVED
    assert h.replayed_engine().ecard.keys.get(1) is not None  # both recorded in the journal


def test_replayed_code(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    assert h.scan("G0001", 1, qr).code == C.APPROVED
    h.now_ms += VALIDITY_MS  # still in date, by the skew
    assert h.scan("P0001", 1, qr, amount_fen=100).code == C.QR_ALREADY_USED  # another terminal
    assert h.scan("G0001", 2, qr).code == C.QR_ALREADY_USED
    assert h.purse("X00000001") == FULL - FARE


def test_wrong_business_type_for_the_terminal(h: EngineHarness) -> None:
    assert h.scan("G0001", 1, h.mint("X00000001", B.QUERY)).code == C.QR_BUSINESS_NOT_ACCEPTED
    assert h.scan("P0001", 1, h.mint("X00000001", B.MEDICAL)).code == C.QR_BUSINESS_NOT_ACCEPTED
    assert h.scan("H0001", 1, h.mint("X00000001", B.PAYMENT)).code == C.QR_BUSINESS_NOT_ACCEPTED


def test_level_1_payment_attempt(h: EngineHarness) -> None:
    with pytest.raises(EcardError, match="level-1"):
        h.mint(LEVEL_1)  # the issuer will not mint one …
    query = h.mint(LEVEL_1, B.QUERY)
    payment = resign(query, h.keys.qr_signing[1], business_type=B.PAYMENT)  # … a bug might
    assert h.scan("G0001", 1, payment).code == C.ECARD_LEVEL_TOO_LOW
    assert (
        h.scan(
            "P0001",
            1,
            resign(query, h.keys.qr_signing[1], business_type=B.PAYMENT, nonce=bytes(8)),
            amount_fen=100,
        ).code
        == C.ECARD_LEVEL_TOO_LOW
    )
    assert h.purse(LEVEL_1) == FULL


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ("X00000002", C.LOST_CARD),  # temporarily lost
        ("X00000003", C.LOST_CARD),  # lost
        ("X00000005", C.INVALID_CARD),  # cancelled
        ("X00000006", C.INVALID_CARD),  # replaced
        ("X00000007", C.INSUFFICIENT_FUNDS),  # empty purse
    ],
)
def test_the_e_card_shares_its_physical_cards_state(h: EngineHarness, card: str, code: C) -> None:
    assert h.scan("G0001", 1, h.mint(card)).code == code


def test_card_reported_lost_after_the_code_was_minted(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    h.submit(CardStatusChanged(h.now_ms, "X00000001", "lost", "reported at the counter"))
    assert h.scan("G0001", 1, qr).code == C.LOST_CARD
    assert h.purse("X00000001") == FULL


def test_unbound_and_rebound_e_cards(h: EngineHarness) -> None:
    qr = h.mint("X00000010")
    h.submit(EcardBound(h.now_ms, "X00000010", bytes(range(8)), 2))  # a new phone
    assert h.scan("G0001", 1, qr).code == C.INVALID_CARD
    assert h.scan("G0001", 2, h.mint("X00000010")).code == C.APPROVED
    h.submit(EcardUnbound(h.now_ms, "X00000010", "holder closed the e-card"))
    with pytest.raises(EcardError, match="no e-card"):
        h.mint("X00000010")


@pytest.mark.parametrize("qr", [b"", b"https://example.com/pay?id=1", b"SC1:" + b"0" * 141])
def test_unreadable_code(h: EngineHarness, qr: bytes) -> None:
    assert h.scan("G0001", 1, qr).code == C.QR_UNREADABLE


def test_every_refusal_has_its_own_code() -> None:
    codes = [
        C.EXPIRED_CARD,
        C.QR_NOT_YET_VALID,
        C.QR_SIGNATURE_INVALID,
        C.QR_KEY_UNKNOWN,
        C.QR_KEY_RETIRED,
        C.QR_ALREADY_USED,
        C.QR_BUSINESS_NOT_ACCEPTED,
        C.ECARD_LEVEL_TOO_LOW,
        C.LOST_CARD,
    ]
    assert len(set(codes)) == len(codes)


# -- one-time use: what consumes a nonce, retries, replay, bounds ---------------------


def test_a_retry_gets_the_original_answer_not_a_replay_refusal(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    first = h.scan("G0001", 7, qr)
    h.now_ms += 5_000
    assert h.scan("G0001", 7, qr) == first
    assert h.scan("G0001", 7, h.mint("X00000001")).code == C.DUPLICATE_TRANSMISSION
    assert h.purse("X00000001") == FULL - FARE and len(scans(h)) == 1


def test_refusals_before_the_signature_do_not_burn_the_holders_code(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    assert h.scan("G0001", 1, flip(qr, 93)).code == C.QR_SIGNATURE_INVALID
    assert h.scan("G0001", 2, qr).code == C.APPROVED


def test_refusals_after_the_signature_consume_the_code(h: EngineHarness) -> None:
    qr = h.mint("X00000001", B.QUERY)
    assert h.scan("G0001", 1, qr).code == C.QR_BUSINESS_NOT_ACCEPTED
    assert h.scan("P0001", 1, qr).code == C.QR_ALREADY_USED


def test_replay_rebuilds_the_used_nonces(h: EngineHarness) -> None:
    used = h.mint("X00000001")
    assert h.scan("G0001", 1, used).code == C.APPROVED
    h.engine = h.replayed_engine()  # a restart
    assert h.scan("G0001", 2, used).code == C.QR_ALREADY_USED
    assert h.scan("G0001", 1, used).code == C.APPROVED  # the retry, from the rebuilt window


def test_used_nonces_are_forgotten_once_their_code_has_expired(h: EngineHarness) -> None:
    for seq in range(1, 6):
        h.scan("P0001", seq, h.mint(f"X{10 + seq:08d}"), amount_fen=1)
    assert len(h.engine.ecard.nonces) == 5
    h.now_ms += VALIDITY_MS + SKEW_MS + 1
    h.scan("P0001", 6, h.mint("X00000020"), amount_fen=1)
    assert len(h.engine.ecard.nonces) == 1
    assert len(h.replayed_engine().ecard.nonces) == 1


def test_at_the_cap_scans_are_refused_without_consuming_until_entries_lapse(
    h: EngineHarness,
) -> None:
    h.engine.ecard.nonces = NonceStore(entries_max=2)
    assert h.scan("P0001", 1, h.mint("X00000011"), amount_fen=1).code == C.APPROVED
    assert h.scan("P0001", 2, h.mint("X00000012"), amount_fen=1).code == C.APPROVED
    waiting = h.mint("X00000013")
    assert h.scan("P0001", 3, waiting, amount_fen=1).code == C.SYSTEM_MALFUNCTION
    h.now_ms += VALIDITY_MS + SKEW_MS + 1
    fresh = h.mint("X00000013")
    assert h.scan("P0001", 4, fresh, amount_fen=1).code == C.APPROVED
    assert h.purse("X00000013") == FULL - 1


def test_a_clock_stepping_back_cannot_revive_a_forgotten_code(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    assert h.scan("G0001", 1, qr).code == C.APPROVED
    h.now_ms += 10 * MINUTE_MS  # the nonce is forgotten at the next scan
    assert h.scan("P0001", 1, h.mint("X00000010"), amount_fen=1).code == C.APPROVED
    assert len(h.engine.ecard.nonces) == 1
    h.now_ms = T0_MS + 1000  # the switch's clock steps back
    assert h.scan("G0001", 2, qr).code == C.EXPIRED_CARD  # judged at the latest time seen


def test_scan_fingerprint_covers_amount_and_code(h: EngineHarness) -> None:
    qr = h.mint("X00000001")
    first = h.scan("P0001", 5, qr, amount_fen=100)
    assert h.one(Scan("P0001", 5, T0_MS, qr, 101)).code == C.DUPLICATE_TRANSMISSION
    assert h.scan("P0001", 5, qr, amount_fen=100) == first
