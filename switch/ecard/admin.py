"""E-card operations against a data directory, for the command line.

Minting only reads: it replays a copy of the journal (so it never truncates a tail the
running switch is still writing) and signs with the key store's private key, so it works
while the switch runs. Rotation appends to the journal, which only one process may do: it
takes the data directory's lock and refuses while the switch holds it. Until the service
API arrives (a later issue), a rotation therefore means: stop the switch, rotate, start it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from protocols.ecard import BusinessType
from switch.config import Config
from switch.datadir import hold_data_dir
from switch.ecard.issue import mint_qr, rotation
from switch.ecard.records import QrKeyActivated, QrKeyRetired
from switch.engine import Engine
from switch.journal import Journal, recover
from switch.journal.segment import segment_paths
from switch.keystore import KeyStore

JOURNAL = "journal"


def replayed_copy(data_dir: Path, config: Config, keys: KeyStore) -> Engine:
    """The switch's state as of now, from a copy of the journal: safe while it runs."""
    engine = Engine(config.engine, keys.terminals)
    with tempfile.TemporaryDirectory(prefix="onecard-journal-") as copy:
        for path in segment_paths(data_dir / JOURNAL):
            shutil.copyfile(path, Path(copy) / path.name)
        recover(Path(copy), lambda _index, record: engine.apply(record), keys.journal)
    return engine


def mint(
    data_dir: Path,
    config: Config,
    card: str,
    business: BusinessType,
    now_ms: int,
    validity_s: int | None = None,
) -> bytes:
    keys = KeyStore.load(data_dir)
    state = replayed_copy(data_dir, config, keys).ecard
    return mint_qr(state, keys.qr_signing, card, business, now_ms, validity_s=validity_s)


def rotate(
    data_dir: Path, config: Config, now_ms: int, retire_after_ms: int
) -> list[QrKeyActivated | QrKeyRetired]:
    """Make a new signing key, in force from `now_ms`; retire the others at
    `now_ms + retire_after_ms`. Journalled; ConfigError while the switch runs."""
    journal_dir = data_dir / JOURNAL
    with hold_data_dir(data_dir, "onecard qr rotate"):
        keys = KeyStore.load(data_dir)
        engine = Engine(config.engine, keys.terminals)
        report = recover(journal_dir, lambda _index, record: engine.apply(record), keys.journal)
        key_id = engine.ecard.keys.next_key_id()
        # A private key under an id the journal never named is left from a rotation whose
        # journal append failed: nothing was signed with it, so it is replaced.
        keys.qr_signing.pop(key_id, None)
        records = rotation(engine.ecard, key_id, keys.new_qr_key(key_id), now_ms, retire_after_ms)
        for record in records:
            engine.apply(record)  # the checks replay will make, before anything is written
        # The private key first: a journal naming a key the issuer does not hold would
        # leave it nothing to sign with, while the opposite costs nothing.
        keys.save(data_dir)
        Journal.append_while_stopped(journal_dir, report, list(records))
        # The issuer never signs with a retired key again; codes it signed stay verifiable
        # with the public half in the journal until the retirement time.
        for record in records:
            if type(record) is QrKeyRetired:
                keys.qr_signing.pop(record.key_id, None)
        keys.save(data_dir)
    return records
