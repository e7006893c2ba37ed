"""The operations endpoint on the metrics port: /metrics, /healthz and /readyz.

A WSGI server in a thread of its own (the standard library's wsgiref, as prometheus-client's
own server), with prometheus-client's WSGI app for /metrics. Its own thread, not the event
loop, because it must answer before the loop exists: `onecard run` opens it before the
journal is replayed, so a replay of minutes shows as "alive, not ready" rather than as a
closed port, and a scrape never waits behind the terminals' work.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from switch.ops.health import Health, Phase, Verdict
from switch.stats import BucketHistogram

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

METRICS_PATHS = ("/metrics", "/")  # "/" too: prometheus-client's own server answers there


class _Server(ThreadingMixIn, WSGIServer):
    # A probe or scrape that hangs must not keep the process from exiting.
    daemon_threads = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would drown the log; the metrics count what matters."""


class HealthCollector(Collector):
    """onecard_ready, onecard_phase, the recovery figures and the loop lag, from Health."""

    def __init__(self, health: Health) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        health = self._health
        yield GaugeMetricFamily(
            "onecard_ready", "1 while /readyz answers 200.", value=float(health.ready)
        )
        phase = GaugeMetricFamily(
            "onecard_phase", "1 for the phase the switch is in.", labels=["phase"]
        )
        for name in Phase:
            phase.add_metric([name.value], float(health.phase == name))
        yield phase
        recovery = health.recovery
        if recovery is not None:
            yield GaugeMetricFamily(
                "onecard_recovery_records",
                "Journal records recovered at start (snapshot and replay).",
                value=recovery.records,
            )
            yield GaugeMetricFamily(
                "onecard_recovery_duration_seconds",
                "Time the start-up recovery took.",
                value=recovery.seconds,
            )
            yield GaugeMetricFamily(
                "onecard_recovery_truncated_bytes",
                "Torn tail truncated at start (0 after a clean stop): > 0 means the last run "
                "died while writing a group.",
                value=recovery.truncated_bytes,
            )
        yield _histogram(
            "onecard_event_loop_lag_seconds",
            "How late the event loop ran its once-a-second heartbeat: queueing delay every "
            "answer pays.",
            health.loop_lag_seconds,
        )


def _histogram(name: str, documentation: str, source: BucketHistogram) -> Metric:
    buckets, total = source.snapshot()
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def _probe(verdict: Verdict, start_response: StartResponse) -> list[bytes]:
    status = "ok" if verdict.ok else "unavailable"
    body = json.dumps({"status": status, "phase": verdict.phase, "reasons": verdict.reasons})
    start_response(
        f"{verdict.status} {HTTPStatus(verdict.status).phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body.encode()]


def ops_app(registry: CollectorRegistry, health: Health) -> WsgiApp:
    """The dispatcher: the two probes, and prometheus-client's app for the metrics."""
    metrics: WsgiApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _probe(health.liveness(), start_response)
        if path == "/readyz":
            return _probe(health.readiness(), start_response)
        if path in METRICS_PATHS:
            return metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics, /healthz or /readyz\n"]

    return app


class OpsServer:
    """Serves from construction until stop(); `registry` takes the switch's collectors."""

    def __init__(self, host: str, port: int, health: Health | None = None) -> None:
        self.health = health if health is not None else Health()
        self.registry = CollectorRegistry()
        self.registry.register(HealthCollector(self.health))
        # CPU, memory, open files against their limit, start time: a restart shows here.
        ProcessCollector(namespace="", registry=self.registry)
        server_class = _IPv6Server if ":" in host else _Server
        self._server = make_server(
            host,
            port,
            ops_app(self.registry, self.health),
            server_class=server_class,
            handler_class=_QuietHandler,
        )
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ops-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        # shutdown() waits out serve_forever's 0.5 s poll: do that off the caller's path.
        def stop_and_close() -> None:
            self._server.shutdown()
            self._server.server_close()

        threading.Thread(target=stop_and_close, name="ops-http-stop", daemon=True).start()

    def __enter__(self) -> OpsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
