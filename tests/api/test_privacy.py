"""Personal data: sealed at rest, masked unless role and purpose allow more, every read
journalled and shown in the holder's access report, and never in a log line or a metric."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from switch.config import EngineConfig
from switch.demo import DemoSpec, demo_records
from switch.journal.segment import segment_paths
from switch.keystore import KeyStore
from switch.privacy.demo import demo_people
from switch.privacy.holders import PersonalData
from switch.privacy.masking import install_log_guard, mask_text
from switch.privacy.purposes import Role
from tests.api.harness import APPLICANT_ID, Desk
from tests.conftest import DEMO_CARDS

pytestmark = pytest.mark.anyio

APPLICANT_NAME = "欧阳明月"


def demo_holders() -> dict[str, PersonalData]:
    """card -> its demo holder's personal data, as create_demo enrolled them."""
    citizen_ids: dict[str, str] = {}
    spec = DemoSpec(cards=DEMO_CARDS)
    demo_records(spec, KeyStore(), EngineConfig(), citizen_ids)
    return demo_people(citizen_ids, spec.seed)


def secrets_of(people: list[PersonalData]) -> list[str]:
    """Every value that must never appear in the clear: IDs, names, phone numbers."""
    values = [APPLICANT_ID, APPLICANT_NAME]
    for person in people:
        values += [person.citizen_id, person.name, person.contact]
    return values


async def test_holder_data_masked_unless_role_and_purpose_allow(desk: Desk) -> None:
    person = demo_holders()["X00000030"]
    lookup = {"citizen_id": person.citizen_id, "purpose": "identity_check"}
    found = await desk.call("POST", "/holders/lookup", lookup)
    assert (found["name"], found["citizen_id"], found["unmasked"]) == (
        person.name,
        person.citizen_id,
        True,
    )
    assert found["cards"] == ["X00000030"]
    token = found["holder_token"]
    path = f"/holders/{token}"
    masked = await desk.call("GET", path, params={"purpose": "audit"}, role=Role.AUDITOR)
    assert masked["unmasked"] is False
    assert masked["citizen_id"] == person.citizen_id[:4] + "*" * 10 + person.citizen_id[-4:]
    assert masked["name"] == person.name[0] + "*" * (len(person.name) - 1)
    assert person.contact not in masked["contact"]
    # The desk may not unmask for fraud investigations; a supervisor may.
    desk_fraud = await desk.call("GET", path, params={"purpose": "fraud_investigation"})
    assert desk_fraud["unmasked"] is False
    supervisor = await desk.call(
        "GET", path, params={"purpose": "fraud_investigation"}, role=Role.SUPERVISOR
    )
    assert supervisor["citizen_id"] == person.citizen_id
    await desk.call("GET", path, params={"purpose": "audit"}, role=Role.OPERATIONS, expect=403)
    await desk.call("GET", path, role=Role.SUPERVISOR, expect=422)  # a purpose is required
    report = await desk.call("GET", f"{path}/access-report", role=Role.AUDITOR)
    reads = [(r["actor"], r["purpose"], r["what"], r["unmasked"]) for r in report["reads"]]
    assert reads == [
        ("test-service-desk", "identity_check", "lookup", True),
        ("test-auditor", "audit", "holder", False),
        ("test-service-desk", "fraud_investigation", "holder", False),
        ("test-supervisor", "fraud_investigation", "holder", True),
    ]
    # Asking for the report is a read too, and shows in the next one.
    again = await desk.call("GET", f"{path}/access-report")
    assert again["reads"][-1]["what"] == "access_report"
    assert len(again["reads"]) == len(reads) + 1


async def test_no_personal_data_in_logs_metrics_or_at_rest(
    desk: Desk, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    people = list(demo_holders().values())
    # Everything that handles personal data: an application, lookups, unmasked reads, a
    # complaint naming someone, requests that fail validation.
    applied = await desk.call(
        "POST",
        "/applications",
        {
            "name": APPLICANT_NAME,
            "citizen_id": APPLICANT_ID,
            "contact": "13912345678",
            "category": "standard",
            "basis": "registered_resident",
        },
        expect=201,
    )
    for person in people[:8]:
        found = await desk.call(
            "POST",
            "/holders/lookup",
            {"citizen_id": person.citizen_id, "purpose": "card_service"},
        )
        await desk.call(
            "GET", f"/holders/{found['holder_token']}", params={"purpose": "holder_request"}
        )
    text = f"{people[0].name} ({people[0].citizen_id}) lent the card to {people[1].name}"
    complaint = await desk.call(
        "POST",
        "/complaints",
        {"kind": "report", "channel": "phone", "text": text, "card": "X00000001"},
        expect=201,
    )
    shown = await desk.call(
        "GET",
        f"/complaints/{complaint['complaint_id']}",
        params={"purpose": "complaint_handling"},
        role=Role.SUPERVISOR,
    )
    assert shown["text"] == text  # the supervisor handling it reads it whole
    masked = await desk.call(
        "GET",
        f"/complaints/{complaint['complaint_id']}",
        params={"purpose": "audit"},
        role=Role.AUDITOR,
    )
    assert masked["text"] == mask_text(text) and people[0].citizen_id not in masked["text"]
    await desk.call(
        "POST",
        "/holders/lookup",
        {"citizen_id": "34052419800101001Y", "purpose": "audit"},
        expect=422,
    )
    # Even a careless log line of our own cannot carry them: the guard masks it.
    install_log_guard()
    logging.getLogger("onecard.test").warning(
        "careless: %s %s %s", people[2].citizen_id, people[2].name, people[2].contact
    )
    metrics = (await httpx.AsyncClient().get(f"http://127.0.0.1:{desk.metrics_port}/metrics")).text
    assert "onecard_api_requests_total" in metrics
    logged = "\n".join([caplog.text] + [record.getMessage() for record in caplog.records])
    assert "careless: 4203" in logged  # the line is there, masked
    secrets = secrets_of(people)
    for value in secrets:
        assert value not in logged, "personal data in a log line"
        assert value not in metrics, "personal data in a metric"
    # At rest: the holder file and the journal hold none of it in the clear.
    holder_file = (data_dir / "holders.log").read_bytes()
    journal = b"".join(path.read_bytes() for path in segment_paths(data_dir / "journal"))
    for value in secrets:
        encoded = value.encode()
        assert encoded not in holder_file, "personal data in the holder file"
        assert encoded not in journal, "personal data in the journal"
    assert applied["holder_masked"] == APPLICANT_ID[:4] + "*" * 10 + APPLICANT_ID[-4:]


def test_mask_text_masks_identifiers_and_han_runs() -> None:
    line = "holder 420302196503150014 王小明 phone 13812345678 card 6228480402564890018 X00000001"
    masked = mask_text(line)
    assert masked == (
        "holder 4203**********0014 *** phone 138****5678 card 622848*********0018 X00000001"
    )
    assert mask_text("34052419800101001x") == "3405**********001x"
    assert mask_text("no personal data, card X00000001, 12 fen") == (
        "no personal data, card X00000001, 12 fen"
    )
