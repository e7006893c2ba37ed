"""The QR wallet of a data directory's e-cards, for the load tools that show QR codes.

The e-cards are read from a copy of the switch's journal (switch.ecard.admin.replayed_copy,
as `onecard qr mint` reads them), so the switch may be running: about 2 s of CPU for the
demo's 200,000 cards, half a minute for a million.
"""

from __future__ import annotations

from pathlib import Path

from bench.mix import QrWallet
from switch.config import Config
from switch.ecard.admin import replayed_copy
from switch.keystore import KeyStore


def wallet_of(data_dir: Path) -> QrWallet:
    keys = KeyStore.load(data_dir)
    return QrWallet(replayed_copy(data_dir, Config(), keys).ecard, keys.qr_signing)
