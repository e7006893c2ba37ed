"""Cards in every lifecycle stage, made through the service API as a desk would."""

from __future__ import annotations

from typing import Any

from switch.domain.identifiers import citizen_id_check_character
from switch.lifecycle.machine import Stage
from switch.privacy.purposes import Role
from tests.api.harness import Desk

# Each endpoint of a lifecycle command, with a body that passes its schema and rules.
COMMANDS: dict[str, tuple[str, dict[str, str] | None]] = {
    "issue": ("issue", {}),
    "activate": ("activate", {"pin": "802613", "financial_pin": "551302"}),
    "report_temporary_loss": ("loss", {"kind": "temporary"}),
    "report_loss": ("loss", {"kind": "formal"}),
    "lift_loss": ("lift", None),
    "replace": ("replace", {"reason": "damaged"}),
    "cancel": ("cancel", {"reason": "transfer_out"}),
    "withdraw": ("cancel", {"reason": "transfer_out"}),  # cancelling an application
    "suspend": ("suspend", {"reference": "HRSS-2026-017"}),
    "restore": ("restore", {"reference": "HRSS-2026-018"}),
}
# Who may do each: sanctions need a supervisor.
ROLE = {"suspend": Role.SUPERVISOR, "restore": Role.SUPERVISOR}


def citizen_id(serial: int) -> str:
    """A valid ID number of a person born in 1999, distinct per serial (1..999)."""
    first17 = f"420302199907{1 + serial % 28:02d}{serial % 1000:03d}"
    return first17 + citizen_id_check_character(first17)


class Cards:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.serial = 0

    async def command(self, card: str, command: str, expect: int = 200) -> dict[str, Any]:
        path, body = COMMANDS[command]
        answer: dict[str, Any] = await self.desk.call(
            "POST",
            f"/cards/{card}/{path}",
            body,
            role=ROLE.get(command, Role.SERVICE_DESK),
            expect=201 if command == "replace" and expect == 200 else expect,
        )
        return answer

    async def applied(self, category: str = "standard") -> str:
        self.serial += 1
        answer = await self.desk.call(
            "POST",
            "/applications",
            {
                "name": "测试者",
                "citizen_id": citizen_id(self.serial),
                "contact": "13900000000",
                "category": category,
                "basis": "residence_permit",
            },
            expect=201,
        )
        card: str = answer["card"]
        return card

    async def in_stage(self, stage: Stage) -> str:
        card = await self.applied()
        if stage is Stage.APPLIED:
            return card
        if stage is Stage.CANCELLED:
            await self.command(card, "withdraw")
            return card
        await self.command(card, "issue")
        if stage is Stage.ISSUED:
            return card
        await self.command(card, "activate")
        steps = {
            Stage.ACTIVE: [],
            Stage.TEMPORARILY_LOST: ["report_temporary_loss"],
            Stage.LOST: ["report_loss"],
            Stage.SUSPENDED: ["suspend"],
            Stage.REPLACED: ["replace"],
        }[stage]
        for command in steps:
            await self.command(card, command)
        return card
