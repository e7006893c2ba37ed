"""`onecard settle` on a data directory whose switch is stopped: close and settle, re-run,
reconcile, resolve, import a subsidy batch; and the refusals while the switch holds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from settlement.files import return_file_for, settlement_file_name
from settlement.tally import BankLine
from switch.cli import main
from switch.config import EngineConfig
from switch.datadir import hold_data_dir
from switch.demo import DemoSpec, demo_records
from switch.keystore import KeyStore
from tests.conftest import DEMO_CARDS

CYCLES = Path("settlement") / "cycles"


def settle(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), "settle", *args])


def test_close_settle_and_rerun_by_hand(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert settle(data_dir, "status") == 0
    assert "no cycle closed yet" in capsys.readouterr().out
    assert settle(data_dir, "run", "--close") == 0
    out = capsys.readouterr().out
    assert "cycle 1 closed" in out and "digest" in out
    files = sorted(path.name for path in (data_dir / CYCLES / "000001").iterdir())
    assert settlement_file_name("ABC", 1) in files and "manifest.txt" in files
    first = {name: (data_dir / CYCLES / "000001" / name).read_bytes() for name in files}
    assert settle(data_dir, "run", "--cycle", "1") == 0
    again = {name: (data_dir / CYCLES / "000001" / name).read_bytes() for name in files}
    assert again == first
    assert settle(data_dir, "run", "--cycle", "2") == 1  # still open
    assert "cycle 2 is not closed" in capsys.readouterr().err
    assert settle(data_dir, "run") == 0
    assert "nothing to settle" in capsys.readouterr().out
    assert settle(data_dir, "run", "--close") == 0
    capsys.readouterr()
    assert settle(data_dir, "status") == 0
    status = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in status if line.startswith("cycle")] == ["1", "2"]
    assert all("files in place" in line for line in status if line.startswith("cycle"))


def test_reconcile_and_resolve_by_hand(
    data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert settle(data_dir, "run", "--close") == 0
    ours = (data_dir / CYCLES / "000001" / settlement_file_name("ABC", 1)).read_bytes()
    stranger = BankLine(0, "ABC", "PAYM", "000099999999", "X00000099", "", -700, 1, "")
    return_file = tmp_path / "RETN-ABC-000001.txt"
    return_file.write_bytes(return_file_for(ours, [stranger]))
    capsys.readouterr()
    assert settle(data_dir, "reconcile", "--cycle", "1", "--bank", "ABC", str(return_file)) == 0
    assert "missing_ours 1" in capsys.readouterr().out
    report = data_dir / CYCLES / "000001" / "reconciliation" / "ABC.csv"
    assert "missing_ours,PAYM 000099999999" in report.read_text()
    resolve = [
        "resolve",
        "--cycle",
        "1",
        "--bank",
        "ABC",
        "--entry",
        "PAYM 000099999999",
        "--action",
        "bank_to_correct",
        "--actor",
        "recon-clerk",
        "--note",
        "not ours",
    ]
    assert settle(data_dir, *resolve) == 0
    assert settle(data_dir, *resolve) == 1
    assert "resolved already" in capsys.readouterr().err


def test_a_subsidy_batch_by_hand(
    data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ids: dict[str, str] = {}
    demo_records(DemoSpec(cards=DEMO_CARDS), KeyStore(), EngineConfig(), ids)
    batch = tmp_path / "batch.csv"
    batch.write_text(
        "batch,PENSION-1,finance-bureau,pension-top-up,2,30000\n"
        "row,scope,household_id,relation,citizen_id,amount_fen\n"
        f"1,person,,,{ids['X00000040']},20000\n"
        "2,person,,,340524198001010013,10000\n"
    )
    assert settle(data_dir, "subsidy", str(batch)) == 0
    out = capsys.readouterr().out
    assert "1 credited (20000 fen), 1 rejected" in out
    assert ids["X00000040"] not in out
    assert settle(data_dir, "subsidy", str(batch)) == 0
    assert "imported before" in capsys.readouterr().out
    assert settle(data_dir, "run", "--close") == 0
    bank = next(
        path
        for path in (data_dir / CYCLES / "000001").glob("STLM-*.txt")
        if "SUBSPENSION-1/000001" in path.read_text()
    )
    assert "X00000040" in bank.read_text()


def test_journal_writes_are_refused_while_the_switch_holds_the_data_directory(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with hold_data_dir(data_dir, "onecard run"):
        assert settle(data_dir, "run", "--close") == 1
        assert "stop the switch first" in capsys.readouterr().err
        assert settle(data_dir, "status") == 0  # reading is fine
