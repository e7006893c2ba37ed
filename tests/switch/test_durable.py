"""Files written whole or not at all (switch/durable.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from switch.durable import PACED_CHUNK_BYTES, write_atomically


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
