"""The follower's side: its messages (misuse/wire.py) whole, back to back and broken, the
process refusing a conversation that breaks the protocol, and a pass's bound."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import anyio
import pytest

from switch.config import Config
from switch.core import open_switch
from switch.errors import FollowerError
from switch.journal.records import Decision
from switch.misuse import follower as follower_module
from switch.misuse.follower import Follower
from switch.misuse.places import DEFAULT_PLACES, load_places
from switch.misuse.rules import Finding, Rule
from switch.misuse.watcher import FOLLOWER_COMMAND
from switch.misuse.wire import (
    LENGTH,
    MESSAGE_BYTES_MAX,
    Judge,
    Judged,
    Start,
    encode,
    read_message,
)
from switch.transit.rides import Place
from tests.conftest import FakeClock

START = Start(
    "/nowhere", 7, Config().misuse, {"M/M00": (32.629, 110.798)}, {"MI01": Place("M", "M00", "")}
)
JUDGED = Judged(9, [Finding("X00000044", Rule.IMPOSSIBLE_TRAVEL, (7, 8), "50.8 km in 5 min")])


def test_messages_read_back_whole_and_back_to_back() -> None:
    stream = io.BytesIO(encode(START) + encode(Judge(12)) + encode(JUDGED))
    assert read_message(stream) == START
    assert read_message(stream) == Judge(12)
    assert read_message(stream) == JUDGED
    assert read_message(stream) is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (encode(Judge(12))[:2], "inside a message's length"),
        (encode(Judge(12))[:-1], "inside a message"),
        (LENGTH.pack(MESSAGE_BYTES_MAX + 1), "at most"),
        (LENGTH.pack(3) + b"\xc1\xc1\xc1", "undecodable"),
        (LENGTH.pack(2) + b"\x92\x01", "undecodable"),  # an array, but no message's shape
    ],
)
def test_broken_messages_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(FollowerError, match=problem):
        read_message(io.BytesIO(data))


def run_follower(stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        FOLLOWER_COMMAND, check=False, input=stdin, capture_output=True, timeout=60
    )


@pytest.mark.slow
def test_the_process_ends_quietly_with_its_input_and_refuses_a_broken_conversation() -> None:
    ended = run_follower(b"")
    assert (ended.returncode, ended.stdout) == (0, b"")
    out_of_order = run_follower(encode(Judge(12)))
    assert out_of_order.returncode != 0
    assert b"expected Start, got Judge" in out_of_order.stderr
    assert out_of_order.stdout == b""


@pytest.mark.anyio
async def test_a_pass_judges_at_most_its_bound(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module, "JUDGE_RECORDS_MAX", 2)
    switch = open_switch(data_dir, Config(), clock)
    journal = switch.journal
    first = journal.appended_position
    decisions = [
        Decision(clock(), clock(), "MI01", seq, "tap", "X00000044", 0, 0, "00", 0, None, seq)
        for seq in range(1, 6)
    ]
    journal.append(decisions)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            await journal.flush()
            group.cancel_scope.cancel()
    finally:
        journal.close()
    start = Start(str(journal.directory), first, Config().misuse, load_places(DEFAULT_PLACES), {})
    follower = Follower(start)
    assert follower.judge(first + 5).next_index == first + 2
    assert follower.judge(first + 5).next_index == first + 4
    assert follower.judge(first + 5).next_index == first + 5
    assert follower.judge(first + 5) == Judged(first + 5, [])
