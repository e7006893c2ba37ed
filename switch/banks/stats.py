"""Run-time counters of the ISO 8583 channel and the bank links, exported by
switch.metrics. Not journalled and not rebuilt by replay: they count what this process did.
(What the journal knows, such as queue depth or stand-in totals, is read from the state.)"""

from __future__ import annotations

from switch.stats import LATENCY_BUCKETS_SECONDS, BucketHistogram


class BankStatistics:
    def __init__(self) -> None:
        self.answered: dict[tuple[str, str], int] = {}  # (kind, code) → answers
        self.links_up: dict[str, bool] = {}
        self.bank_seconds: dict[str, BucketHistogram] = {}
        self.timeouts_total: dict[str, int] = {}
        self.unmatched_replies_total = 0
        self.bad_mac_replies_total = 0
        self.connections_open = 0
        self.listen_port = 0  # the ISO listener's bound port, once it listens

    def add_bank(self, bank_id: str) -> None:
        self.links_up.setdefault(bank_id, False)
        self.bank_seconds.setdefault(bank_id, BucketHistogram(LATENCY_BUCKETS_SECONDS))
        self.timeouts_total.setdefault(bank_id, 0)

    def count(self, kind: str, code: str) -> None:
        self.answered[(kind, code)] = self.answered.get((kind, code), 0) + 1
