"""The task that runs the misuse rules on durable decisions and journals review flags.

The rules run in a follower process (misuse/follower.py) that reads the durable records
from the journal's files; this task starts it, tells it each pass how far the journal is
durable, and turns what it finds into review flags through Switch.submit like any
administrative record. The switch's event loop pays one small message each way per
pass, not the rules' cost per decision.

It follows the journal from where it stood when the switch started, so it sees each
decision once, after it is durable, and never slows an answer. After a restart of the
switch, or of the follower, judging goes on from the first record not judged yet, and
the rules have forgotten every card's latest use: a pair of uses straddling a restart is
not judged (the rules keep no state in the journal, by design: they raise questions,
not facts).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from switch.casework.records import ReviewFlagRaised
from switch.core import Switch
from switch.errors import FollowerError
from switch.journal.records import Record
from switch.misuse.config import MisuseConfig
from switch.misuse.places import Position
from switch.misuse.rules import Finding
from switch.misuse.wire import LENGTH, Judge, Judged, Start, body_length, decode, encode

log = logging.getLogger("onecard.misuse")

FOLLOWER_COMMAND = (sys.executable, "-m", "switch.misuse.follower")
# Shortest time between two passes once caught up: the rules judge minutes, so waiting
# a little batches several journal groups into a pass, at one message each way.
PASS_INTERVAL_SECONDS = 0.05
# A follower that takes longer than this to answer one pass (at most JUDGE_RECORDS_MAX
# records, ~0.2 s) is stuck: it is killed and another started.
ANSWER_SECONDS_MAX = 60.0
# Before starting a follower again after one failed: a follower that cannot start (a
# broken installation) must not spin the switch's loop.
RESTART_SECONDS = 1.0
# Followers that may fail in a row without judging a record before the watcher skips
# what they are stuck on, up to the durable position: a record they cannot read (its
# segment archived away) or that crashes them must not stop the rules for good.
FAILURES_IN_A_ROW_MAX = 3


class MisuseWatcher:
    def __init__(self, switch: Switch, config: MisuseConfig, places: dict[str, Position]) -> None:
        self.switch = switch
        self.config = config
        self.places = places
        self.next_index = switch.journal.appended_position
        self.flags_total = 0
        self.restarts_total = 0
        self.skipped_records_total = 0
        self.follower_pid: int | None = None
        self._judged: anyio.Event | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        stuck_at, failures = -1, 0
        while True:
            try:
                await self._follow()
            except (FollowerError, OSError, anyio.BrokenResourceError) as exc:
                self.restarts_total += 1
                failures = failures + 1 if self.next_index == stuck_at else 1
                stuck_at = self.next_index
                log.error(
                    "misuse follower failed (%s); starting another in %.0f s, judging from "
                    "record %d; the cards' latest uses before it are forgotten",
                    exc,
                    RESTART_SECONDS,
                    self.next_index,
                )
                if failures >= FAILURES_IN_A_ROW_MAX and self.next_index < (
                    self.switch.journal.durable_position
                ):
                    self._skip(failures)
                    stuck_at, failures = -1, 0
            await anyio.sleep(RESTART_SECONDS)

    def _skip(self, failures: int) -> None:
        durable = self.switch.journal.durable_position
        log.error(
            "misuse follower failed %d times in a row at record %d: records %d to %d are "
            "skipped, not judged",
            failures,
            self.next_index,
            self.next_index,
            durable - 1,
        )
        self.skipped_records_total += durable - self.next_index
        self.next_index = durable
        self._progressed()

    async def wait_judged(self, position: int) -> None:
        """Until every record before `position` has been judged (tests, tools)."""
        while self.next_index < position:
            if self._judged is None:
                self._judged = anyio.Event()
            await self._judged.wait()

    def _progressed(self) -> None:
        if self._judged is not None:
            self._judged.set()
            self._judged = None

    async def _follow(self) -> None:
        journal = self.switch.journal
        process = await anyio.open_process(
            FOLLOWER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
        )
        self.follower_pid = process.pid
        try:
            assert process.stdin is not None and process.stdout is not None
            answers = BufferedByteReceiveStream(process.stdout)
            terminals = {tid: t.place for tid, t in self.switch.engine.terminals.items()}
            start = Start(
                str(journal.directory), self.next_index, self.config, self.places, terminals
            )
            await process.stdin.send(encode(start))
            while True:
                await journal.wait_durable(self.next_index + 1)
                await process.stdin.send(encode(Judge(journal.durable_position)))
                with anyio.fail_after(ANSWER_SECONDS_MAX):
                    judged = await self._answer(answers)
                self._raise_flags(judged.findings)
                self.next_index = judged.next_index
                self._progressed()
                if self.next_index >= journal.durable_position:
                    await anyio.sleep(PASS_INTERVAL_SECONDS)
        except TimeoutError as exc:
            raise FollowerError(f"no answer in {ANSWER_SECONDS_MAX:.0f} s") from exc
        except (anyio.EndOfStream, anyio.IncompleteRead) as exc:
            raise FollowerError("it exited") from exc
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                await process.aclose()
            self.follower_pid = None

    @staticmethod
    async def _answer(answers: BufferedByteReceiveStream) -> Judged:
        length = body_length(await answers.receive_exactly(LENGTH.size))
        message = decode(await answers.receive_exactly(length))
        if type(message) is not Judged:
            raise FollowerError(f"expected Judged, got {type(message).__name__}")
        return message

    def _raise_flags(self, findings: list[Finding]) -> None:
        if not findings:
            return
        engine = self.switch.engine
        first_id = engine.casework.next_id(engine.casework.flags)
        now_ms = self.switch.clock()
        flags: list[Record] = [
            ReviewFlagRaised(
                now_ms,
                first_id + offset,
                finding.card,
                finding.rule.value,
                list(finding.evidence),
                finding.detail,
            )
            for offset, finding in enumerate(findings)
        ]
        self.switch.submit(flags)
        self.flags_total += len(flags)
