"""bench.mix's QR payments beyond what tests/bench/test_bench_smoke.py checks of every intent:
a retried code over a real switch and its journal, and a script without a wallet left as it
was."""

from __future__ import annotations

import random
from pathlib import Path

from bench.mix import (
    QR_TAP,
    Mix,
    Planned,
    QrWallet,
    Role,
    TerminalScript,
)
from protocols.terminal import ClientCodec, MacKey, Response, ServerCodec
from switch.config import Config, ServerConfig
from switch.core import Switch, open_switch
from switch.keystore import KeyStore
from tests.conftest import DEMO_CARDS, FakeClock

CONFIG = Config(server=ServerConfig(port=0, metrics_port=0))
REQUESTS = 200


def script(
    keys: KeyStore, terminal_id: str, role: Role, mix: Mix, wallet: QrWallet | None
) -> TerminalScript:
    return TerminalScript(
        terminal_id,
        role,
        MacKey(keys.terminals[terminal_id]),
        first_seq=1,
        cards=DEMO_CARDS,
        mix=mix,
        rng=random.Random(5),
        wallet=wallet,
    )


def decide(switch: Switch, key: MacKey, planned: Planned) -> Response:
    codec = ServerCodec()
    codec.receive_data(planned.frame)
    out, _position = switch.process(codec.next_frames())
    client = ClientCodec(key)
    client.receive_data(out)
    [(response, mac_ok)] = client.next_responses()
    assert mac_ok and response.seq == planned.seq
    return response


def test_a_qr_payment_retried_gets_its_first_answer_and_moves_money_once(
    data_dir: Path, keys: KeyStore, clock: FakeClock
) -> None:
    switch = open_switch(data_dir, CONFIG, clock)
    wallet = QrWallet(switch.engine.ecard, keys.qr_signing)
    terminal = script(keys, "G0001", Role.GATE, Mix(qr_share=1.0, retry=0.0), wallet)
    key = MacKey(keys.terminals["G0001"])
    try:
        planned = terminal.next_request(clock())
        while planned.label != QR_TAP:  # cards without a payment e-card still tap
            planned = terminal.next_request(clock())
        purse = switch.engine.cards[planned.card].purse_fen
        first = decide(switch, key, planned)
        clock.advance(seconds=1)
        again = decide(switch, key, planned)  # a gate that timed out sends it again
        assert first == again and first.code == "00"
        fare = purse - switch.engine.cards[planned.card].purse_fen
        assert fare > 0
    finally:
        switch.journal.close()


def test_without_a_wallet_the_traffic_is_what_it_was(keys: KeyStore) -> None:
    # The bench's generator has no wallet: its requests, to the byte, do not depend on
    # the QR share (no random draw is spent on it).
    for role, terminal_id in ((Role.GATE, "G0001"), (Role.POS, "P0001")):
        plain = script(keys, terminal_id, role, Mix(), None)
        shared = script(keys, terminal_id, role, Mix(qr_share=1.0), None)
        for now_ms in range(REQUESTS):
            assert plain.next_request(now_ms).frame == shared.next_request(now_ms).frame
