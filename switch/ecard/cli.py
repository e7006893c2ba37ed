"""`onecard qr …`: mint a QR payload, render it as an image, rotate the signing key.

    onecard qr mint X00000001 [--type 02]     print a fresh payload (the QR text)
    onecard qr image X00000001 --out qr.png   the same, as a QR image (PNG or SVG)
    onecard qr rotate [--grace SECONDS]       new signing key; the old one retires later

Each works on the data directory (`onecard --data-dir`). The payload goes alone to standard
output, so `onecard scan "$(onecard qr mint X00000001)"` works; notes go to standard error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from protocols.ecard import TEXT_SIZE, BusinessType
from switch.config import load_config
from switch.ecard import admin
from switch.ecard.image import render_qr
from switch.ecard.records import QrKeyActivated

BUSINESS_TYPES = {f"{business:02d}": business for business in BusinessType}
MS_PER_SECOND = 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _mint(args: argparse.Namespace) -> tuple[bytes, BusinessType]:
    business = BUSINESS_TYPES[args.type]
    config = load_config(args.config)
    payload = admin.mint(args.data_dir, config, args.card, business, _now_ms(), args.validity)
    validity_s = args.validity or config.engine.ecard.qr_validity_s
    print(
        f"{business.name.lower()} code for {args.card}, valid {validity_s} s, "
        f"{len(payload)} characters",
        file=sys.stderr,
    )
    return payload, business


def cmd_mint(args: argparse.Namespace) -> int:
    payload, _ = _mint(args)
    print(payload.decode("ascii"))
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    payload, _ = _mint(args)
    code = render_qr(payload, args.out)
    width, _height = code.symbol_size(border=0)
    print(f"QR version {code.version}-{code.error}, {width}x{width} modules: {args.out}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    grace_s = config.engine.ecard.key_retire_grace_s if args.grace is None else args.grace
    records = admin.rotate(args.data_dir, config, _now_ms(), grace_s * MS_PER_SECOND)
    for record in records:
        if type(record) is QrKeyActivated:
            print(f"QR key {record.key_id} signs from now on")
        else:
            print(f"QR key {record.key_id} is accepted for {grace_s} s more, then retired")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    qr = commands.add_parser("qr", help="e-card QR codes: mint, image, rotate the key")
    sub = qr.add_subparsers(dest="qr_command", required=True)

    def minting(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("card", help="the physical card whose e-card shows the code")
        parser.add_argument(
            "--type",
            choices=sorted(BUSINESS_TYPES),
            default=f"{BusinessType.PAYMENT:02d}",
            help="business type: 01 query, 02 payment, 03 other, 04 medical (default 02)",
        )
        parser.add_argument(
            "--validity", type=int, default=None, help="seconds (default: configuration)"
        )
        return parser

    minting("mint", f"print a fresh QR payload ({TEXT_SIZE} characters)").set_defaults(
        handler=cmd_mint
    )
    image = minting("image", "write a fresh QR code as an image (.png or .svg)")
    image.add_argument("--out", type=Path, required=True)
    image.set_defaults(handler=cmd_image)
    rotate = sub.add_parser("rotate", help="make a new signing key (the switch must be stopped)")
    rotate.add_argument(
        "--grace",
        type=int,
        default=None,
        help="seconds the previous key stays accepted (default: configuration, 600)",
    )
    rotate.set_defaults(handler=cmd_rotate)
