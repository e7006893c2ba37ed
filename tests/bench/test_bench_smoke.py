"""The benchmark tooling works and produces its outputs. Nothing here checks how fast
anything is: these runs are seconds long at toy rates on a shared machine."""

from __future__ import annotations

import csv
import random
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from bench import gcpause
from bench.iso import BANK, PURSE
from bench.mix import EXPECTED_CODES, QR_PREFIX, RETRY, Mix, QrWallet, Role, TerminalScript
from bench.report import BASELINE, PEAK_PIPELINED, SWITCH, IsoReport, Report
from bench.servers import running, switch_command
from protocols.ecard import decode_qr
from protocols.terminal import ClientCodec, MacKey, Scan, ServerCodec
from protocols.terminal.codec import RequestFrame
from switch.config import EngineConfig
from switch.demo import DemoSpec, create_demo, demo_records
from switch.engine import Engine
from switch.journal.records import Record
from switch.keystore import KeyStore

ROOT = Path(__file__).resolve().parents[2]
SMOKE_CARDS = 100
# Bounds for subprocesses, well above what they take, so a hang fails the test.
BENCH_SECONDS = 60
LOCUST_SECONDS = 30
NOW_MS = 1_764_400_000_000


def test_mix_gets_the_answers_it_expects_from_the_engine() -> None:
    """Every intent's answer is one the mix allows, and retries get the very same answer;
    with a wallet, holders pay by QR code too, each code standing for the intent's card."""
    config = EngineConfig()
    keys = KeyStore()
    engine = Engine(config, keys.terminals)
    for record in demo_records(DemoSpec(cards=SMOKE_CARDS), keys, config):
        engine.apply(record)
    mix = Mix(
        retry=0.2, gate_unknown_card=0.1, gate_lost_card=0.1, pos_unknown_card=0.1, qr_share=0.3
    )
    wallet = QrWallet(engine.ecard, keys.qr_signing)
    server = ServerCodec()
    now_ms = NOW_MS
    labels: set[str] = set()

    def script(terminal_id: str, role: Role) -> tuple[TerminalScript, ClientCodec]:
        key = MacKey(keys.terminals[terminal_id])
        rng = random.Random(7)
        return TerminalScript(
            terminal_id,
            role,
            key,
            first_seq=1,
            cards=SMOKE_CARDS,
            mix=mix,
            rng=rng,
            wallet=wallet,
        ), ClientCodec(key)

    def exchange(terminal: TerminalScript, client: ClientCodec, card: str | None = None) -> str:
        planned = terminal.next_request(now_ms, card)
        server.receive_data(planned.frame)
        frames = server.next_frames()
        if planned.label.startswith(QR_PREFIX):
            [frame] = frames
            assert type(frame) is RequestFrame and type(frame.request) is Scan
            token = decode_qr(frame.request.qr).claims.card_token
            assert engine.ecard.by_token[token].card == planned.card
        records: list[Record] = []
        client.receive_data(engine.authorise(frames, now_ms, records))
        [(response, mac_ok)] = client.next_responses()
        assert mac_ok and response.seq == planned.seq
        assert terminal.answered(planned, response), "a retry got a different answer"
        if planned.label != RETRY:
            assert response.code in EXPECTED_CODES[planned.label], planned
        labels.add(planned.label)
        return response.code

    gate, pos = script("G0001", Role.GATE), script("P0001", Role.POS)
    entry, exit_ = script("MI01", Role.METRO_ENTRY), script("MO04", Role.METRO_EXIT)
    for _ in range(300):
        now_ms += 5_000  # past the repeat-tap guards
        exchange(*gate)
        exchange(*pos)
        card = entry[0].next_card()
        exchange(*entry, card)
        now_ms += 5_000
        exchange(*exit_, card)
    assert labels == {*EXPECTED_CODES, RETRY}


def test_gcpause_reports_decisions_and_collections(capsys: pytest.CaptureFixture[str]) -> None:
    assert gcpause.main(["--cards", str(SMOKE_CARDS), "--batches", "20", "--no-freeze"]) == 0
    out = capsys.readouterr().out
    assert "decisions/s" in out and "gen2 collections" in out


def test_bench_smoke_run_writes_its_outputs(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "switch",
        "bench",
        "--results-dir",
        str(tmp_path),
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--cards",
        str(SMOKE_CARDS),
        "--connections",
        "4",
        "--pipeline-connections",
        "2",
        "--depth",
        "4",
        "--sweep",
        "0.5",
        "--sweep-peak",
        "200",
        "--taps-rate",
        "100",
        "--peak-rounds",
        "2",
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, timeout=BENCH_SECONDS, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    [directory] = tmp_path.iterdir()
    for name in ("results.json", "latency.png", "summary.md"):
        assert (directory / name).stat().st_size > 0, name
    assert not (directory / "data").exists(), "the journal is removed unless --keep-data"
    report = msgspec.json.decode((directory / "results.json").read_bytes(), type=Report)
    assert len(report.steps) == 2 * 4 + 2 + 2  # two rounds of the peak pair
    assert sorted(step.round for step in report.steps if step.regime == PEAK_PIPELINED) == [
        1,
        1,
        2,
        2,
    ]
    assert {step.server for step in report.steps} == {SWITCH, BASELINE}
    for step in report.steps:
        assert step.speed_us > 0, step.name  # the machine's Python speed, taken before it
        result = step.result
        assert result.answered > 0, step.name
        assert result.unanswered == result.retry_mismatches == result.connections_lost == 0
        if step.server == SWITCH:
            assert result.mac_failures == result.unexpected_answers == 0, step.name
            assert result.server_cpu_seconds is not None
            main = result.server_main_thread_cpu_seconds
            assert main is not None and 0 <= main <= result.server_cpu_seconds + 0.02
    assert "(main " in (directory / "summary.md").read_text()
    assert sum(step.result.retries for step in report.steps if step.server == SWITCH) > 0
    summary = (directory / "summary.md").read_text()
    assert "## Targets" in summary and "switch / baseline" in summary
    assert "(median of 2 rounds: " in summary
    assert f"over {len(report.steps)} steps" in summary  # the Python speed line


def test_probe_reports_a_step_its_threads_and_the_switchs_histograms(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    create_demo(data_dir, DemoSpec(cards=SMOKE_CARDS), EngineConfig())
    journal = data_dir / "journal"
    before = {path.name: path.read_bytes() for path in journal.iterdir()}
    command = [sys.executable, "-m", "bench.probe", "--data-dir", str(data_dir)]
    command += ["--cards", str(SMOKE_CARDS), "--rate", "100", "--connections", "4"]
    command += ["--duration", "0.5", "--warmup", "0.2", "--mixed", "--qr-share", "0.3"]
    done = subprocess.run(
        command, check=False, capture_output=True, timeout=BENCH_SECONDS, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    out = done.stdout.decode()
    assert "unanswered 0, unexpected answers 0, MAC failures 0" in out
    assert "switch threads and child processes over the measured window:" in out
    assert re.search(r"^  main +\d+% of a core", out, re.MULTILINE), out
    for histogram in ("request_duration_seconds", "journal_fsync_duration_seconds"):
        assert re.search(rf"onecard_{histogram}: n=[1-9]\d* p50<=", out), out
    # The probe runs on a copy: the data directory it was given is as it was.
    assert {path.name: path.read_bytes() for path in journal.iterdir()} == before


def test_probe_runs_closed_loop_with_a_configuration_and_lists_the_snapshots(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    create_demo(data_dir, DemoSpec(cards=SMOKE_CARDS), EngineConfig())
    config = tmp_path / "switch.toml"
    config.write_text("[snapshots]\nrecords = 0\ncheck_seconds = 0.2\n")
    command = [sys.executable, "-m", "bench.probe", "--data-dir", str(data_dir)]
    command += ["--cards", str(SMOKE_CARDS), "--depth", "4", "--connections", "2"]
    command += ["--duration", "1", "--warmup", "0.2", "--config", str(config)]
    done = subprocess.run(
        command, check=False, capture_output=True, timeout=BENCH_SECONDS, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    out = done.stdout.decode()
    assert "unanswered 0, unexpected answers 0, MAC failures 0" in out
    assert "/s closed loop, 2 connections x 4 in flight" in out
    count = re.search(r"^snapshots during the run: (\d+)$", out, re.MULTILINE)
    assert count is not None and int(count[1]) >= 1, out
    assert re.search(r"child \d+ writing \(fork took \d+\.\d ms\)", out), out


def test_locust_headless_against_a_live_switch(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    create_demo(data_dir, DemoSpec(cards=SMOKE_CARDS, gates=9, pos=1), EngineConfig())
    prefix = tmp_path / "locust"
    with running("switch", switch_command(data_dir), tmp_path) as switch:
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "--users",
            "10",
            "--spawn-rate",
            "10",
            "--run-time",
            "3s",
            "--host",
            f"tcp://{switch.host}:{switch.port}",
            "--onecard-data-dir",
            str(data_dir),
            "--onecard-cards",
            str(SMOKE_CARDS),
            "--onecard-qr-share",
            "0.5",
            "--csv",
            str(prefix),
            "--only-summary",
        ]
        done = subprocess.run(
            command, check=False, capture_output=True, timeout=LOCUST_SECONDS, cwd=ROOT
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    with Path(f"{prefix}_stats.csv").open() as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    total = rows.pop("Aggregated")
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    assert any(name.startswith("tap ") for name in rows)
    # Holders showing the e-card's QR code, decided like their cards.
    assert any(name.startswith(("qr-tap 00", "qr-metro-entry 00")) for name in rows), rows


def test_bench_iso_mode_writes_its_outputs(tmp_path: Path) -> None:
    command = [
        *(sys.executable, "-m", "switch", "bench", "--iso"),
        *("--results-dir", str(tmp_path), "--duration", "0.3", "--iso-messages", "50"),
        *("--pipeline-connections", "2", "--depth", "2"),
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, timeout=BENCH_SECONDS, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    [directory] = tmp_path.iterdir()
    report = msgspec.json.decode((directory / "results.json").read_bytes(), type=IsoReport)
    codec = report.codec
    assert min(codec.ours_decode_us, codec.reference_decode_us, codec.core_us) > 0
    assert min(codec.ours_encode_us, codec.reference_encode_us) > 0
    assert [(run.server, run.account) for run in report.runs] == [
        (BASELINE, PURSE),
        (SWITCH, PURSE),
        (SWITCH, BANK),
    ]
    assert all(run.requests > 0 for run in report.runs)
    summary = (directory / "summary.md").read_text()
    assert "pyiso8583 / ours" in summary and "of baseline" in summary
