"""Invariants of the engine under random traffic: money is conserved, no request moves
money twice, a purse never goes negative, and a replay of the journal is the live state."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.terminal import Balance, Purchase, Request, Reversal, Tap
from switch.config import EngineConfig
from tests.switch.harness import T0_MS, EngineHarness

CARDS = [f"X{n:08d}" for n in range(1, 11)]
GATES = ["G0001", "G0002"]
POS = ["P0001", "P0002"]
seqs = st.integers(min_value=1, max_value=80)


def requests() -> st.SearchStrategy[Request]:
    return st.one_of(
        st.builds(Tap, st.sampled_from(GATES), seqs, st.just(T0_MS), st.sampled_from(CARDS)),
        st.builds(
            Purchase,
            st.sampled_from(POS),
            seqs,
            st.just(T0_MS),
            st.sampled_from(CARDS),
            st.integers(min_value=-5, max_value=25_000),
        ),
        st.builds(
            Balance, st.sampled_from(GATES + POS), seqs, st.just(T0_MS), st.sampled_from(CARDS)
        ),
        st.builds(Reversal, st.sampled_from(GATES + POS), seqs, st.just(T0_MS), seqs),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(requests(), min_size=1, max_size=12), min_size=1, max_size=25))
def test_invariants_under_random_traffic(batches: list[list[Request]]) -> None:
    h = EngineHarness(EngineConfig(idempotency_window=32), cards=len(CARDS))
    initial = {card: h.purse(card) for card in CARDS}
    for batch in batches:
        for terminal in {r.terminal_id for r in batch}:
            h.send(*(r for r in batch if r.terminal_id == terminal))
        decisions = h.decisions()
        moved: Counter[str] = Counter()
        for decision in decisions:
            moved[decision.card] += decision.moved_fen
        for card in CARDS:
            assert h.purse(card) == initial[card] + moved[card]
            assert h.purse(card) >= 0
        keys = Counter((d.terminal_id, d.seq) for d in decisions)
        assert max(keys.values()) == 1, "a (terminal, seq) was decided twice"
        reversed_originals = Counter(
            (d.terminal_id, d.original_seq)
            for d in decisions
            if d.kind == "reversal" and d.code == "00"
        )
        assert not reversed_originals or max(reversed_originals.values()) == 1
    replayed = h.replayed_engine()
    assert {c: replayed.cards[c].purse_fen for c in CARDS} == {c: h.purse(c) for c in CARDS}
