"""Operations: what Prometheus, probes and log shippers see of the switch (docs/metrics.md,
docs/operations.md).

health.py   liveness and readiness: phases, bank sign-on, the event-loop heartbeat
server.py   the metrics port: /metrics, /healthz, /readyz (a thread of its own)
logs.py     text or JSON lines, correlation ids, masking through the privacy guard

The metrics themselves are read at scrape time by switch/metrics.py (and switch/banks,
switch/api); the alert rules and the dashboard are in ops/ at the top of the repository.
"""
