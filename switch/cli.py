"""`onecard` — run the switch, make demo data, talk to it from the shell.

onecard run --demo              serve with demo data on the embedded journal
onecard demo --cards 100000     create demo data only
onecard tap X00000001           tap a card at a gate and print the answer
onecard purchase X00000001 350  pay 3.50 yuan at a merchant terminal
onecard balance X00000001
onecard reverse SEQ --terminal P0001
onecard echo
onecard qr mint X00000001        print a fresh e-card QR payload (qr image, qr rotate: see --help)
onecard scan PAYLOAD            scan an e-card QR code at a gate (--terminal P0001 --amount 350)
onecard bench                   benchmark the switch against a bare server (docs/performance.md)
onecard settle run              settle closed cycles by hand (status, reconcile, subsidy: --help)
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from pathlib import Path

import anyio
import msgspec

from bench.options import add_arguments as add_bench_arguments
from protocols.codes import ResponseCode
from protocols.terminal import Request, Response
from settlement.cli import add_commands as add_settle_commands
from switch.api.cli import add_commands as add_api_commands
from switch.banks.cli import add_commands as add_bank_commands
from switch.banks.cli import add_run_arguments as add_iso_run_arguments
from switch.banks.cli import apply_run_arguments as apply_iso_run_arguments
from switch.client import TerminalClient, clock_seq
from switch.config import ServerConfig, load_config
from switch.core import open_switch
from switch.datadir import hold_data_dir
from switch.demo import DemoSpec, create_demo
from switch.ecard.cli import add_commands as add_qr_commands
from switch.errors import SwitchError
from switch.journal.cli import add_journal_commands
from switch.keystore import KeyStore
from switch.ops.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from switch.ops.server import OpsServer
from switch.service import run
from switch.simulation import add_simulate_command

DEFAULT_DATA_DIR = Path(os.environ.get("ONECARD_DATA_DIR", "data"))
LOOPS = ("uvloop", "asyncio", "trio")


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else f"¥{fen // 100}.{fen % 100:02d}"


def _print_response(request: Request, response: Response, mac_failures: int) -> None:
    code = ResponseCode(response.code) if response.code in ResponseCode._value2member_map_ else None
    meaning = code.description if code is not None else "unknown code"
    print(
        f"{type(request).__name__.lower()} seq={response.seq} code={response.code} "
        f"({meaning}) amount={_yuan(response.amount_fen)} balance={_yuan(response.balance_fen)} "
        f"reference={response.reference}"
        + ("  WARNING: answer MAC did not verify" if mac_failures else "")
    )


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    server = config.server
    config = msgspec.structs.replace(
        config,
        server=ServerConfig(
            host=args.host or server.host,
            port=server.port if args.port is None else args.port,
            metrics_port=server.metrics_port if args.metrics_port is None else args.metrics_port,
            loop=args.loop or server.loop,
            api_port=server.api_port if args.api_port is None else args.api_port,
        ),
    )
    data_dir: Path = args.data_dir
    if args.demo and not (data_dir / "journal").exists():
        count = create_demo(data_dir, _demo_spec(args), config.engine)
        logging.getLogger("onecard").info("demo data: %d records written to %s", count, data_dir)
    config = apply_iso_run_arguments(config, args)  # --iso-port; the demo's banks
    _raise_file_limit()
    # Held while serving, so offline journal writers (`onecard qr rotate`) refuse meanwhile.
    # The metrics port opens before the journal is replayed: /healthz answers alive and
    # /readyz not ready throughout a long recovery (switch/ops/health.py).
    with (
        hold_data_dir(data_dir, "onecard run"),
        OpsServer(config.server.host, config.server.metrics_port) as ops,
    ):
        run(open_switch(data_dir, config), config, ops)
    return 0


def _demo_spec(args: argparse.Namespace) -> DemoSpec:
    return DemoSpec(cards=args.cards, gates=args.gates, pos=args.pos)


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    # Load tools need one terminal per connection: sequence numbers are per terminal.
    parser.add_argument("--cards", type=int, default=DemoSpec.cards, help="demo cards to create")
    parser.add_argument("--gates", type=int, default=DemoSpec.gates, help="demo gates to create")
    parser.add_argument("--pos", type=int, default=DemoSpec.pos, help="demo POS to create")


def cmd_bench(args: argparse.Namespace) -> int:
    # Imported here: matplotlib and rich would slow every other command's start.
    from bench.runner import cmd_bench as run_bench  # noqa: PLC0415

    return run_bench(args)


def cmd_demo(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    count = create_demo(args.data_dir, _demo_spec(args), config.engine)
    print(f"demo data: {count} records in {args.data_dir}")
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    keys = KeyStore.load(args.data_dir)
    terminal = args.terminal or ("P0001" if args.command in ("purchase",) else "G0001")
    key = keys.terminals.get(terminal)
    if key is None:
        print(f"no key for terminal {terminal} in {args.data_dir}", file=sys.stderr)
        return 2

    async def talk() -> None:
        async with await TerminalClient.connect(
            args.host, args.port, terminal, key, first_seq=args.seq or clock_seq()
        ) as client:
            request: Request
            if args.command == "tap":
                request = client.tap(args.card)
            elif args.command == "purchase":
                request = client.purchase(args.card, args.amount_fen)
            elif args.command == "balance":
                request = client.balance(args.card)
            elif args.command == "reverse":
                request = client.reversal(args.original_seq)
            elif args.command == "scan":
                request = client.scan(args.qr.encode("ascii"), args.amount)
            else:
                request = client.echo()
            response = await client.request(request)
            _print_response(request, response, client.mac_failures)

    anyio.run(talk)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onecard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="journal and key store (default: %(default)s)",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=os.environ.get("ONECARD_LOG_FORMAT", "text"),
        help="text, or JSON lines for a log shipper (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=os.environ.get("ONECARD_LOG_LEVEL", "info"),
        help="(default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve terminals on the embedded journal")
    run.add_argument("--demo", action="store_true", help="create demo data if there is none")
    _add_demo_arguments(run)
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None, help="terminal port (0: any free)")
    run.add_argument("--metrics-port", type=int, default=None, help="Prometheus port")
    run.add_argument("--loop", choices=LOOPS, default=None, help="event loop (default uvloop)")
    add_iso_run_arguments(run)
    run.add_argument("--api-port", type=int, default=None, help="service API port (0: any free)")
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="create demo data in a new data directory")
    _add_demo_arguments(demo)
    demo.set_defaults(handler=cmd_demo)

    bench = commands.add_parser(
        "bench", help="benchmark the durable switch against a bare baseline server"
    )
    add_bench_arguments(bench)
    bench.set_defaults(handler=cmd_bench)

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--host", default=ServerConfig().host)
        sub.add_argument("--port", type=int, default=ServerConfig().port)
        sub.add_argument("--terminal", default=None, help="terminal id (gate G0001, POS P0001)")
        sub.add_argument("--seq", type=int, default=None, help="sequence number (default: clock)")
        sub.set_defaults(handler=cmd_client)
        return sub

    client_command("tap", "tap a card at a gate").add_argument("card")
    purchase = client_command("purchase", "pay at a merchant terminal")
    purchase.add_argument("card")
    purchase.add_argument("amount_fen", type=int)
    client_command("balance", "ask a card's purse balance").add_argument("card")
    client_command("reverse", "reverse an earlier request of the terminal").add_argument(
        "original_seq", type=int
    )
    client_command("echo", "check the link and the terminal key")
    scan = client_command("scan", "scan an e-card QR code (default terminal: gate G0001)")
    scan.add_argument("qr", help="the QR payload text, e.g. from `onecard qr mint`")
    scan.add_argument("--amount", type=int, default=0, help="fen to pay at a POS")
    add_qr_commands(commands)
    add_bank_commands(commands)
    add_api_commands(commands)

    add_journal_commands(commands)
    add_simulate_command(commands)
    add_settle_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Masked: no citizen ID or name reaches a log line (switch/privacy, switch/ops/logs.py).
    configure_logging(args.log_format, args.log_level)
    try:
        result: int = args.handler(args)
    except SwitchError as exc:
        print(f"onecard: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"onecard: {exc}", file=sys.stderr)
        return 1
    return result
