"""Where settled cycles and reconciliation results are recorded.

    SettlementStore      the interface: save and read back cycles and reconciliation runs
    EmbeddedStore        the default: the cycle's own files (summary.json, manifest.txt)
                         and a JSON file per reconciliation run, in the data directory
    settlement.postgres  PostgreSQL (asyncpg, asyncio only), for production queries

The journal stays the system of record: a cycle is settled when its CycleSettled record is
journalled; a store holds what settling produced, for people and reports. Saving the same
cycle twice is a no-op; saving it with another digest is refused (SettlementStoreError),
the store's side of the deterministic re-run.
"""

from __future__ import annotations

import abc
import hashlib
from pathlib import Path

import anyio
import msgspec

from settlement.config import SettlementConfig
from settlement.cycle import SETTLEMENT_FILE_MODE, SettledCycle, cycle_directory
from settlement.errors import SettlementStoreError
from settlement.files import MANIFEST, SUMMARY_FILE, Summary
from settlement.reconcile import ReconciliationResult, render_report
from switch.durable import write_atomically

RECONCILIATION = "reconciliation"


class StoredCycle(msgspec.Struct, frozen=True):
    summary: Summary
    digest: str


class SettlementStore(abc.ABC):
    kind: str

    @abc.abstractmethod
    async def save_cycle(self, settled: SettledCycle) -> None: ...

    @abc.abstractmethod
    async def cycle(self, cycle: int) -> StoredCycle | None: ...

    @abc.abstractmethod
    async def save_reconciliation(self, result: ReconciliationResult) -> None: ...

    @abc.abstractmethod
    async def reconciliation(self, cycle: int, bank: str) -> ReconciliationResult | None: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...


class EmbeddedStore(SettlementStore):
    """The local record: files under the settlement directory, written atomically."""

    kind = "embedded"

    def __init__(self, data_dir: Path, config: SettlementConfig) -> None:
        self.data_dir = data_dir
        self.config = config

    async def save_cycle(self, settled: SettledCycle) -> None:
        # settle_cycle wrote the files and the manifest; the record is those files.
        stored = await self.cycle(settled.info.cycle)
        if stored is None or stored.digest != settled.digest:
            raise SettlementStoreError(
                f"cycle {settled.info.cycle}: its files in {settled.directory} are not the "
                "ones settled"
            )

    async def cycle(self, cycle: int) -> StoredCycle | None:
        return await anyio.to_thread.run_sync(self._read_cycle, cycle)

    def _read_cycle(self, cycle: int) -> StoredCycle | None:
        directory = cycle_directory(self.data_dir, self.config, cycle)
        try:
            manifest = (directory / MANIFEST).read_bytes()
            summary = msgspec.json.decode((directory / SUMMARY_FILE).read_bytes(), type=Summary)
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as exc:
            raise SettlementStoreError(f"{directory}: {exc}") from exc
        return StoredCycle(summary, hashlib.sha256(manifest).hexdigest())

    def _run_path(self, cycle: int, bank: str) -> Path:
        return cycle_directory(self.data_dir, self.config, cycle) / RECONCILIATION / f"{bank}.json"

    async def save_reconciliation(self, result: ReconciliationResult) -> None:
        await anyio.to_thread.run_sync(self._write_run, result)

    def _write_run(self, result: ReconciliationResult) -> None:
        path = self._run_path(result.cycle, result.bank)
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, data in (
            (path, msgspec.json.encode(result) + b"\n"),
            (path.with_suffix(".csv"), render_report(result)),
        ):
            write_atomically(target, data, SETTLEMENT_FILE_MODE)

    async def reconciliation(self, cycle: int, bank: str) -> ReconciliationResult | None:
        path = self._run_path(cycle, bank)
        try:
            data = await anyio.Path(path).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return msgspec.json.decode(data, type=ReconciliationResult)
        except msgspec.DecodeError as exc:
            raise SettlementStoreError(f"{path}: {exc}") from exc

    async def aclose(self) -> None:
        return None
