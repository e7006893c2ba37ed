"""The journal's in-memory feed: every record once, in order, only once durable, and the
files for whatever the feed has forgotten. A follower reading the feed and the files must
see exactly what recovery replays."""

from __future__ import annotations

from pathlib import Path

import pytest

from switch.journal import Record
from switch.journal.feed import JournalFeed
from switch.store.tail import JournalTail
from tests.journal.test_journal import decisions, recover_all, writing


def test_takes_what_was_pushed_in_order_across_chunks() -> None:
    feed = JournalFeed(10)
    first, second = decisions(10, 3), decisions(13, 4)
    feed.push(10, first)
    feed.push(13, second)
    assert feed.take(10, 17, 100) == first + second
    assert feed.buffered == 7  # nothing is forgotten until the follower moves past it
    assert feed.take(17, 17, 100) == []
    assert feed.buffered == 0


def test_takes_stop_at_the_durable_end_and_the_count() -> None:
    feed = JournalFeed(0)
    records = decisions(0, 10)
    feed.push(0, records[:4])
    feed.push(4, records[4:])
    assert feed.take(0, 3, 100) == records[:3]  # only 3 durable
    assert feed.take(3, 10, 2) == records[3:5]  # crosses a chunk edge mid-way
    assert feed.take(5, 10, 100) == records[5:]
    assert feed.take(10, 10, 100) == []


def test_a_follower_behind_what_the_feed_holds_is_told_to_read_the_files() -> None:
    feed = JournalFeed(0, records_max=5)
    records = decisions(0, 9)
    for index in range(0, 9, 3):
        feed.push(index, records[index : index + 3])
    assert feed.buffered == 3  # the oldest chunks went to stay within 5
    assert feed.take(0, 9, 100) is None
    assert feed.take(5, 9, 100) is None  # within a forgotten chunk
    assert feed.take(6, 9, 100) == records[6:]


def test_a_feed_made_after_records_were_appended_does_not_hold_them() -> None:
    feed = JournalFeed(50)
    assert feed.take(40, 50, 100) is None
    feed.push(50, decisions(50, 1))
    assert feed.take(40, 51, 100) is None
    assert feed.take(50, 51, 100) == decisions(50, 1)


def test_a_push_out_of_order_is_refused() -> None:
    feed = JournalFeed(0)
    feed.push(0, decisions(0, 2))
    with pytest.raises(AssertionError, match="expected record 2"):
        feed.push(3, decisions(3, 1))


@pytest.mark.anyio
async def test_a_follower_on_feed_and_files_sees_what_recovery_replays(tmp_path: Path) -> None:
    groups = [decisions(index * 7, 7) for index in range(12)]
    seen: list[Record] = []
    async with writing(tmp_path) as journal:
        await journal.wait_durable(journal.append(groups[0]))  # before the feed existed
        feed = journal.feed()
        feed_bounded = journal.feed(records_max=20)  # one that forgets, beside it
        tail = JournalTail(tmp_path)
        for group in groups[1:]:
            await journal.wait_durable(journal.append(group))
        for source in (feed, feed_bounded):
            seen = []
            while len(seen) < journal.durable_position:
                start = len(seen)
                batch = source.take(start, journal.durable_position, 10)
                if batch is None:
                    batch = tail.read(start, journal.durable_position, 10)
                seen.extend(batch)
            replayed, _report = recover_all(tmp_path)
            assert seen == [record for _index, record in replayed]
