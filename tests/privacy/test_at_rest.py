"""Sealing, the holder file, the key store's new keys and its old files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switch.errors import StateError
from switch.keystore import KeyStore
from switch.privacy.holders import FILE_NAME, HolderFile, HolderSealer, PersonalData
from switch.privacy.seal import Sealer

PERSON = PersonalData("王小明", "420302196503150014", "13812345678")


def test_a_sealed_value_opens_only_in_its_place_and_after_a_new_key() -> None:
    old = Sealer({1: b"k" * 32})
    sealed = old.seal(b"secret", b"holder-a")
    assert old.open(sealed, b"holder-a") == b"secret"
    with pytest.raises(StateError, match="out of place"):
        old.open(sealed, b"holder-b")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(StateError):
        old.open(tampered, b"holder-a")
    rotated = Sealer({1: b"k" * 32, 2: b"n" * 32})
    assert rotated.open(sealed, b"holder-a") == b"secret"  # old key still opens
    assert rotated.seal(b"x", b"c")[1:3] == b"\x00\x02"  # the newest key seals


def test_holder_file_survives_a_torn_tail_and_holds_no_plaintext(tmp_path: Path) -> None:
    sealer = HolderSealer(b"s" * 32, Sealer({1: b"k" * 32}))
    token = sealer.token(PERSON.citizen_id)
    registry = HolderFile(tmp_path)
    registry.put(token, sealer.seal(token, PERSON))
    registry.put("other", sealer.seal("other", PERSON))
    registry.close()
    data = (tmp_path / FILE_NAME).read_bytes()
    for value in (PERSON.name, PERSON.citizen_id, PERSON.contact):
        assert value.encode() not in data
    (tmp_path / FILE_NAME).write_bytes(data + b"\x00\x00\x01\x00torn")
    reopened = HolderFile(tmp_path)
    sealed = reopened.get(token)
    assert sealed is not None and sealer.open(token, sealed) == PERSON
    assert len(reopened) == 2
    reopened.close()
    assert (tmp_path / FILE_NAME).read_bytes() == data  # the torn entry was cut off
    assert PERSON.masked() == PersonalData("王**", "4203**********0014", "138****5678")


def test_key_store_without_personal_data_keys_still_loads(tmp_path: Path) -> None:
    keys = KeyStore()
    keys.save(tmp_path)
    document = json.loads((tmp_path / "keys.json").read_text())
    del document["data_keys"], document["pin_pepper"]
    (tmp_path / "keys.json").write_text(json.dumps(document))
    first = KeyStore.load(tmp_path)
    again = KeyStore.load(tmp_path)
    assert list(first.data_keys) == [0] and first.data_keys == again.data_keys  # derived
    assert first.pin_pepper == again.pin_pepper and len(first.pin_pepper) == 32
    assert first.data_keys[0] not in (first.holder_secret, first.pin_pepper)
    first.save(tmp_path)
    assert KeyStore.load(tmp_path).data_keys == first.data_keys  # written out from then on
