"""`onecard settle`: settlement by hand.

    onecard settle run [--cycle N] [--close]   settle closed cycles (or re-run one), with a
                                               progress bar; --close first closes the open
                                               cycle (the switch must be stopped)
    onecard settle status                      cycles: closed, settled, files in place
    onecard settle reconcile --cycle N --bank B FILE
                                               match a bank's return file; exception report
    onecard settle resolve --cycle N --bank B --entry "PAYM 000000001234" --action adjust
                           --amount FEN --actor NAME [--note TEXT]
                                               journal what was done about an exception
    onecard settle subsidy FILE --actor NAME   import a finance-bureau batch

Reading is safe while the switch runs: the journal is scanned read-only, never recovered,
and re-settling a cycle rewrites byte-identical files. Whatever appends to the journal
(--close, resolve, subsidy) takes the data directory's lock and refuses while the switch
holds it, like `onecard qr rotate`. `run` never journals CycleSettled itself: the switch's
scheduler does, at its next start or cutover, after settling the cycle again and getting
the same files.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import anyio

from settlement.config import SettlementConfig
from settlement.cycle import (
    Catalog,
    Progress,
    SettledCycle,
    close_record,
    cycle_directory,
    local_catalog,
    scan_catalog,
    settle_cycle,
    settlement_directory,
)
from settlement.errors import CycleNotClosed, FileFormatError, SettlementError
from settlement.files import MANIFEST, settlement_file_name
from settlement.reconcile import Action, ReconciliationResult, reconcile, resolution_record
from settlement.records import CycleClosed
from settlement.scheduler import open_store
from settlement.store import RECONCILIATION, SettlementStore
from settlement.subsidy import prepare_import, write_report
from switch.config import Config, load_config
from switch.core import wall_clock_ms
from switch.datadir import hold_data_dir
from switch.engine import Engine
from switch.journal import Journal, Record, RecoveryReport, recover
from switch.keystore import KeyStore

JOURNAL = "journal"
T = TypeVar("T")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    settle = commands.add_parser("settle", help="settlement: cycles, files, reconciliation")
    sub = settle.add_subparsers(dest="settle_command", required=True)

    run = sub.add_parser("run", help="settle closed cycles, or re-run one")
    run.add_argument("--cycle", type=int, default=None, help="this cycle only (re-run)")
    run.add_argument("--close", action="store_true", help="close the open cycle first")
    run.set_defaults(handler=cmd_run)

    sub.add_parser("status", help="list cycles").set_defaults(handler=cmd_status)

    rec = sub.add_parser("reconcile", help="match a bank's return file")
    rec.add_argument("--cycle", type=int, required=True)
    rec.add_argument("--bank", required=True)
    rec.add_argument("file", type=Path)
    rec.set_defaults(handler=cmd_reconcile)

    resolve = sub.add_parser("resolve", help="journal a reconciliation exception's resolution")
    resolve.add_argument("--cycle", type=int, required=True)
    resolve.add_argument("--bank", required=True)
    resolve.add_argument("--entry", required=True, help='as in the report: "PAYM 000000001234"')
    resolve.add_argument("--action", choices=[a.value for a in Action], required=True)
    resolve.add_argument("--amount", type=int, default=0, help="fen to adjust (adjust only)")
    resolve.add_argument("--actor", required=True, help="who decided")
    resolve.add_argument("--note", default="")
    resolve.set_defaults(handler=cmd_resolve)

    subsidy = sub.add_parser("subsidy", help="import a finance-bureau subsidy batch")
    subsidy.add_argument("file", type=Path)
    subsidy.set_defaults(handler=cmd_subsidy)


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _with_store(
    config: SettlementConfig, data_dir: Path, work: Callable[[SettlementStore], Awaitable[T]]
) -> T:
    """Run `work` with the store open, on asyncio (asyncpg needs it)."""

    async def main() -> T:
        store = await open_store(data_dir, config)
        try:
            return await work(store)
        finally:
            await store.aclose()

    return anyio.run(main, backend="asyncio")


@contextmanager
def _progress(title: str) -> Iterator[Progress]:
    """A rich progress bar over records read; plain output when not on a terminal."""
    from rich.progress import (  # noqa: PLC0415 - rich only for this command
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar  # noqa: PLC0415

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(title, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def _catalog(data_dir: Path, config: SettlementConfig, keys: KeyStore) -> Catalog:
    """The cycles: those settled here before from their local record, the rest from the
    journal after them (a by-hand command does not read months of journal)."""
    known = local_catalog(data_dir, config)
    with _progress("reading the journal's cycles") as progress:
        return scan_catalog(
            data_dir / JOURNAL, keys.journal, known.end_index, known, progress=progress
        )


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)
    data_dir: Path = args.data_dir
    keys = KeyStore.load(data_dir)
    if args.close:
        record = _close_by_hand(data_dir, config)
        assert isinstance(record, CycleClosed)
        print(f"cycle {record.cycle} closed at journal record {record.last_index}")
    catalog = _catalog(data_dir, config.settlement, keys)
    if args.cycle is not None:
        cycles = [args.cycle]
        catalog.bounds(args.cycle)  # CycleNotClosed for an open or unknown cycle
    else:  # closed, not journalled as settled, and no files here
        settlement = config.settlement
        cycles = [
            cycle
            for cycle in sorted(set(catalog.closes) - set(catalog.settled))
            if not (cycle_directory(data_dir, settlement, cycle) / MANIFEST).exists()
        ]
    if not cycles:
        print("nothing to settle: every closed cycle is settled (re-run one with --cycle N)")
        return 0
    settlement = config.settlement
    for cycle in cycles:
        close, previous = catalog.bounds(cycle)
        with _progress(f"cycle {cycle}") as progress:
            settled = settle_cycle(
                data_dir,
                settlement,
                keys.journal,
                close,
                previous,
                journalled_digest=catalog.settled.get(cycle),
                previous_digest=catalog.settled.get(cycle - 1),
                progress=progress,
            )
        _with_store(settlement, data_dir, functools.partial(_save, settled))
        _print_settled(settled, cycle in catalog.settled)
    return 0


async def _save(settled: SettledCycle, store: SettlementStore) -> None:
    await store.save_cycle(settled)


def _print_settled(settled: SettledCycle, rerun: bool) -> None:
    info, positions = settled.info, settled.positions
    print(
        f"cycle {info.cycle} ({info.business_date}): {info.records} records, "
        f"{positions.financial} moved money, {positions.movement_fen} fen; fees "
        f"{positions.fee_fen} fen; digest {settled.digest}"
        + (" (same as journalled)" if rerun else " (the switch journals it when it runs)")
    )
    for net in positions.bank_nets:
        print(f"  {net.bank:8} net {net.net_fen:+d} fen")
    print(f"  files in {settled.directory}")


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args).settlement
    data_dir: Path = args.data_dir
    catalog = _catalog(data_dir, config, KeyStore.load(data_dir))
    if not catalog.closes:
        print("no cycle closed yet")
    for cycle, close in sorted(catalog.closes.items()):
        journalled = catalog.settled.get(cycle)
        manifest = cycle_directory(data_dir, config, cycle) / MANIFEST
        files = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else ""
        if journalled:
            state = "settled" if journalled == files else "settled, FILES DIFFER OR MISSING"
        elif files:
            # Journalled before the part of the journal read, or not yet by the switch.
            state = "files in place"
        else:
            state = "NOT SETTLED"
        print(
            f"cycle {cycle:6d}  ends at record {close.last_index:12d}  "
            f"{(files or journalled or '-')[:16]:16}  {state}"
        )
    print(f"open cycle {len(catalog.closes) + 1}; journal holds {catalog.end_index} records")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    config = _config(args).settlement
    data_dir: Path = args.data_dir
    ours_path = cycle_directory(data_dir, config, args.cycle) / settlement_file_name(
        args.bank, args.cycle
    )
    try:
        ours = ours_path.read_bytes()
    except FileNotFoundError:
        raise CycleNotClosed(
            f"no settlement file {ours_path.name}: settle cycle {args.cycle} first"
        ) from None
    try:
        theirs = args.file.read_bytes()
    except OSError as exc:
        raise FileFormatError(str(args.file), 0, str(exc)) from exc
    result = reconcile(ours, theirs, str(args.file))
    _with_store(config, data_dir, lambda store: store.save_reconciliation(result))
    counts = result.counts()
    print(
        f"cycle {result.cycle} bank {result.bank}: {result.matched} matched "
        f"({result.matched_fen} fen), {len(result.exceptions)} exceptions: "
        + ", ".join(f"{kind} {count}" for kind, count in counts.items())
    )
    report = cycle_directory(data_dir, config, args.cycle) / RECONCILIATION / f"{args.bank}.csv"
    print(f"  exception report: {report}")
    return 0


def _journal_while_stopped(
    data_dir: Path,
    config: Config,
    purpose: str,
    decide: Callable[[Engine, KeyStore, int], list[Record]],
) -> list[Record]:
    """Replay the journal under the data directory's lock, decide records on the replayed
    engine (which applies them first: the checks replay will make), append them."""
    journal_dir = data_dir / JOURNAL
    with hold_data_dir(data_dir, purpose):
        keys = KeyStore.load(data_dir)
        engine = Engine(config.engine, keys.terminals)
        report: RecoveryReport = recover(
            journal_dir, lambda _index, record: engine.apply(record), keys.journal
        )
        records = decide(engine, keys, report.next_index)
        for record in records:
            engine.apply(record)
        if records:
            Journal.append_while_stopped(journal_dir, report, records)
    return records


def _close_by_hand(data_dir: Path, config: Config) -> Record:
    def decide(engine: Engine, _keys: KeyStore, next_index: int) -> list[Record]:
        now = wall_clock_ms()
        last = engine.settlement.last_close
        if last is not None and now <= last.cutover_ms:
            raise SettlementError(f"cycle {last.cycle} closed at a later time: clock behind?")
        return [close_record(engine.settlement, next_index, now, now)]

    (record,) = _journal_while_stopped(data_dir, config, "onecard settle run --close", decide)
    return record


def _stored_result(
    config: SettlementConfig, data_dir: Path, cycle: int, bank: str
) -> ReconciliationResult:
    result = _with_store(config, data_dir, lambda store: store.reconciliation(cycle, bank))
    if result is None:
        raise SettlementError(f"cycle {cycle} bank {bank}: reconcile a return file first")
    return result


def cmd_resolve(args: argparse.Namespace) -> int:
    config = _config(args)
    data_dir: Path = args.data_dir
    result = _stored_result(config.settlement, data_dir, args.cycle, args.bank)

    def decide(engine: Engine, _keys: KeyStore, _next_index: int) -> list[Record]:
        return [
            resolution_record(
                result,
                engine.settlement,
                args.entry,
                Action(args.action),
                args.amount,
                args.actor,
                args.note,
                wall_clock_ms(),
            )
        ]

    _journal_while_stopped(data_dir, config, "onecard settle resolve", decide)
    print(f"{args.entry}: {args.action} journalled")
    return 0


def cmd_subsidy(args: argparse.Namespace) -> int:
    config = _config(args)
    data_dir: Path = args.data_dir
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise FileFormatError(str(args.file), 0, str(exc)) from exc
    outcome: list[Path] = []
    summary: list[str] = []

    def decide(engine: Engine, keys: KeyStore, _next_index: int) -> list[Record]:
        prepared = prepare_import(
            data, str(args.file), engine, keys.holder_secret, config.settlement, wall_clock_ms()
        )
        outcome.append(write_report(settlement_directory(data_dir, config.settlement), prepared))
        summary.append(
            f"batch {prepared.batch.batch_id}: {len(prepared.validation.credits)} credited "
            f"({prepared.validation.credited_fen} fen), {len(prepared.validation.rejections)} "
            "rejected"
            + (" (imported before: nothing journalled)" if prepared.already_imported else "")
        )
        return list(prepared.records)

    _journal_while_stopped(data_dir, config, "onecard settle subsidy", decide)
    print(summary[0])
    print(f"  report: {outcome[0]}")
    return 0
