"""Files written whole or not at all (switch/durable.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from switch.durable import PACED_CHUNK_BYTES, REMOVE_STEP_BYTES, remove_paced, write_atomically


@pytest.mark.parametrize("paced", [False, True])
def test_a_file_is_replaced_whole_and_leaves_no_temporary(tmp_path: Path, paced: bool) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"old")
    # Two chunks and a ragged end: paced writing must not drop or repeat a chunk's edge.
    data = os.urandom(2 * PACED_CHUNK_BYTES + 3)

    write_atomically(path, data, 0o640, paced=paced)

    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_an_empty_file_is_written_paced_too(tmp_path: Path) -> None:
    write_atomically(tmp_path / "empty", b"", paced=True)
    assert (tmp_path / "empty").read_bytes() == b""


def test_a_big_file_is_removed_in_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.snapshot"
    path.write_bytes(bytes(2 * REMOVE_STEP_BYTES + 5))
    sizes: list[int] = []
    truncate = os.ftruncate

    def noting(fd: int, size: int) -> None:
        sizes.append(size)
        truncate(fd, size)

    monkeypatch.setattr(os, "ftruncate", noting)
    remove_paced(path)
    assert not path.exists()
    assert sizes == [REMOVE_STEP_BYTES + 5, 5]  # shrunk step by step, then unlinked


def test_removing_a_file_that_is_not_there_is_not_an_error(tmp_path: Path) -> None:
    remove_paced(tmp_path / "gone.snapshot")
    small = tmp_path / "small.snapshot"
    small.write_bytes(b"x")
    remove_paced(small)
    assert not small.exists()
