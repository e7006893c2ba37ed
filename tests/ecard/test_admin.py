"""Issuance against a data directory: the key store, `onecard qr …`, the data-dir lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocols.ecard import TEXT_SIZE, BusinessType, decode_qr
from switch.cli import main
from switch.config import Config
from switch.datadir import hold_data_dir
from switch.ecard import admin
from switch.ecard.records import QrKeyActivated, QrKeyRetired
from switch.errors import ConfigError
from switch.keystore import KeyStore

T0_MS = 1_764_400_000_000


def test_a_key_store_from_before_e_cards_still_loads(tmp_path: Path) -> None:
    document = {
        "holder_secret": "00" * 32,
        "journal_key": "22" * 32,
        "terminals": {"G0001": "11" * 16},
    }
    (tmp_path / "keys.json").write_text(json.dumps(document))
    keys = KeyStore.load(tmp_path)
    assert keys.terminals == {"G0001": bytes([0x11]) * 16} and keys.qr_signing == {}


def test_a_key_store_without_a_journal_key_is_refused(tmp_path: Path) -> None:
    # The journal's chain cannot be checked without its key: no silent fresh one.
    document = {"holder_secret": "00" * 32, "terminals": {}}
    (tmp_path / "keys.json").write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="journal_key"):
        KeyStore.load(tmp_path)


def test_qr_signing_keys_survive_a_save(tmp_path: Path) -> None:
    keys = KeyStore()
    public = keys.new_qr_key(3)
    keys.save(tmp_path)
    assert KeyStore.load(tmp_path).qr_signing == keys.qr_signing
    assert len(public) == 32
    with pytest.raises(ConfigError):
        keys.new_qr_key(3)


def test_mint_reads_the_data_directory(data_dir: Path) -> None:
    qr = admin.mint(data_dir, Config(), "X00000001", BusinessType.PAYMENT, T0_MS)
    claims = decode_qr(qr).claims
    assert (claims.key_id, claims.issued_at_ms, claims.validity_s) == (1, T0_MS, 60)


def test_mint_works_while_the_switch_holds_the_directory(data_dir: Path) -> None:
    with hold_data_dir(data_dir, "a test standing in for the switch"):
        assert len(admin.mint(data_dir, Config(), "X00000001", BusinessType.QUERY, T0_MS)) == (
            TEXT_SIZE
        )


def test_rotate_journals_both_keys_and_keeps_only_the_new_private_key(data_dir: Path) -> None:
    records = admin.rotate(data_dir, Config(), T0_MS, retire_after_ms=600_000)
    assert records == [
        QrKeyActivated(T0_MS, 2, records[0].public_key, T0_MS),  # type: ignore[union-attr]
        QrKeyRetired(T0_MS, 1, T0_MS + 600_000),
    ]
    assert set(KeyStore.load(data_dir).qr_signing) == {2}
    state = admin.replayed_copy(data_dir, Config(), KeyStore.load(data_dir)).ecard
    assert state.keys.get(1).retire_at_ms == T0_MS + 600_000  # type: ignore[union-attr]
    qr = admin.mint(data_dir, Config(), "X00000001", BusinessType.PAYMENT, T0_MS + 1)
    assert decode_qr(qr).claims.key_id == 2


def test_rotate_refuses_while_the_switch_holds_the_directory(data_dir: Path) -> None:
    with (
        hold_data_dir(data_dir, "onecard run"),
        pytest.raises(ConfigError, match="stop the switch first"),
    ):
        admin.rotate(data_dir, Config(), T0_MS, retire_after_ms=600_000)
    assert set(KeyStore.load(data_dir).qr_signing) == {1}  # nothing changed


def test_commands(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(data_dir), "qr"]
    assert main([*base, "mint", "X00000001", "--type", "01"]) == 0
    out, err = capsys.readouterr()
    assert decode_qr(out.strip().encode()).claims.business_type is BusinessType.QUERY
    assert "145 characters" in err
    png = data_dir / "card.png"
    assert main([*base, "image", "X00000001", "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG") and "version 6-M" in capsys.readouterr().out
    assert main([*base, "rotate"]) == 0
    assert "QR key 2 signs from now on" in capsys.readouterr().out
    assert main([*base, "mint", "X00000009"]) == 1  # demo cards ending in 9 have no e-card
    assert "no e-card" in capsys.readouterr().err
    with hold_data_dir(data_dir, "onecard run"):
        assert main([*base, "rotate"]) == 1
    assert "stop the switch first" in capsys.readouterr().err
