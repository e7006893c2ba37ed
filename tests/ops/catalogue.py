"""docs/metrics.md read as data: the metric catalogue the dashboard, the alert rules and the
live scrape are checked against."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
CATALOGUE = REPOSITORY / "docs" / "metrics.md"
ALERTS = REPOSITORY / "ops" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPOSITORY / "ops" / "prometheus" / "alerts.test.yml"
DASHBOARD = REPOSITORY / "ops" / "grafana" / "onecard.json"
RUNBOOK = REPOSITORY / "docs" / "operations.md"

ROW = re.compile(
    r"\| `(?P<name>[a-z_]+)` \| (?P<kind>counter|gauge|histogram) \|(?P<labels>[a-z_, ]*)\| "
    r"(?P<present>[a-z0-9]+) \| .+ \|"
)
# Metric names as PromQL expressions (rules, dashboard) mention them.
NAME_IN_EXPRESSION = re.compile(r"\b((?:onecard|process)_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# When each `present` value is served: always, or by configuration.
PRESENCES = frozenset({"always", "iso8583", "settlement", "closed", "api", "postgres", "hook"})


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    labels: frozenset[str]
    present: str


def catalogue() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for line in CATALOGUE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        match = ROW.fullmatch(line)
        assert match is not None, f"docs/metrics.md: a row that does not parse: {line}"
        name = match["name"]
        assert name not in entries, f"docs/metrics.md: {name} twice"
        labels = frozenset(label.strip() for label in match["labels"].split(",") if label.strip())
        entry = Entry(name, match["kind"], labels, match["present"])
        assert entry.present in PRESENCES, f"{name}: present {entry.present!r}"
        entries[name] = entry
    return entries


def series_names(entries: dict[str, Entry]) -> dict[str, Entry]:
    """Every series name a query may use: a histogram's _bucket, _sum and _count."""
    out: dict[str, Entry] = {}
    for entry in entries.values():
        if entry.kind == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                out[entry.name + suffix] = entry
        else:
            out[entry.name] = entry
    return out


def names_in(expression: str) -> set[str]:
    return set(NAME_IN_EXPRESSION.findall(expression))


def runbook_anchors() -> set[str]:
    """GitHub's anchors for docs/operations.md's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors
