"""`onecard api-token add PRINCIPAL ROLE`: make a service API token and print it once."""

from __future__ import annotations

import argparse

from switch.api.auth import Tokens
from switch.privacy.purposes import Role


def cmd_token_add(args: argparse.Namespace) -> int:
    tokens = Tokens.load(args.data_dir)
    token = tokens.add(args.principal, Role(args.role))
    tokens.save(args.data_dir)
    # The token itself is shown this once: the file keeps only its hash.
    print(token)
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("api-token", help="manage service API tokens")
    actions = token.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="make a token for PRINCIPAL acting as ROLE")
    add.add_argument("principal", help="a staff or system id, e.g. desk-0117 (no names)")
    add.add_argument("role", choices=[role.value for role in Role])
    add.set_defaults(handler=cmd_token_add)
