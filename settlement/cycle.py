"""Settling one closed cycle: read its records back from the journal, build positions,
render the files, write them, and check a re-run against the first run.

    settle_cycle(...)           the whole of it, for the scheduler and `onecard settle`
    read_cycle(...)             the cycle's tallies: segment by segment, in worker
                                processes for large cycles
    scan_catalog(...)           the cycles' closes and settlements, from the journal

The journal is only read, never recovered (recovery may truncate a tail the running
switch is still writing): records up to a durable CycleClosed are complete on disk, and
nothing after the close is read but the close itself. So settling cannot race with
closing, or with anything the switch journals afterwards (late offline uploads go to the
open cycle): a closed cycle's records are fixed forever, and a cycle is settled from its
close record alone, whatever amount it holds.
"""

from __future__ import annotations

import concurrent.futures
import gc
import hashlib
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from settlement.config import SettlementConfig
from settlement.cutover import business_date
from settlement.errors import CycleNotClosed, JournalUnreadable, NotDeterministic
from settlement.files import (
    MANIFEST,
    REFERENCE_FILE,
    CycleFiles,
    CycleInfo,
    Reference,
    Summary,
    render_cycle,
)
from settlement.positions import CyclePositions, build_positions
from settlement.records import CycleClosed, CycleSettled
from settlement.state import SettlementState
from settlement.tally import SegmentJob, Tally, tally_segment
from switch.durable import fsync_directory, write_atomically
from switch.journal.segment import SUFFIX, segment_paths

log = logging.getLogger("onecard.settlement")

CYCLES = "cycles"
# Settlement files, reports and reconciliations: owner and group (the bank-file transfer
# job) read them; they hold masked accounts and money, so nobody else does.
SETTLEMENT_FILE_MODE = 0o640
# Progress callback: (records read so far, records to read).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SettledCycle:
    info: CycleInfo
    positions: CyclePositions
    files: CycleFiles
    directory: Path

    @property
    def digest(self) -> str:
        return self.files.digest

    def record(self, now_ms: int) -> CycleSettled:
        return CycleSettled(
            now_ms, self.info.cycle, self.digest, self.info.records, self.positions.movement_fen
        )


@dataclass(frozen=True)
class Catalog:
    """What the journal says about cycles: their closes and journalled digests."""

    closes: dict[int, CycleClosed]
    settled: dict[int, str]
    end_index: int  # one past the last record read

    def bounds(self, cycle: int) -> tuple[CycleClosed, CycleClosed | None]:
        close = self.closes.get(cycle)
        if close is None:
            raise CycleNotClosed(f"cycle {cycle} is not closed")
        return close, self.closes.get(cycle - 1)


def settlement_directory(data_dir: Path, config: SettlementConfig) -> Path:
    return data_dir / config.directory


def cycle_directory(data_dir: Path, config: SettlementConfig, cycle: int) -> Path:
    return settlement_directory(data_dir, config) / CYCLES / f"{cycle:06d}"


def cycle_info(
    close: CycleClosed, previous: CycleClosed | None, config: SettlementConfig
) -> CycleInfo:
    return CycleInfo(
        cycle=close.cycle,
        first_index=0 if previous is None else previous.last_index + 1,
        last_index=close.last_index,
        window_start_ms=0 if previous is None else previous.cutover_ms,
        window_end_ms=close.cutover_ms,
        closed_ms=close.time_ms,
        business_date=business_date(close.cutover_ms, config).strftime("%Y%m%d"),
    )


def close_record(
    state: SettlementState, next_index: int, now_ms: int, cutover_ms: int
) -> CycleClosed:
    """The record that closes the open cycle when appended as record `next_index`: the
    cycle ends with the record before it. Build and append it with no await in between,
    so that nothing slips in between the index it names and the one it gets."""
    return CycleClosed(now_ms, state.open_cycle, next_index - 1, cutover_ms)


# -- reading the journal ---------------------------------------------------------------------


def segment_firsts(journal_dir: Path) -> list[tuple[int, Path]]:
    out = []
    for path in segment_paths(journal_dir):
        stem = path.name[: -len(SUFFIX)]
        if not stem.isdigit():
            raise JournalUnreadable(f"{path.name} is not named by its first record's index")
        out.append((int(stem), path))
    return out


def jobs_for(
    journal_dir: Path,
    first_index: int,
    last_index: int,
    chain_key: bytes,
    *,
    reference_only: bool = False,
) -> list[SegmentJob]:
    """One job per segment that holds any record of first_index..last_index."""
    segments = segment_firsts(journal_dir)
    jobs = []
    for number, (segment_first, path) in enumerate(segments):
        following = segments[number + 1][0] if number + 1 < len(segments) else None
        if following is not None and following <= first_index:
            continue
        if segment_first > last_index:
            break
        jobs.append(
            SegmentJob(str(path), segment_first, first_index, last_index, chain_key, reference_only)
        )
    return jobs


def run_jobs(
    jobs: Sequence[SegmentJob],
    *,
    workers: int,
    total: int,
    progress: Progress | None = None,
) -> list[Tally]:
    """Tally every job, in journal order. workers > 1: in that many worker processes."""
    tallies: list[Tally] = []
    done = 0
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            tallies.append(tally_segment(job))
            done += tallies[-1].records
            if progress is not None:
                progress(min(done, total), total)
        return tallies
    # spawn, not fork: the caller may be a thread of a running switch (event loop, journal
    # writer, worker threads), and a forked copy of those is undefined behaviour.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_start
    ) as pool:
        futures = [pool.submit(tally_segment, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            done += future.result().records
            if progress is not None:
                progress(min(done, total), total)
        tallies = [future.result() for future in futures]
    return tallies


def _worker_start() -> None:
    """A worker process only tallies, which makes no reference cycles: the cyclic
    collector would only walk the modules' objects again and again (a sixth of the time
    per record, measured), so it is switched off for the worker's life."""
    gc.disable()


def check_continuity(tallies: Sequence[Tally], first_index: int, last_index: int) -> None:
    """Every record of first..last was read, once, and the segments chain to each other."""
    if last_index < first_index:
        return
    if not tallies or tallies[0].segment_first > first_index:
        raise JournalUnreadable(f"no journal segment holds record {first_index}")
    for before, after in itertools.pairwise(tallies):
        if before.end_index != after.segment_first:
            raise JournalUnreadable(
                f"record {before.end_index} cannot be read (segment {before.segment_first} "
                f"ends there, the next starts at {after.segment_first})"
            )
        if before.end_chain != after.header_chain:
            raise JournalUnreadable(
                f"segment {after.segment_first} does not chain from segment "
                f"{before.segment_first}'s last record"
            )
    if tallies[-1].end_index <= last_index:
        raise JournalUnreadable(
            f"record {tallies[-1].end_index} is in the range read but not whole on disk: "
            "the journal is damaged, or the close is not durable yet"
        )


def worker_count(config: SettlementConfig, records: int) -> int:
    if records < config.parallel_records_min:
        return 1
    return config.workers or os.cpu_count() or 1


def read_cycle(
    journal_dir: Path,
    chain_key: bytes,
    info: CycleInfo,
    config: SettlementConfig,
    progress: Progress | None = None,
) -> list[Tally]:
    """The cycle's records and its own close record (at last_index + 1), tallied."""
    first, end = info.first_index, info.last_index + 1
    jobs = jobs_for(journal_dir, first, end, chain_key)
    tallies = run_jobs(
        jobs, workers=worker_count(config, info.records), total=end - first + 1, progress=progress
    )
    check_continuity(tallies, first, end)
    closes = [close for tally in tallies for close in tally.closes]
    expected = [(end, info.cycle, info.last_index)]
    if info.cycle > 1:
        expected.insert(0, (first, info.cycle - 1, first - 1))
    found = [(index, close.cycle, close.last_index) for index, close in closes]
    if found != expected:
        raise JournalUnreadable(
            f"cycle {info.cycle}: closes in the journal are {found}, expected {expected}"
        )
    return tallies


def scan_catalog(
    journal_dir: Path,
    chain_key: bytes,
    start_index: int = 0,
    known: Catalog | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> Catalog:
    """Closes and settlements journalled from `start_index` on (added to `known`)."""
    jobs = jobs_for(journal_dir, start_index, 2**62, chain_key, reference_only=True)
    tallies = run_jobs(jobs, workers=workers, total=0, progress=progress)
    closes = dict(known.closes) if known else {}
    settled = dict(known.settled) if known else {}
    for tally in tallies:
        for _index, close in tally.closes:
            closes[close.cycle] = close
        for _index, settle in tally.settles:
            settled[settle.cycle] = settle.digest
    end = tallies[-1].end_index if tallies else start_index
    return Catalog(closes, settled, end)


def local_catalog(data_dir: Path, config: SettlementConfig) -> Catalog:
    """The closes of the cycles settled here before, from their summary files: a starting
    point for scan_catalog, so that a by-hand command reads only the journal after them.
    (Nothing is trusted blindly: settling a cycle checks its closes in the journal.) Its
    `settled` is empty: only the journal says what was journalled as settled."""
    closes: dict[int, CycleClosed] = {}
    for path in sorted((settlement_directory(data_dir, config) / CYCLES).glob("*/summary.json")):
        if not (path.parent / MANIFEST).exists():
            continue
        try:
            info = msgspec.json.decode(path.read_bytes(), type=Summary).info
        except (OSError, msgspec.DecodeError):
            continue  # a damaged local record: the journal is read instead
        closes[info.cycle] = CycleClosed(
            info.closed_ms, info.cycle, info.last_index, info.window_end_ms
        )
    # Only an unbroken run from cycle 1 tells where the journal after it starts.
    run = 0
    while run + 1 in closes:
        run += 1
    kept = {cycle: closes[cycle] for cycle in range(1, run + 1)}
    end = kept[run].last_index + 1 if run else 0
    return Catalog(kept, {}, end)


# -- the terminal registry before a cycle ----------------------------------------------------


def terminals_before(
    data_dir: Path,
    config: SettlementConfig,
    chain_key: bytes,
    info: CycleInfo,
    previous_digest: str | None,
) -> dict[str, tuple[str, str]]:
    """The registry as of the cycle's first record: from the previous cycle's
    reference.json when its manifest vouches for it (and the journal for the manifest),
    else read from the journal's start."""
    if info.cycle > 1:
        reference = _previous_reference(data_dir, config, info, previous_digest)
        if reference is not None:
            return {terminal: (owner, kind) for terminal, owner, kind in reference.terminals}
    registry: dict[str, tuple[str, str]] = {}
    if info.first_index == 0:
        return registry
    journal_dir = data_dir / "journal"
    jobs = jobs_for(journal_dir, 0, info.first_index - 1, chain_key, reference_only=True)
    tallies = run_jobs(jobs, workers=worker_count(config, info.first_index), total=0)
    check_continuity(tallies, 0, info.first_index - 1)
    for tally in tallies:
        for _index, terminal, owner, kind in tally.registrations:
            registry[terminal] = (owner, kind)
    return registry


def _previous_reference(
    data_dir: Path, config: SettlementConfig, info: CycleInfo, previous_digest: str | None
) -> Reference | None:
    directory = cycle_directory(data_dir, config, info.cycle - 1)
    try:
        manifest = (directory / MANIFEST).read_bytes()
        data = (directory / REFERENCE_FILE).read_bytes()
    except OSError:
        return None
    if previous_digest is not None and hashlib.sha256(manifest).hexdigest() != previous_digest:
        log.warning("settlement: cycle %d's manifest is not the journalled one", info.cycle - 1)
        return None
    line = f"{hashlib.sha256(data).hexdigest()}  {len(data)}  {REFERENCE_FILE}"
    if line not in manifest.decode("ascii", "replace").splitlines():
        log.warning("settlement: cycle %d's reference file is not its manifest's", info.cycle - 1)
        return None
    reference = msgspec.json.decode(data, type=Reference)
    if reference.last_index != info.first_index - 1:
        return None
    return reference


# -- settling ----------------------------------------------------------------------------------


def settle_cycle(
    data_dir: Path,
    config: SettlementConfig,
    chain_key: bytes,
    close: CycleClosed,
    previous: CycleClosed | None,
    *,
    journalled_digest: str | None = None,
    previous_digest: str | None = None,
    progress: Progress | None = None,
) -> SettledCycle:
    """Settle (or re-settle) one closed cycle and write its files. A re-run must produce
    the bytes of the first run: NotDeterministic otherwise, and nothing is overwritten."""
    info = cycle_info(close, previous, config)
    registry = terminals_before(data_dir, config, chain_key, info, previous_digest)
    tallies = read_cycle(data_dir / "journal", chain_key, info, config, progress)
    positions = build_positions(tallies, registry, config)
    # The tallies read the cycle's own close too: a record, but not one of the cycle's.
    positions = msgspec.structs.replace(positions, records=positions.records - 1)
    assert positions.records == info.records, (positions.records, info.records)
    files = render_cycle(info, positions)
    if journalled_digest is not None and files.digest != journalled_digest:
        raise NotDeterministic(
            f"cycle {info.cycle}: files digest {files.digest}, but {journalled_digest} was "
            "journalled when it was first settled"
        )
    directory = cycle_directory(data_dir, config, info.cycle)
    write_cycle_files(directory, files)
    return SettledCycle(info, positions, files, directory)


def write_cycle_files(directory: Path, files: CycleFiles) -> None:
    """Write atomically; the manifest goes last, so a manifest means a whole set. An
    existing manifest must be byte-identical (a re-run), and then any file missing or
    changed since is restored."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST
    try:
        existing = manifest_path.read_bytes()
    except FileNotFoundError:
        existing = None
    if existing is not None and existing != files.manifest:
        raise NotDeterministic(
            f"{directory}: a re-run produced other files than the first run (manifest "
            f"{hashlib.sha256(existing).hexdigest()[:16]}, now {files.digest[:16]}); "
            "kept the first run's"
        )
    for name, data in sorted(files.files.items()):
        path = directory / name
        try:
            if path.read_bytes() == data:
                continue
        except FileNotFoundError:
            pass
        write_atomically(path, data, SETTLEMENT_FILE_MODE)
    if existing is None:
        write_atomically(manifest_path, files.manifest, SETTLEMENT_FILE_MODE)
    fsync_directory(directory)
