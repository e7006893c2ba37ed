"""The used-nonce store: one-time use of QR codes, in bounded memory.

A nonce must be remembered only while its code could still be accepted: until the code's
expiry plus the clock skew. Entries are forgotten in order of that time (a heap), each
insertion first dropping what has lapsed, so memory follows the scan rate over one
validity period rather than growing with history. The store is rebuilt on restart by
replaying the decisions that consumed nonces (switch.engine applies them here), so a code
used before a restart stays used after it.

Time only moves forward here: `high_water_ms` is the latest decision time seen, and the
scan checks judge validity against it rather than a clock that may have stepped back,
since an entry forgotten at a later time must never meet a code judged at an earlier one.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from switch.errors import StateError

# The most nonces held at once. At the default validity (60 s) and skew (15 s) an entry
# lives 90 s at most, so 262,144 entries sustain ~2,900 scans a second: many times Shiyan's
# busiest hour. Each entry costs ~200 bytes (dict slot, heap tuple, two small objects), so
# the store stays under ~50 MiB. At the cap the switch refuses new scans (96) without
# consuming their nonces until entries lapse: forgetting an unexpired nonce early would let
# its code be used twice, so the store fails closed.
REPLAY_ENTRIES_MAX = 262_144


@dataclass(frozen=True)
class NonceStoreStatistics:
    entries: int
    entries_max: int
    high_water_ms: int


class NonceStore:
    __slots__ = ("_forget_after", "_queue", "entries_max", "high_water_ms")

    def __init__(self, entries_max: int = REPLAY_ENTRIES_MAX) -> None:
        self._forget_after: dict[bytes, int] = {}
        self._queue: list[tuple[int, bytes]] = []
        self.entries_max = entries_max
        self.high_water_ms = 0

    def __contains__(self, nonce: bytes) -> bool:
        return nonce in self._forget_after

    def __len__(self) -> int:
        return len(self._forget_after)

    def now(self, now_ms: int) -> int:
        """The time scan checks use: never earlier than any decision already made."""
        return max(now_ms, self.high_water_ms)

    def full(self, now_ms: int) -> bool:
        """Whether a new nonce would exceed the cap once lapsed entries are dropped.

        Dropping them here changes no answer: a lapsed entry's code is expired at any time
        it could be judged at again, so it is refused before its nonce is looked up. On
        replay `observe` drops the same entries before the same decision, so the count, and
        with it this answer, is the same live and replayed."""
        self._prune(self.now(now_ms))
        return len(self._forget_after) >= self.entries_max

    def observe(self, time_ms: int) -> None:
        self.high_water_ms = max(self.high_water_ms, time_ms)
        self._prune(self.high_water_ms)

    def remember(self, nonce: bytes, forget_after_ms: int) -> None:
        """Record a consumed nonce; call `observe` with the decision's time first."""
        if nonce in self._forget_after:
            raise StateError(f"QR nonce {nonce.hex()} consumed twice")
        if len(self._forget_after) >= self.entries_max:
            raise StateError("QR nonce store over its cap: a decision consumed a nonce anyway")
        self._forget_after[nonce] = forget_after_ms
        heapq.heappush(self._queue, (forget_after_ms, nonce))

    def _prune(self, now_ms: int) -> None:
        queue = self._queue
        while queue and queue[0][0] < now_ms:
            _, nonce = heapq.heappop(queue)
            del self._forget_after[nonce]

    def statistics(self) -> NonceStoreStatistics:
        return NonceStoreStatistics(len(self._forget_after), self.entries_max, self.high_water_ms)
