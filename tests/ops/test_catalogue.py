"""The dashboard and the alert rules use catalogued metrics only, and the rules pass their
promtool checks and unit tests (ops/prometheus)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.catalogue import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD,
    catalogue,
    names_in,
    runbook_anchors,
    series_names,
)

# Prometheus's own series a rule may use besides ours.
PROMETHEUS_SERIES = frozenset({"up"})
SEVERITIES = frozenset({"page", "ticket"})


def test_catalogue_rows_parse_and_counters_end_in_total() -> None:
    entries = catalogue()
    assert len(entries) > 50
    for entry in entries.values():
        assert (entry.kind == "counter") == entry.name.endswith("_total"), entry.name
        assert not entry.labels & {"card", "terminal", "holder"}, entry.name


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_dashboard_queries_name_catalogued_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = series_names(catalogue())
    panels = [p for p in _panels(dashboard["panels"]) if p["type"] != "row"]
    assert len(panels) >= 20
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names = names_in(target["expr"])
            assert names, f"panel {panel['title']!r}: {target['expr']} names no metric"
            unknown = names - set(known)
            assert not unknown, f"panel {panel['title']!r} uses uncatalogued {unknown}"
            used |= names
    for annotation in dashboard["annotations"]["list"]:
        assert names_in(annotation["expr"]) <= set(known)
    # The brief's questions each have a panel: gates fast, banks up, journal, settlement.
    for needed in (
        "onecard_request_duration_seconds_bucket",
        "onecard_bank_link_up",
        "onecard_journal_fsync_duration_seconds_bucket",
        "onecard_settlement_last_closed_cycle",
    ):
        assert needed in used


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_use_catalogued_metrics_and_link_the_runbook() -> None:
    known = set(series_names(catalogue()))
    anchors = runbook_anchors()
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    # The alerts the operations brief asks for.
    assert {
        "OnecardBankLinkDown",
        "OnecardRequestLatencyOverBudget",
        "OnecardJournalFsyncSlow",
        "OnecardStoreAndForwardBacklogGrowing",
        "OnecardSettlementFailed",
        "OnecardSettlementLate",
        "OnecardReconciliationExceptions",
        "OnecardDenyListStale",
    } <= names
    for rule in rules:
        used = names_in(rule["expr"])
        assert used or rule["expr"].split("{")[0] in PROMETHEUS_SERIES, rule["alert"]
        assert used <= known, f"{rule['alert']} uses uncatalogued {used - known}"
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        runbook = rule["annotations"]["runbook"]
        page, _, anchor = runbook.partition("#")
        assert page == "docs/operations.md" and anchor in anchors, (rule["alert"], runbook)


def test_every_alert_has_a_rule_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in _rules()} == tested


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        # ./dev test installs it (Debian package `prometheus`); only a machine where that
        # was impossible gets here.
        pytest.skip("promtool is not installed and ./dev could not install it (apt prometheus)")
    return promtool


@pytest.mark.parametrize(
    ("command", "path"), [("check", ALERTS), ("test", ALERT_TESTS)], ids=["check", "test"]
)
def test_promtool(command: str, path: Path) -> None:
    result = subprocess.run(
        [_promtool(), command, "rules", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
