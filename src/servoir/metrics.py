"""Every metric Servoir exports, in one object the server creates and passes down.

Two registries: Servoir's own metrics (per model, version, signature and protocol), served
at /metrics in the standard Prometheus format; and TensorFlow Serving's metrics under TF's
names (`:tensorflow:serving:request_count`, ...), served at the monitoring config's path in
TF Serving's own format, so existing dashboards keep working.
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from servoir import __version__
from servoir.errors import Code, ServingError
from servoir.loop_metrics import (
    LoopCounter,
    LoopGauge,
    LoopHistogram,
    LoopHistogramChild,
    register,
)

# TF Serving's request latency buckets: 10 us * 1.8^i, 33 of them.
TF_LATENCY_BUCKETS_US = tuple(round(10 * 1.8**i, 3) for i in range(33))
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# TF Serving's batching_session buckets: queuing latency 100 us * 1.2^i (52, about 1 s),
# batch sizes 2^i (14).
TF_QUEUING_BUCKETS_US = tuple(100 * 1.2**i for i in range(52))
TF_BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(14))
# util.cc's request_example_counts: Buckets::Exponential(1, 2, 15).
TF_EXAMPLE_COUNT_BUCKETS = tuple(float(2**i) for i in range(15))
TF_BATCHING = ":tensorflow:serving:batching_session:"


class _Answer(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def signature_name(self) -> str: ...


R = TypeVar("R", bound=_Answer)


class Metrics:
    def __init__(self) -> None:
        self._success: dict[tuple[str, int, str, str], tuple[list[float], Any]] = {}
        self._tf: dict[tuple[str, str, str, str], tuple[list[float], Any]] = {}
        r = self.registry = CollectorRegistry()
        # The request path's metrics are updated on the event loop only: lock-free.
        self.requests = LoopCounter(
            "servoir_requests",
            "Inference requests by outcome (code is the canonical status code name)",
            ["model", "version", "signature", "protocol", "code"],
        )
        self.latency = LoopHistogram(
            "servoir_request_duration_seconds",
            "Inference latency inside the server, from decoded request to result",
            ["model", "version", "signature", "protocol"],
            LATENCY_BUCKETS_S,
        )
        self.inflight = LoopGauge(
            "servoir_inflight_requests", "Inference requests being served", ["model"]
        )
        register(r, self.requests, self.latency, self.inflight)
        self.load_duration = Histogram(
            "servoir_model_load_duration_seconds",
            "Time to load (and warm up) one model version",
            ["model"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.version_state = Gauge(
            "servoir_model_version_state",
            "Lifecycle state of a version (10 START, 20 LOADING, 30 AVAILABLE, 40 UNLOADING, "
            "50 END)",
            ["model", "version"],
            registry=r,
        )
        self.version_failed = Gauge(
            "servoir_model_version_failed",
            "1 when the version ended with a load error",
            ["model", "version"],
            registry=r,
        )
        # Batching's metrics are updated by the scheduler, which lives on the loop too.
        self.queue_depth = LoopGauge(
            "servoir_batch_queue_depth", "Requests waiting in a batching queue", ["model"]
        )
        self.batch_size = LoopHistogram(
            "servoir_batch_size", "Rows per executed batch (before padding)", ["model"],
            BATCH_BUCKETS,
        )  # fmt: skip
        self.batch_padding = LoopHistogram(
            "servoir_batch_padding_rows", "Padding rows added per executed batch", ["model"],
            BATCH_BUCKETS,
        )  # fmt: skip
        self.queue_wait = LoopHistogram(
            "servoir_batch_queue_wait_seconds", "Time a request waited to join a batch",
            ["model"], LATENCY_BUCKETS_S,
        )  # fmt: skip
        register(r, self.queue_depth, self.batch_size, self.batch_padding, self.queue_wait)
        build = Gauge("servoir_build_info", "Build information", ["version", "python"], registry=r)
        build.labels(__version__, platform.python_version()).set(1)

        t = self.tf_registry = CollectorRegistry()
        self.tf_request_count = LoopCounter(
            ":tensorflow:serving:request_count", "", ["model_name", "status"]
        )
        self.tf_request_latency = LoopHistogram(
            ":tensorflow:serving:request_latency",
            "",
            ["model_name", "API", "entrypoint"],
            TF_LATENCY_BUCKETS_US,
        )
        self.tf_runtime_latency = LoopHistogram(
            ":tensorflow:serving:runtime_latency",
            "",
            ["model_name", "API", "runtime"],
            TF_LATENCY_BUCKETS_US,
        )
        # Examples per Classify, Regress or MultiInference request that ran.
        self.tf_example_counts = LoopHistogram(
            ":tensorflow:serving:request_example_counts", "", ["model"], TF_EXAMPLE_COUNT_BUCKETS
        )
        self.tf_example_count_total = LoopCounter(
            ":tensorflow:serving:request_example_count_total", "", ["model"]
        )
        # TF Serving's batching metrics carry no model label (TF's session cannot see the
        # model name); Servoir's servoir_batch_* metrics have it.
        self.tf_queuing_latency = LoopHistogram(
            TF_BATCHING + "queuing_latency", "", ["thread_pool_name"], TF_QUEUING_BUCKETS_US
        )
        self.tf_wrapped_run_count = LoopCounter(TF_BATCHING + "wrapped_run_count", "", [])
        self.tf_input_batch_size = LoopHistogram(
            TF_BATCHING + "input_batch_size", "", [], TF_BATCH_SIZE_BUCKETS
        )
        self.tf_processed_batch_size = LoopHistogram(
            TF_BATCHING + "processed_batch_size", "", [], TF_BATCH_SIZE_BUCKETS
        )
        self.tf_padding_size = LoopHistogram(
            TF_BATCHING + "padding_size", "", ["execution_batch_size"], TF_BATCH_SIZE_BUCKETS
        )
        register(
            t,
            self.tf_request_count,
            self.tf_request_latency,
            self.tf_runtime_latency,
            self.tf_example_counts,
            self.tf_example_count_total,
            self.tf_queuing_latency,
            self.tf_wrapped_run_count,
            self.tf_input_batch_size,
            self.tf_processed_batch_size,
            self.tf_padding_size,
        )
        self._tf_runtime: dict[tuple[str, str, str], LoopHistogramChild] = {}

    async def measured(self, model: str, protocol: str, work: Awaitable[R]) -> R:
        """Await `work`, one inference request, keeping Servoir's request metrics: in-flight,
        outcome by code, and latency of successes per version and signature."""
        started = time.perf_counter()
        inflight = self.inflight.child(model)
        inflight[0] += 1
        try:
            result = await work
        except BaseException as e:
            self.requests.child(model, "", "", protocol, _code(e).name)[0] += 1
            raise
        finally:
            inflight[0] -= 1
        ok, latency = self.success_for(model, result.version, result.signature_name, protocol)
        ok[0] += 1
        latency.observe(time.perf_counter() - started)
        return result

    def success_for(
        self, model: str, version: int, signature: str, protocol: str
    ) -> tuple[list[float], LoopHistogramChild]:
        """The OK counter and latency histogram of one series, looked up once."""
        key = (model, version, signature, protocol)
        children = self._success.get(key)
        if children is None:
            labels = (model, str(version), signature, protocol)
            children = (self.requests.child(*labels, "OK"), self.latency.child(*labels))
            self._success[key] = children
        return children

    def tf_request(
        self, model: str, status: str, api: str, entrypoint: str, seconds: float
    ) -> None:
        """TF Serving's request_count and (for successes only, as TF does) request_latency."""
        key = (model, status, api, entrypoint)
        children = self._tf.get(key)
        if children is None:
            count = self.tf_request_count.child(model, status)
            latency = self.tf_request_latency.child(model, api, entrypoint)
            children = self._tf[key] = (count, latency if status == "OK" else None)
        children[0][0] += 1
        if children[1] is not None:
            children[1].observe(seconds * 1e6)

    def tf_runtime(self, model: str, api: str, platform: str, seconds: float) -> None:
        """TF Serving's runtime_latency: the model's run alone, in microseconds. runtime is
        "TF1" for TensorFlow models, as in TF Serving, and the platform for the others."""
        key = (model, api, platform)
        child = self._tf_runtime.get(key)
        if child is None:
            runtime = "TF1" if platform == "tensorflow" else platform
            child = self._tf_runtime[key] = self.tf_runtime_latency.child(model, api, runtime)
        child.observe(seconds * 1e6)

    def tf_examples(self, model: str, count: int) -> None:
        """TF Serving's request_example_counts and request_example_count_total."""
        self.tf_example_counts.child(model).observe(count)
        self.tf_example_count_total.child(model)[0] += count

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def render_tf(self) -> bytes:
        return render_tf_format(self.tf_registry)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def _tf_label(name: str, value: str) -> str:
    # TF prints bucket bounds with absl::StrCat, six significant digits like %g ("10",
    # "172.8"): dashboards that select a bucket by its le value keep matching.
    if name == "le" and value != "+Inf":
        value = format(float(value), ".6g")
    return f'{name}="{_escape(value)}"'


def render_tf_format(registry: CollectorRegistry) -> bytes:
    """TF Serving's exposition: `# TYPE` lines, no `# HELP`, counters without `_total`."""
    lines: list[str] = []
    for family in registry.collect():
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            name = sample.name
            if name.endswith("_created"):
                continue
            if family.type == "counter" and name == family.name + "_total":
                name = family.name
            labels = ",".join(_tf_label(k, v) for k, v in sample.labels.items())
            lines.append(f"{name}{{{labels}}} {_number(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


def _code(error: BaseException) -> Code:
    """The outcome an inference request ended with, for its metrics."""
    if isinstance(error, ServingError):
        return error.code
    if isinstance(error, asyncio.CancelledError):  # its caller went away (or its deadline)
        return Code.CANCELLED
    return Code.INTERNAL
