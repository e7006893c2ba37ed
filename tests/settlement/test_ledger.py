"""Every journal record type is classified by settlement, and its views stay in step with
the records they read."""

from __future__ import annotations

import typing

import msgspec

from settlement.ledger import NO_MONEY, VIEWS, unclassified_record_types, view_decoder
from switch.journal.records import Decision, Record


def test_every_journal_record_type_is_classified() -> None:
    """A new record type must be told here whether it moves money (settlement/ledger.py)."""
    assert unclassified_record_types() == []
    members = set(typing.get_args(Record))
    assert not (set(VIEWS) & set(NO_MONEY))
    assert set(VIEWS) | set(NO_MONEY) >= members


def test_each_view_reads_a_prefix_of_its_record() -> None:
    for record_type, view in VIEWS.items():
        record_fields = record_type.__struct_fields__  # type: ignore[attr-defined]
        view_fields = view.__struct_fields__  # type: ignore[attr-defined]
        assert record_fields[: len(view_fields)] == view_fields, record_type.__name__
        record_config = record_type.__struct_config__  # type: ignore[attr-defined]
        view_config = view.__struct_config__  # type: ignore[attr-defined]
        assert (view_config.tag, view_config.array_like) == (record_config.tag, True)
        record_hints = typing.get_type_hints(record_type)
        view_hints = typing.get_type_hints(view)
        for name in view_fields:
            assert view_hints[name] == record_hints[name], (record_type.__name__, name)


def test_a_view_decodes_what_the_record_encodes() -> None:
    decision = Decision(1, 2, "G0001", 3, "tap", "X00000001", 0, 0, "00", -200, 1800, 9)
    view = view_decoder.decode(msgspec.msgpack.encode(decision))
    assert (view.terminal_id, view.moved_fen, view.code) == ("G0001", -200, "00")
