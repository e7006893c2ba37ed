"""Demo service API tokens: one principal per role, written to the data directory's token
file, and the tokens themselves to `api-tokens.demo.txt` (0600) for whoever runs the demo."""

from __future__ import annotations

import os
from pathlib import Path

from switch.api.auth import Tokens
from switch.privacy.purposes import Role

DEMO_TOKENS = "api-tokens.demo.txt"


def demo_principal(role: Role) -> str:
    return f"demo-{role.value.replace('_', '-')}"


def create_demo_tokens(data_dir: Path) -> dict[Role, str]:
    tokens = Tokens.load(data_dir)
    made = {role: tokens.add(demo_principal(role), role) for role in Role}
    tokens.save(data_dir)
    fd = os.open(data_dir / DEMO_TOKENS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.writelines(f"{role.value} {token}\n" for role, token in made.items())
    return made
