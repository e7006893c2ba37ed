"""The machine a benchmark ran on, and where its CPU time went (Linux /proc).

Figures from a 2-core machine shared with other work drift from run to run; the report
therefore states the machine, and for every step how much CPU the server, the load
generator and everything else used, so a reader can tell a slow server from a busy box.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import msgspec

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/stat fields after the ")" that ends the command name: utime and stime are
# fields 14 and 15 of the whole line (proc(5)), i.e. 11 and 12 after the state field.
PPID_AFTER_COMMAND = 1
UTIME_AFTER_COMMAND = 11
STIME_AFTER_COMMAND = 12
# ... and the CPU of its children that it has waited for (cutime, cstime: fields 16, 17).
CHILDREN_AFTER_COMMAND = (13, 14)
# /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
IDLE_FIELDS = (3, 4)


class Machine(msgspec.Struct, frozen=True):
    cpus: int
    cpu_model: str
    python: str
    platform: str
    load_average: tuple[float, float, float]  # when the run started: other work on the box
    journal_filesystem: str  # the switch fsyncs here; tmpfs would make fsync free


# The speed probe: a fixed piece of Python of the kind the switch's hot path is made of,
# timed in the bench's own process just before each step, while the servers are idle.
# 500 iterations is ~2 ms, short enough to fall between two of the box's slow spells, and
# the best of 15 rounds is what the machine could do at that moment.
SPEED_ITERATIONS = 500
SPEED_ROUNDS = 15


class _Probe(msgspec.Struct, array_like=True):
    time_ms: int
    terminal_id: str
    seq: int
    card: str
    code: str
    moved_fen: int


def python_speed_us() -> float:
    """Microseconds per iteration of the speed probe: MessagePack out and back in, two
    SHA-256 state copies and digests, a dictionary update. The same build measured on
    this machine at 11 and at 21 µs a request in `bench.hotpath` within an hour; this
    figure moves with it, so a report can say when its machine was running slow."""
    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(_Probe)
    inner, outer = hashlib.sha256(bytes(64)), hashlib.sha256(bytes(64))
    seen: dict[int, tuple[_Probe, bytes]] = {}
    best = float("inf")
    for _ in range(SPEED_ROUNDS):
        started = time.perf_counter()
        for seq in range(SPEED_ITERATIONS):
            body = encoder.encode(_Probe(1_796_000_000_000, "G0001", seq, "X00000001", "00", -200))
            probe = decoder.decode(body)
            digest = inner.copy()
            digest.update(body)
            mac = outer.copy()
            mac.update(digest.digest())
            seen[seq % 64] = (probe, mac.digest())
        best = min(best, time.perf_counter() - started)
    return best / SPEED_ITERATIONS * 1e6


def _stat_fields(stat_path: Path) -> list[str]:
    stat = stat_path.read_text()
    return stat[stat.rindex(")") + 2 :].split()


def _user_system(stat_path: Path) -> tuple[float, float]:
    fields = _stat_fields(stat_path)
    return (
        int(fields[UTIME_AFTER_COMMAND]) / CLOCK_TICKS_PER_SECOND,
        int(fields[STIME_AFTER_COMMAND]) / CLOCK_TICKS_PER_SECOND,
    )


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process (all its threads) and of its children:
    the live ones (the switch's misuse follower, a snapshot child) and the ones it has
    reaped. A server's cost is all of it, whichever process pays."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    own = (UTIME_AFTER_COMMAND, STIME_AFTER_COMMAND, *CHILDREN_AFTER_COMMAND)
    seconds = sum(int(fields[i]) for i in own) / CLOCK_TICKS_PER_SECOND
    for child in children(pid):
        try:
            seconds += sum(_user_system(Path(f"/proc/{child}/stat")))
        except OSError:  # it ended meanwhile: reaped, or soon to be
            continue
    return seconds


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (this kernel has no /proc/<pid>/.../children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat_fields(stat)
        except (OSError, ValueError):  # it ended meanwhile
            continue
        if int(fields[PPID_AFTER_COMMAND]) == pid:
            found.append(int(stat.parent.name))
    return found


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process's main thread (its thread id is the pid)."""
    return sum(_user_system(Path(f"/proc/{pid}/task/{pid}/stat")))


class ThreadTimes(msgspec.Struct, frozen=True):
    """One thread's CPU seconds and context switches so far (/proc/<pid>/task/<tid>)."""

    user_seconds: float
    system_seconds: float
    # Voluntary: it waited (I/O, a lock, the GIL); involuntary: the scheduler took the CPU
    # away, which on a busy machine is queueing the thread's requests pay for.
    voluntary_switches: int
    involuntary_switches: int


def thread_times(pid: int) -> dict[int, ThreadTimes]:
    """Every live thread of `pid` by thread id (the main thread's id is the pid)."""
    out = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process ended meanwhile
        return {}
    for task in tasks:
        try:
            user, system = _user_system(task / "stat")
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        switches = dict(
            line.split(":\t") for line in status.splitlines() if "ctxt_switches" in line
        )
        out[int(task.name)] = ThreadTimes(
            user,
            system,
            int(switches["voluntary_ctxt_switches"]),
            int(switches["nonvoluntary_ctxt_switches"]),
        )
    return out


def system_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, over all CPUs."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(field) for field in first]
    idle = sum(ticks[index] for index in IDLE_FIELDS)
    total = sum(ticks)
    return (total - idle) / CLOCK_TICKS_PER_SECOND, total / CLOCK_TICKS_PER_SECOND


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    """The type of the file system holding `path` (longest matching mount point)."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        parts = line.split()
        mount_point, fs_type = parts[1], parts[2]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fs_type
    return kind


def describe(journal_dir: Path) -> Machine:
    one, five, fifteen = os.getloadavg()
    return Machine(
        cpus=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        load_average=(one, five, fifteen),
        journal_filesystem=_filesystem(journal_dir),
    )


def write_back() -> None:
    """Put every dirty page on disk now. Demo data is a gigabyte written just before the
    switch starts; left to the kernel's writeback (30 s later), it lands in the first
    steps and holds the journal's syncs up for hundreds of ms, which the switch would be
    charged for (seen: p99 at 10,000 taps/s 17 ms after a sync, 100-190 ms without)."""
    os.sync()
