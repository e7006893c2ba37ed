"""Servers under test as child processes: the switch (`python -m switch ... run`) and the
baseline (`python -m bench.baseline`), each started on a free port and ready once it
prints its "serving terminals on HOST:PORT" line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Load only ever goes to the loopback interface.
HOST = "127.0.0.1"
READY_LINE = re.compile(r"serving terminals on (?P<host>[^\s:]+):(?P<port>\d+)")
# The switch replays its whole journal before it listens: 200,000 demo cards take a few
# seconds on a small machine, a long benchmark's journal longer.
READY_SECONDS = 120.0
# A graceful stop drains answers in flight; past this the process is killed.
STOP_SECONDS = 15.0
POLL_SECONDS = 0.05


class BenchError(Exception):
    """A benchmark could not run (a server did not start, a generator failed)."""


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def switch_command(data_dir: Path, loop: str = "uvloop", config: Path | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "switch",
        "--data-dir",
        str(data_dir),
        *(["--config", str(config)] if config is not None else []),
        "run",
        "--host",
        HOST,
        "--port",
        "0",
        "--metrics-port",
        "0",
        # Every port the switch opens must be free-chosen: a bench beside another switch
        # (or a test run) must not fail on a taken default port.
        "--api-port",
        "0",
        "--iso-port",
        "0",
        "--loop",
        loop,
    ]


def baseline_command() -> list[str]:
    return [sys.executable, "-m", "bench.baseline", "--host", HOST, "--port", "0"]


def start_server(
    name: str, command: list[str], log_dir: Path, env: dict[str, str] | None = None
) -> Server:
    """Start `command`, wait for its ready line; its output goes to log_dir/name.{out,log}."""
    out_path = log_dir / f"{name}.out"
    log_path = log_dir / f"{name}.log"
    with out_path.open("wb") as out, log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=log, env=env
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        match = READY_LINE.search(out_path.read_text(errors="replace"))
        if match:
            return Server(name, process, match["host"], int(match["port"]), log_path)
        if process.poll() is not None:
            raise BenchError(
                f"{name} exited with {process.returncode} before serving; see {log_path}"
            )
        time.sleep(POLL_SECONDS)
    process.kill()
    process.wait()
    raise BenchError(f"{name} not serving after {READY_SECONDS:.0f} s; see {log_path}")


@contextmanager
def running(
    name: str, command: list[str], log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    server = start_server(name, command, log_dir, env)
    try:
        yield server
    finally:
        server.stop()
