"""Benchmarks: open-loop load, a same-run baseline server, reports (docs/performance.md)."""
