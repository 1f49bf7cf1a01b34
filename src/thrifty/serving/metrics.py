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


class _LogCollector(Collector):
    """The prediction log's counters, read when scraped (they live in the log's writer thread)."""

    def __init__(self, log_stats: Callable[[], Optional[dict]]) -> None:
        self._stats = log_stats

    def collect(self):
        stats = self._stats()
        if stats is None:
            return
        for name, doc in (("logged", "predictions written to the prediction log"),
                          ("unlogged", "predictions lost to the log: buffer full, or database away at shutdown"),
                          ("write_errors", "failed attempts to write a batch to the log's database (retried)")):
            family = CounterMetricFamily(f"thrifty_prediction_log_{name}", doc)
            family.add_metric([], stats[name])
            yield family
        buffered = GaugeMetricFamily("thrifty_prediction_log_buffered", "predictions waiting to be written")
        buffered.add_metric([], stats["buffered"])
        yield buffered


class _FallbackCollector(Collector):
    """The int8 backend's close calls recomputed by the fp32 graph (inference/onnx_backend.py), read when scraped."""

    def __init__(self, fallback_stats: Callable[[], Optional[dict]]) -> None:
        self._stats = fallback_stats

    def collect(self):
        stats = self._stats()
        if stats is None:
            return
        family = CounterMetricFamily("thrifty_int8_fallback_texts", "texts the int8 graph found too close to call, "
                                     "recomputed by the fp32 graph")
        family.add_metric([], stats["recomputed"])
        yield family


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
        r.register(_LogCollector(log_stats))
        r.register(_FallbackCollector(fallback_stats))

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_seconds.observe(seconds)
        self.predictions.inc(texts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
