"""Demo holders' personal data: a name and a phone number for every demo card's holder,
sealed into the holder registry as the service API would (switch/demo.py calls this)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

from switch.keystore import KeyStore
from switch.privacy.holders import HolderFile, HolderSealer, PersonalData
from switch.privacy.seal import Sealer

FAMILY_NAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN_NAME_CHARACTERS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
MOBILE_PREFIXES = ("138", "139", "150", "151", "186", "187", "133", "153", "180", "189")


def demo_person(rng: random.Random, citizen_id: str) -> PersonalData:
    given = "".join(rng.choice(GIVEN_NAME_CHARACTERS) for _ in range(rng.choice((1, 2))))
    phone = rng.choice(MOBILE_PREFIXES) + "".join(str(rng.randrange(10)) for _ in range(8))
    return PersonalData(rng.choice(FAMILY_NAMES) + given, citizen_id, phone)


def demo_people(citizen_ids: Mapping[str, str], seed: int) -> dict[str, PersonalData]:
    """card -> the personal data of its holder, deterministic for a seed."""
    rng = random.Random(seed)
    return {card: demo_person(rng, citizen_id) for card, citizen_id in citizen_ids.items()}


def enrol_demo_holders(
    data_dir: Path, keys: KeyStore, citizen_ids: Mapping[str, str], seed: int
) -> int:
    """Seal every demo holder into the registry file; returns how many."""
    sealer = HolderSealer(keys.holder_secret, Sealer(keys.data_keys))
    registry = HolderFile(data_dir)
    try:
        rows = []
        for person in demo_people(citizen_ids, seed).values():
            token = sealer.token(person.citizen_id)
            rows.append((token, sealer.seal(token, person)))
        registry.put_many(rows)
    finally:
        registry.close()
    return len(citizen_ids)
