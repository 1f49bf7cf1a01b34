"""The server's Prometheus metrics (`GET /metrics`), through prometheus-client.

Requests and errors by endpoint and status, request latency and forward-pass size as histograms, the texts
waiting for a forward pass, texts predicted, the prediction log's written / unlogged / buffered rows, the int8
backend's texts recomputed in fp32, and the model's name, version and backend. Each server owns its registry, so two servers in one process (tests) do
not share counters. With `--workers N`, each worker process answers /metrics with its own figures.
"""

from __future__ import annotations

from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _ReadWhenScraped(Collector):
    """Figures that live outside the registry (the prediction log's writer thread, the int8 backend), read when
    scraped: `stats()` gives a dict, or None when there is nothing to report (no log, no int8 fallback)."""

    def __init__(self, stats: Callable[[], Optional[dict]], families: tuple[tuple[str, type, str, str], ...]) -> None:
        self._stats = stats
        self._families = families  # (metric name, CounterMetricFamily or GaugeMetricFamily, help, key in stats)

    def collect(self):
        stats = self._stats()
        if stats is None:
            return
        for name, kind, doc, key in self._families:
            family = kind(name, doc)
            family.add_metric([], stats[key])
            yield family


LOG_FAMILIES = (
    ("thrifty_prediction_log_logged", CounterMetricFamily, "predictions written to the prediction log", "logged"),
    ("thrifty_prediction_log_unlogged", CounterMetricFamily,
     "predictions lost to the log: buffer full, or database away at shutdown", "unlogged"),
    ("thrifty_prediction_log_write_errors", CounterMetricFamily,
     "failed attempts to write a batch to the log's database (retried)", "write_errors"),
    ("thrifty_prediction_log_buffered", GaugeMetricFamily, "predictions waiting to be written", "buffered"),
)
FALLBACK_FAMILIES = (
    ("thrifty_int8_fallback_texts", CounterMetricFamily,
     "texts the int8 graph found too close to call, recomputed by the fp32 graph", "recomputed"),
)


class ServerMetrics:
    def __init__(self, log_stats: Callable[[], Optional[dict]] = lambda: None,
                 fallback_stats: Callable[[], Optional[dict]] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("thrifty_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram("thrifty_request_latency_seconds", "time from request to answer", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_texts = Histogram("thrifty_batch_texts", "texts per forward pass", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("thrifty_batch_seconds", "time of one forward pass", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.predictions = Counter("thrifty_predictions", "texts predicted", registry=r)
        self.queue_texts = Gauge("thrifty_queue_texts", "texts waiting for a forward pass", registry=r)
        self.model = Info("thrifty_model", "the model being served", registry=r)
        self.swaps = Counter("thrifty_model_swaps", "registry versions swapped in (done) or refused (failed)", ["result"],
                             registry=r)
        r.register(_ReadWhenScraped(log_stats, LOG_FAMILIES))
        r.register(_ReadWhenScraped(fallback_stats, FALLBACK_FAMILIES))

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_seconds.observe(seconds)
        self.predictions.inc(texts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
