"""`onecard run --iso-port N` and `onecard banksim`: the ISO 8583 channel from the shell.

    onecard run --demo                 the demo serves ISO 8583 on 8583, with links to the
                                       demo banks on 127.0.0.1:8601-8604
    onecard banksim                    serve those four demo bank hosts (another shell)
    onecard banksim --bank ABC=8601 --latency-ms 20 --balance-fen 500000

Until `onecard banksim` runs, the demo's bank links are down and bank-routed payments are
approved in stand-in (or declined 91 over the floor limit); once it runs the links sign on
and the advices go through.
"""

from __future__ import annotations

import argparse
import logging

import anyio
import msgspec

from switch.banks.config import DEMO_BANK_PORTS, BankLink, Iso8583Config, demo_banks
from switch.banks.simulator import BALANCE_FEN_DEFAULT, BankHost, BankSimulator, Behaviour
from switch.config import Config

log = logging.getLogger("onecard.banksim")


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--iso-port", type=int, default=None, help="serve ISO 8583 on this port (0: any free)"
    )


def apply_run_arguments(config: Config, args: argparse.Namespace) -> Config:
    """--iso-port enables the ISO listener; --demo enables it with the demo's bank links
    unless the configuration names banks."""
    iso = config.iso8583
    if args.iso_port is not None:
        iso = Iso8583Config(enabled=True, host=iso.host, port=args.iso_port)
    elif getattr(args, "demo", False):
        iso = Iso8583Config(enabled=True, host=iso.host, port=iso.port)
    banks = config.banks
    if getattr(args, "demo", False) and not banks.links:
        banks = demo_banks()
    return msgspec.structs.replace(config, iso8583=iso, banks=banks)


def _bank(text: str) -> tuple[str, int]:
    bank, _, port = text.partition("=")
    return bank, int(port or DEMO_BANK_PORTS.get(bank, 0))


def cmd_banksim(args: argparse.Namespace) -> int:
    banks = [_bank(text) for text in args.bank] or sorted(DEMO_BANK_PORTS.items())

    async def serve() -> None:
        async with anyio.create_task_group() as group:
            for bank, port in banks:
                host = BankHost(bank, balance_fen_default=args.balance_fen)
                behaviour = Behaviour(latency_s=args.latency_ms / 1000)
                simulator = BankSimulator(host, BankLink(bank).mac_key, behaviour)
                bound = await group.start(simulator.serve, args.host, port)
                print(f"onecard banksim: bank {bank} on {args.host}:{bound}", flush=True)

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        log.info("stopped")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = commands.add_parser(
        "banksim", help="serve simulated partner-bank hosts (ISO 8583) for the demo and bench"
    )
    sim.add_argument(
        "--bank",
        action="append",
        default=[],
        metavar="ID=PORT",
        help="a bank to serve (default: the demo banks on 8601-8604); repeat for more",
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    sim.add_argument(
        "--balance-fen", type=int, default=BALANCE_FEN_DEFAULT, help="every account's balance"
    )
    sim.set_defaults(handler=cmd_banksim)
