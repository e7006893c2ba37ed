"""Demo data: realistic cards, holders and terminals, written through the real journal.

Holders get valid citizen ID numbers from Shiyan's districts (checksummed, real dates);
only their keyed token and masked form reach the journal. Cards get 9-character numbers,
bank accounts Luhn-valid numbers at one of the partner banks. A few fixed cards sit in each
non-active state so every decline can be tried from the shell:

    X00000001 active, purse full      X00000004 suspended (social security)
    X00000002 temporarily lost        X00000005 cancelled
    X00000003 lost                    X00000006 replaced
    X00000007 active, purse empty

    X00000095 elderly (寿星卡)   X00000096 disabled   X00000097 student   X00000098 low income

Other cards among the first 100 are standard; beyond, elderly when the holder is 65 or over.

Terminals (keys random, kept in the key store):
    G0001..     validators on flat bus line B1
    V0001-V0004 validators on sectional bus line B8 (they send the stop with each tap)
    MI01.., MO01..  entry and exit gates at each station of metro network M, in the fare
                table's station order
    P0001..     merchant POS (owner merchant-NNNN)
    H0001..     medical counters (owner hospital-NNNN): e-card scans only

E-cards: every card has one at level 2 (payment) except X.......8 (level 1: identity and
query, e.g. X00000008) and X.......9 (no e-card, e.g. X00000009). QR signing key 1 is in
force from the start; its private key is in the key store for `onecard qr mint`.
The fare table in force is switch/transit/tables/shiyan.toml.
"""

from __future__ import annotations

import datetime
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from protocols.ecard import TOKEN_SIZE
from protocols.terminal.mac import key_check_value
from switch.api.demo import create_demo_tokens
from switch.config import DEFAULT_FARES, EngineConfig
from switch.domain.identifiers import (
    citizen_id_check_character,
    citizen_id_token,
    luhn_check_digit,
    mask_bank_account,
    mask_citizen_id,
    normalise_citizen_id,
)
from switch.domain.model import CardCategory, CardStatus, TerminalKind
from switch.ecard.records import EcardBound, QrKeyActivated
from switch.ecard.state import EcardLevel
from switch.errors import ConfigError
from switch.journal import Journal, Record, recover
from switch.journal.records import CardIssued, FareTableActivated, TerminalRegistered
from switch.keystore import KeyStore
from switch.privacy.demo import enrol_demo_holders
from switch.transit.fares import encode_fare_table, load_fare_table
from switch.transit.rides import Place

SHIYAN_REGIONS = ("420302", "420303", "420304", "420322", "420323", "420324", "420325", "420381")
PARTNER_BANKS = {"ABC": "622848", "ICBC": "621226", "CCB": "621700", "HBRCU": "621072"}
FIXED_STATUSES = {
    2: CardStatus.TEMPORARILY_LOST,
    3: CardStatus.LOST,
    4: CardStatus.SUSPENDED,
    5: CardStatus.CANCELLED,
    6: CardStatus.REPLACED,
}
EMPTY_PURSE_CARD = 7
FIXED_CATEGORIES = {
    95: CardCategory.ELDERLY,
    96: CardCategory.DISABLED,
    97: CardCategory.STUDENT,
    98: CardCategory.LOW_INCOME,
}
FIXED_RANGE = 100
SECTIONAL_VALIDATORS = 4
# E-cards by the last digit of the card's serial: most at level 2, some at level 1, some none.
LEVEL_1_LAST_DIGIT = 8
NO_ECARD_LAST_DIGIT = 9
FIRST_QR_KEY_ID = 1
ELDERLY_AGE_YEARS = 65


@dataclass(frozen=True)
class DemoSpec:
    cards: int = 1000
    gates: int = 16
    pos: int = 8
    medical: int = 2
    seed: int = 2023_03_01  # the regulation's day in force
    today: datetime.date = datetime.date(2026, 11, 29)


def card_number(serial: int) -> str:
    return f"X{serial:08d}"


def random_citizen_id(rng: random.Random, today: datetime.date, elderly: bool = False) -> str:
    if elderly:
        birth = datetime.date(1935, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 20))
    else:
        birth = datetime.date(1962, 1, 1) + datetime.timedelta(days=rng.randrange(365 * 50))
    birth = min(birth, today - datetime.timedelta(days=365 * 6))
    first17 = f"{rng.choice(SHIYAN_REGIONS)}{birth:%Y%m%d}{rng.randrange(1, 1000):03d}"
    return normalise_citizen_id(first17 + citizen_id_check_character(first17))


def age_years(citizen_id: str, today: datetime.date) -> int:
    birth = datetime.date(int(citizen_id[6:10]), int(citizen_id[10:12]), int(citizen_id[12:14]))
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _gate(keys: KeyStore, terminal_id: str, owner: str, place: Place) -> TerminalRegistered:
    key = keys.new_terminal_key(terminal_id)
    return TerminalRegistered(
        terminal_id,
        TerminalKind.GATE,
        owner,
        key_check_value(key),
        place.line,
        place.station,
        place.direction,
    )


def demo_records(
    spec: DemoSpec,
    keys: KeyStore,
    config: EngineConfig,
    citizen_ids: dict[str, str] | None = None,
) -> list[Record]:
    """The demo's records; `citizen_ids`, when given, receives card -> holder's ID number
    (for the holder registry: the records carry only tokens and masked forms)."""
    rng = random.Random(spec.seed)
    table = load_fare_table(DEFAULT_FARES)
    records: list[Record] = [
        FareTableActivated(0, table.version, 0, encode_fare_table(table)),
    ]
    flat = Place("B1", "", "")
    records.extend(
        _gate(keys, f"G{number:04d}", "shiyan-bus", flat) for number in range(1, spec.gates + 1)
    )
    sectional = Place("B8", "", "")
    records.extend(
        _gate(keys, f"V{number:04d}", "shiyan-bus", sectional)
        for number in range(1, SECTIONAL_VALIDATORS + 1)
    )
    for network in table.distance:
        for number, station in enumerate(network.stations, start=1):
            for prefix, direction in (("MI", "entry"), ("MO", "exit")):
                place = Place(network.id, station, direction)
                records.append(_gate(keys, f"{prefix}{number:02d}", "shiyan-metro", place))
    for number in range(1, spec.pos + 1):
        terminal_id = f"P{number:04d}"
        key = keys.new_terminal_key(terminal_id)
        records.append(
            TerminalRegistered(
                terminal_id, TerminalKind.POS, f"merchant-{number:04d}", key_check_value(key)
            )
        )
    for serial in range(1, spec.cards + 1):
        fixed = serial <= FIXED_RANGE
        category = FIXED_CATEGORIES.get(serial, CardCategory.STANDARD)
        citizen_id = random_citizen_id(rng, spec.today, elderly=category is CardCategory.ELDERLY)
        bank_id, prefix = rng.choice(sorted(PARTNER_BANKS.items()))
        partial = prefix + "".join(str(rng.randrange(10)) for _ in range(12))
        account = partial + luhn_check_digit(partial)
        if not fixed and age_years(citizen_id, spec.today) >= ELDERLY_AGE_YEARS:
            category = CardCategory.ELDERLY
        if citizen_ids is not None:
            citizen_ids[card_number(serial)] = citizen_id
        records.append(
            CardIssued(
                card=card_number(serial),
                holder_token=citizen_id_token(citizen_id, keys.holder_secret),
                holder_masked=mask_citizen_id(citizen_id),
                category=category,
                status=FIXED_STATUSES.get(serial, CardStatus.ACTIVE),
                purse_fen=0 if serial == EMPTY_PURSE_CARD else config.purse_cap_fen,
                medical_fen=rng.randrange(0, 500_000),
                bank_id=bank_id,
                bank_account_masked=mask_bank_account(account),
            )
        )
    for number in range(1, spec.medical + 1):
        terminal_id = f"H{number:04d}"
        key = keys.new_terminal_key(terminal_id)
        records.append(
            TerminalRegistered(
                terminal_id, TerminalKind.MEDICAL, f"hospital-{number:04d}", key_check_value(key)
            )
        )
    records.extend(_ecards(spec, keys))
    return records


def _ecards(spec: DemoSpec, keys: KeyStore) -> list[Record]:
    """The first QR signing key, in force from the start, and the demo e-cards."""
    records: list[Record] = [
        QrKeyActivated(0, FIRST_QR_KEY_ID, keys.new_qr_key(FIRST_QR_KEY_ID), 0)
    ]
    tokens: set[bytes] = set()
    for serial in range(1, spec.cards + 1):
        if serial % 10 == NO_ECARD_LAST_DIGIT:
            continue
        token = secrets.token_bytes(TOKEN_SIZE)
        while token in tokens:
            token = secrets.token_bytes(TOKEN_SIZE)
        tokens.add(token)
        level = EcardLevel.IDENTITY if serial % 10 == LEVEL_1_LAST_DIGIT else EcardLevel.PAYMENT
        records.append(EcardBound(0, card_number(serial), token, int(level)))
    return records


def create_demo(data_dir: Path, spec: DemoSpec, config: EngineConfig) -> int:
    """Write demo data into an empty data directory; returns the records written."""
    journal_dir = data_dir / "journal"
    if journal_dir.exists() and any(journal_dir.iterdir()):
        raise ConfigError(f"{data_dir} already holds a journal; demo data goes only into a new one")
    journal_dir.mkdir(parents=True, exist_ok=True)
    keys = KeyStore()
    citizen_ids: dict[str, str] = {}
    records = demo_records(spec, keys, config, citizen_ids)
    keys.save(data_dir)
    report = recover(journal_dir, lambda _i, _r: None, keys.journal)
    Journal.append_while_stopped(journal_dir, report, records)
    # The service API's side: holders' names and contacts (sealed), and a token per role.
    enrol_demo_holders(data_dir, keys, citizen_ids, spec.seed)
    create_demo_tokens(data_dir)
    return len(records)
