"""One journal writer with group commit.

Appenders hand records to `Journal.append()` (synchronous, never blocks) and learn when
they are on disk through `call_when_durable()` (a callback, for the asyncio hot path) or
`await wait_durable()` (for tasks). `run()` starts the only writer, a thread of its own: it
takes everything appended since its last write, writes it with one write() and one
fdatasync(), then hands the group back to the event loop, which releases every waiter the
group covers. While one group is being synced the next one gathers, so the fsync cost is
shared by every request that arrived meanwhile.

Each segment is preallocated to its full size when it is made (switch.durable.preallocate).
Writing inside space the file already has changes no file size and no block map, so the
sync has only data to flush: on the bench machine's ext4 that took a write+fdatasync from
210-240 µs to 145-170 µs (p50) and its kernel CPU from ~95 to ~65 µs. (A `pwritev` with
RWF_DSYNC, write and sync in one call, measured no better and its tail worse:
docs/performance.md.)

A dedicated thread rather than `anyio.to_thread` per group: at low load every request is
a group of its own, and the worker-pool hand-off (a capacity limiter, a queue, a Python
Condition) cost more CPU than the write. Here the loop wakes the thread by releasing a
lock, and the thread wakes the loop with one call_soon_threadsafe / run_sync_soon.

A failed write or fsync raises JournalFailed out of run(): after a failed fsync the kernel
may have dropped the dirty pages, so the only safe move is to stop and recover from disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
import sniffio

from switch.durable import fsync_directory, preallocate
from switch.errors import JournalFailed
from switch.journal.feed import RECORDS_MAX as FEED_RECORDS_MAX
from switch.journal.feed import JournalFeed
from switch.journal.records import Record
from switch.journal.recovery import RecoveryReport
from switch.journal.segment import (
    FORMAT_VERSION,
    HEADER,
    SEGMENT_BYTES_MAX,
    encode_records,
    mark_group_end,
    segment_header,
    segment_name,
)
from switch.stats import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS_SECONDS, BucketHistogram

log = logging.getLogger("onecard.journal")

# Appended but not yet written bytes above which adapters stop reading from their peers
# until the writer catches up: bounds memory when the disk is slower than the offered load.
# 8 MiB is ~80k decisions, several fsyncs' worth even on a slow disk.
PENDING_BYTES_MAX = 8 * 1024 * 1024


@dataclass(frozen=True)
class JournalStatistics:
    appended_position: int
    durable_position: int
    pending_bytes: int
    groups_total: int
    bytes_written_total: int
    segments_total: int


class Journal:
    def __init__(
        self,
        directory: Path,
        recovered: RecoveryReport,
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX,
        pending_bytes_max: int = PENDING_BYTES_MAX,
        sync: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = directory
        self._segment_bytes_max = segment_bytes_max
        # How a group is made durable: os.fdatasync (looked up per call) unless a
        # simulation passes its own to inject failures and know which bytes a crash keeps.
        self._sync = sync
        self._pending_bytes_max = pending_bytes_max
        self._appended = recovered.next_index
        self._durable = recovered.next_index
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_first = recovered.next_index
        self._pending_last_offset = -1  # of the last record's header in the last chunk
        self._chain_key = recovered.chain_key
        self._chain = recovered.last_chain  # after the last appended record
        self._pending_first_chain = recovered.last_chain  # before the pending group
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()
        self._feeds: list[JournalFeed] = []
        # Guards what append() and the writer thread both touch: the pending group and
        # the chain/position it ends at. Held for list operations only, never for I/O.
        self._lock = threading.Lock()
        # Released (under _lock, once) when work arrives for the writer thread; the thread
        # blocks acquiring it. A plain lock: waking a thread through it costs no Python code.
        self._work = threading.Lock()
        self._work.acquire()
        self._work_posted = False
        self._stopping = False
        self._failed: BaseException | None = None
        self._groups_total = 0
        self._bytes_written_total = 0
        self._segments_total = max(recovered.segments, 1)
        self.fsync_seconds = BucketHistogram(LATENCY_BUCKETS_SECONDS)
        self.group_records = BucketHistogram(BATCH_SIZE_BUCKETS)
        last_segment = recovered.last_segment
        if last_segment is not None and _segment_version(last_segment) != FORMAT_VERSION:
            # One format per segment: a journal of an older format goes on in a new segment.
            _retire(last_segment, recovered.last_segment_bytes)
            last_segment = None
            self._segments_total += recovered.last_segment_bytes > HEADER.size
        if last_segment is not None:
            # Not O_APPEND: a crashed run leaves the preallocated space after the records.
            self._fd = os.open(last_segment, os.O_WRONLY)
            self._segment_bytes = recovered.last_segment_bytes
            os.lseek(self._fd, self._segment_bytes, os.SEEK_SET)
            try:
                preallocate(self._fd, segment_bytes_max)
            except OSError as exc:
                # Not worth refusing to start over: the writes fail when the space does.
                log.warning("journal segment %s not preallocated: %s", last_segment, exc)
        else:
            self._fd = self._create_segment(recovered.next_index, recovered.last_chain)
            self._segment_bytes = HEADER.size

    # -- appending (event-loop thread) ---------------------------------------------------

    def append(self, records: Sequence[Record]) -> int:
        """Queue records for the next group; returns the position that covers them. The
        list is the journal's from then on (its feeds keep it): do not change it."""
        if self._failed is not None:
            raise JournalFailed("the journal writer has failed") from self._failed
        data, count, chain, last_offset = encode_records(
            records, self._appended, self._chain, self._chain_key
        )
        if count:
            for feed in self._feeds:
                feed.push(self._appended, records)
            with self._lock:
                self._pending_last_offset = last_offset
                self._pending.append(data)
                self._pending_bytes += len(data)
                self._appended += count
                self._chain = chain
                if not self._work_posted:
                    self._work_posted = True
                    self._work.release()
        return self._appended

    def feed(self, records_max: int = FEED_RECORDS_MAX) -> JournalFeed:
        """A feed of the records appended from now on, for one follower (feed.py)."""
        feed = JournalFeed(self._appended, records_max)
        self._feeds.append(feed)
        return feed

    @property
    def appended_position(self) -> int:
        return self._appended

    @property
    def durable_position(self) -> int:
        return self._durable

    @property
    def chain_key(self) -> bytes:
        return self._chain_key

    @property
    def last_chain(self) -> bytes:
        """The chain value of the last record appended (a snapshot at appended_position
        carries it, to prove which journal it belongs to)."""
        return self._chain

    @property
    def congested(self) -> bool:
        return self._pending_bytes > self._pending_bytes_max

    def call_when_durable(self, position: int, callback: Callable[[], None]) -> None:
        """Run `callback()` in the writer's thread of control once `position` is durable.
        Positions must be registered in non-decreasing order (they are: they come from
        appended_position, which only grows)."""
        if position <= self._durable:
            callback()
        else:
            self._waiters.append((position, callback))

    async def wait_durable(self, position: int) -> None:
        if position <= self._durable:
            return
        event = anyio.Event()
        self._waiters.append((position, event.set))
        await event.wait()

    async def flush(self) -> None:
        await self.wait_durable(self._appended)

    # -- the writer ----------------------------------------------------------------------

    async def run(self) -> None:
        """Write groups until cancelled. Cancel only after flush(): a cancelled run leaves
        appended records unwritten (they were never acknowledged, so nothing is lost).
        Raises JournalFailed when a write or a sync fails."""
        failed = anyio.Event()
        post = _loop_poster()
        thread = threading.Thread(
            target=self._write_groups, args=(post, failed.set), name="journal writer", daemon=True
        )
        with self._lock:
            self._stopping = False
        thread.start()
        try:
            await failed.wait()
            raise JournalFailed(f"journal write failed: {self._failed}") from self._failed
        finally:
            with self._lock:
                self._stopping = True
                if not self._work_posted:
                    self._work_posted = True
                    self._work.release()
            # The thread may be inside a write: it must be out before anyone closes the fd.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join)

    def _write_groups(self, post: Callable[..., object], failed: Callable[[], None]) -> None:
        """The writer thread: wait for work, write and sync it, hand it to the loop."""
        while True:
            self._work.acquire()
            with self._lock:
                self._work_posted = False
                if self._stopping:
                    return
                if not self._pending:
                    continue
                group = self._take_group()
            started = time.perf_counter()
            try:
                self._write_group(*group[:3])
            except OSError as exc:
                self._failed = exc
                post(failed)
                return
            post(self._group_done, group, started)

    def write_now(self) -> None:
        """Write and sync everything appended, in the caller's thread: for deterministic
        simulation and tools, never on the event loop of a serving switch (nor beside a
        running writer thread)."""
        with self._lock:
            if not self._pending:
                return
            group = self._take_group()
            if self._work_posted:  # no thread will take it: back to "no work"
                self._work_posted = False
                self._work.acquire()
        started = time.perf_counter()
        try:
            self._write_group(*group[:3])
        except OSError as exc:
            self._fail(exc)
        self._group_done(group, started)

    def _take_group(self) -> tuple[bytes, int, bytes, int]:
        """(bytes, first index, chain before it, end position) of everything pending;
        called with _lock held."""
        # The group's last record says so on disk: recovery needs it to tell a torn write
        # (only ever the last group) from damage in a group that was acknowledged.
        self._pending[-1] = mark_group_end(self._pending[-1], self._pending_last_offset)
        group = (
            b"".join(self._pending),
            self._pending_first,
            self._pending_first_chain,
            self._appended,
        )
        self._pending = []
        self._pending_bytes = 0
        self._pending_first = self._appended
        self._pending_first_chain = self._chain
        return group

    def _fail(self, exc: OSError) -> NoReturn:
        self._failed = exc
        raise JournalFailed(f"journal write failed: {exc}") from exc

    def _group_done(self, group: tuple[bytes, int, bytes, int], started: float) -> None:
        data, first, _chain, end = group
        self.fsync_seconds.observe(time.perf_counter() - started)
        self.group_records.observe(end - first)
        self._groups_total += 1
        self._bytes_written_total += len(data)
        self._durable = end
        waiters = self._waiters
        while waiters and waiters[0][0] <= end:
            waiters.popleft()[1]()

    def close(self) -> None:
        """Close the segment being written, cut to its records when all went well."""
        try:
            if self._failed is None:
                self._cut_segment()
        finally:
            os.close(self._fd)

    def _cut_segment(self) -> None:
        _cut(self._fd, self._segment_bytes)

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            appended_position=self._appended,
            durable_position=self._durable,
            pending_bytes=self._pending_bytes,
            groups_total=self._groups_total,
            bytes_written_total=self._bytes_written_total,
            segments_total=self._segments_total,
        )

    # -- while the switch is stopped -------------------------------------------------------

    @classmethod
    def append_while_stopped(
        cls, directory: Path, recovered: RecoveryReport, records: list[Record]
    ) -> None:
        """Append records durably with no switch running (demo data, offline admin)."""
        journal = cls(directory, recovered)

        async def write() -> None:
            async with anyio.create_task_group() as group:
                group.start_soon(journal.run)
                journal.append(records)
                await journal.flush()
                group.cancel_scope.cancel()

        try:
            anyio.run(write)
        finally:
            journal.close()

    # -- worker thread -------------------------------------------------------------------

    def _write_group(self, data: bytes, first_index: int, prev_chain: bytes) -> None:
        if self._segment_bytes + len(data) > self._segment_bytes_max and (
            self._segment_bytes > HEADER.size
        ):
            self._cut_segment()
            os.close(self._fd)
            self._fd = self._create_segment(first_index, prev_chain)
            self._segment_bytes = HEADER.size
            self._segments_total += 1
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        (self._sync or os.fdatasync)(self._fd)
        self._segment_bytes += len(data)

    def _create_segment(self, first_index: int, prev_chain: bytes) -> int:
        path = self.directory / segment_name(first_index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, segment_header(first_index, prev_chain))
        # The header durable before the file grows: a crash then leaves a segment that
        # starts with its header, whatever zeros follow it.
        os.fsync(fd)
        preallocate(fd, self._segment_bytes_max)
        os.fsync(fd)
        fsync_directory(self.directory)  # the new name itself must survive a crash
        return fd


def _segment_version(path: Path) -> int:
    with open(path, "rb") as file:
        version: int = HEADER.unpack(file.read(HEADER.size))[1]
    return version


def _cut(fd: int, records_end: int) -> None:
    """Cut a segment to its records. Only the last segment may run on in preallocated
    zeros (segment.py): cut and synced before the next segment exists, so a crash cannot
    leave one elsewhere."""
    os.ftruncate(fd, records_end)
    os.fsync(fd)


def _retire(path: Path, records_end: int) -> None:
    """Close a segment for good before a new one starts at the next record: cut to its
    records (only the last segment may run on in zeros), or removed when it holds none (the
    new one takes its name)."""
    if records_end > HEADER.size:
        with open(path, "r+b") as file:
            _cut(file.fileno(), records_end)
    else:
        path.unlink()
        fsync_directory(path.parent)


def _loop_poster() -> Callable[..., object]:
    """How a foreign thread asks the running event loop to call `f(*args)` soon."""
    if sniffio.current_async_library() == "trio":
        import trio  # noqa: PLC0415 - only when the switch runs on trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    return asyncio.get_running_loop().call_soon_threadsafe
