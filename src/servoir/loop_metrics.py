"""Request-path metrics without locks, exported through prometheus_client at scrape time.

prometheus_client takes a lock per update (eight per request here: ~5 us, a measurable
share of a small model's request). Every request-path update happens on the event loop
thread, and so do scrapes, so these families keep plain numbers and hand prometheus_client
a snapshot when it collects. Use them only from the loop; anything updated from other
threads stays a prometheus_client metric.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry


class LoopCounter:
    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[tuple[str, ...], list[float]] = {}

    def child(self, *labels: str) -> list[float]:
        """A one-element list to add to: `child[0] += 1` (no method call on the hot path)."""
        cell = self.values.get(labels)
        if cell is None:
            cell = self.values[labels] = [0.0]
        return cell

    def family(self) -> Any:
        if self.name.endswith("_total"):
            # A name that really ends in _total (TF's request_example_count_total):
            # CounterMetricFamily would drop the suffix.
            metric = Metric(self.name, self.doc, "counter")
            for labels, cell in self.values.items():
                metric.add_sample(self.name, dict(zip(self.labels, labels, strict=True)), cell[0])
            return metric
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, cell in self.values.items():
            family.add_metric(list(labels), cell[0])
        return family


class LoopGauge(LoopCounter):
    def family(self) -> Any:
        family = GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, cell in self.values.items():
            family.add_metric(list(labels), cell[0])
        return family


class LoopHistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class LoopHistogram:
    def __init__(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        self.values: dict[tuple[str, ...], LoopHistogramChild] = {}

    def child(self, *labels: str) -> LoopHistogramChild:
        child = self.values.get(labels)
        if child is None:
            child = self.values[labels] = LoopHistogramChild(self.bounds)
        return child

    def family(self) -> Any:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, child in self.values.items():
            cumulative, buckets = 0, []
            for bound, count in zip([*self.bounds, math.inf], child.counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            family.add_metric(list(labels), buckets, child.sum)
        return family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


class LoopCollector(Collector):
    def __init__(self, families: Sequence[LoopCounter | LoopHistogram]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Any]:
        for family in self._families:
            yield family.family()


def register(registry: CollectorRegistry, *families: LoopCounter | LoopHistogram) -> None:
    registry.register(LoopCollector(families))
