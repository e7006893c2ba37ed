"""The bank path in the deterministic simulator: a faulty run keeps every invariant and
drains, a seed replays exactly, and deliberately broken bank cores are caught within a
bounded number of steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocols.iso8583.messages import Mti, base_mti
from switch.bank_simulation import BankPathSimulator
from switch.banks.core import Acquirer, Effects
from switch.banks.records import BankRequestSent, SafQueued
from switch.journal.records import Record
from switch.simulation import InvariantViolation

SEED = int(os.environ.get("ONECARD_SIM_SEED", "20261129"))
STEPS = 3_000
# A planted bug must be found well inside this many steps.
BUG_FOUND_WITHIN_STEPS = 3_000


def test_bank_faults_keep_every_invariant_and_the_queues_drain(tmp_path: Path) -> None:
    simulator = BankPathSimulator(SEED, tmp_path / "journal")
    statistics = simulator.run(STEPS)
    banks = simulator.bank_statistics
    payments = simulator.engine.payments
    assert statistics.steps == STEPS
    # Every kind of fault struck, and every path ran, or the run proved less than it claims.
    assert statistics.crashes > 5 and statistics.torn_tails > 0
    assert banks.links_down > 5 and banks.ignored > 0
    assert banks.answers_lost > 0 and banks.answers_duplicated > 0
    assert banks.iso_retransmissions > 50 and banks.iso_reversals > 50
    assert banks.saf_repeats > 0 and banks.saf_sent > banks.saf_repeats
    assert payments.late_replies_total > 0  # replayed from the journal after the final crash
    assert payments.standin_approvals_total > 0
    assert banks.drained_checks > 100
    # The final check drained every queue and found every bank's ledger as the switch says.
    assert payments.saf_depth() == 0 and not payments.pending


def test_a_bank_seed_replays_exactly(tmp_path: Path) -> None:
    runs = []
    for attempt in range(2):
        simulator = BankPathSimulator(11, tmp_path / f"run{attempt}")
        statistics = simulator.run(600)
        ledgers = {b: dict(bank.host.balances) for b, bank in simulator.banks.items()}
        runs.append((statistics, simulator.bank_statistics, ledgers, simulator.trace))
    assert runs[0] == runs[1]


class UnjournalledReversalAcquirer(Acquirer):
    """Planted bug: queues a reversal in its state but does not journal it."""

    def _commit(self, fx: Effects, record: Record) -> None:
        if type(record) is SafQueued and record.mti == Mti.REVERSAL:
            self.engine.apply(record)
            return
        super()._commit(fx, record)


class NoRepeatMtiAcquirer(Acquirer):
    """Planted bug: sends store-and-forward retries with the original MTI."""

    def _pump(self, bank_id: str, now: int, fx: Effects) -> None:
        already = len(fx.to_banks)
        super()._pump(bank_id, now, fx)
        for _bank, fields in fx.to_banks[already:]:
            fields["t"] = base_mti(fields["t"])


class DoubleReversalAcquirer(Acquirer):
    """Planted bug: reverses a request that timed out at its bank twice."""

    def _reverse_at_bank(self, fx: Effects, sent: BankRequestSent, now: int) -> None:
        super()._reverse_at_bank(fx, sent, now)
        super()._reverse_at_bank(fx, sent, now)


class TrustingAcquirer(Acquirer):
    """Planted bug: takes a timeout to mean the bank did nothing, and never reverses it.
    Nothing but the banks' ledgers shows it."""

    def _reverse_at_bank(self, fx: Effects, sent: BankRequestSent, now: int) -> None:
        return


@pytest.mark.parametrize(
    "acquirer",
    [UnjournalledReversalAcquirer, NoRepeatMtiAcquirer, DoubleReversalAcquirer, TrustingAcquirer],
)
def test_planted_bank_bugs_are_found(tmp_path: Path, acquirer: type[Acquirer]) -> None:
    simulator = BankPathSimulator(SEED, tmp_path / "journal", acquirer_factory=acquirer)
    with pytest.raises(InvariantViolation, match=f"seed {SEED}") as failure:
        simulator.run(BUG_FOUND_WITHIN_STEPS)
    assert f"reproduce: onecard simulate --banks --seed {SEED}" in str(failure.value)
    assert "last steps" in str(failure.value)
