"""The switch as a child process, the way operations run it: `python -m switch ... run`."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

REPOSITORY = Path(__file__).resolve().parents[2]
SERVING = re.compile(rb"onecard: serving terminals on 127\.0\.0\.1:(\d+),")
# Bound on each wait for the child (to start, to serve every terminal, to exit): only
# there to turn a hang into a failure that shows the child's log.
CHILD_SECONDS_MAX = 20


@contextlib.contextmanager
def deadline(what: str, log_path: Path) -> Iterator[None]:
    """Fail, showing the switch's log, if `what` takes over CHILD_SECONDS_MAX."""
    try:
        with anyio.fail_after(CHILD_SECONDS_MAX):
            yield
    except TimeoutError:
        log = log_path.read_text()
        raise AssertionError(
            f"{what}: over {CHILD_SECONDS_MAX} s; the switch's log:\n{log}"
        ) from None


@dataclass
class SwitchProcess:
    process: anyio.abc.Process
    port: int
    log_path: Path

    def deadline(self, what: str) -> contextlib.AbstractContextManager[None]:
        return deadline(what, self.log_path)


async def _serving_port(process: anyio.abc.Process, log_path: Path) -> int:
    assert process.stdout is not None
    stdout = BufferedByteReceiveStream(process.stdout)
    try:
        with deadline("starting", log_path):
            line = await stdout.receive_until(b"\n", 4096)
    except (anyio.EndOfStream, anyio.IncompleteRead) as exc:
        raise AssertionError(f"the switch did not start; its log:\n{log_path.read_text()}") from exc
    match = SERVING.match(line)
    assert match is not None, line
    return int(match[1])


@asynccontextmanager
async def switch_process(
    data_dir: Path, loop: str, log_path: Path, options: Sequence[str] = ()
) -> AsyncIterator[SwitchProcess]:
    """`onecard run` on `data_dir` in a child process, killed on the way out if still alive.
    `options` go before `run` (e.g. --config FILE)."""
    command = [sys.executable, "-m", "switch", "--data-dir", str(data_dir), *options, "run"]
    command += ["--port", "0", "--metrics-port", "0", "--api-port", "0", "--iso-port", "0"]
    command += ["--loop", loop]
    with log_path.open("ab") as log:
        process = await anyio.open_process(
            command, stdout=subprocess.PIPE, stderr=log, cwd=REPOSITORY
        )
        try:
            yield SwitchProcess(process, await _serving_port(process, log_path), log_path)
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
                await process.aclose()
