"""The BERT half of the batching suite: all-MiniLM-L6-v2 (examples/bert/export.py) over REST,
batching off / on / on with length buckets / on with nearest-length batches, against raw
onnxruntime in-process and MLServer.

MLServer 1.7.1 (benchmarks/mlserver_setup.py) runs the same model through
benchmarks/mlserver_runtime.py over its V2 REST endpoint, configured two ways:
  tuned (`mlserver_batching`, `mlserver`): one inference worker process a core, each with
      one intra-op thread and no spinning (Servoir's thread model; the stronger peer);
  defaults (`mlserver_defaults_batching`, `mlserver_defaults`): MLServer's own defaults
      (one inference worker) with one intra-op thread a core, as the issue names it.
  fixed: with adaptive batching, max_batch_size 32, max_batch_time 5 ms;
  mixed: no batching: MLServer's adaptive batching concatenates inputs without padding, so
         a batch of different lengths fails as a whole (HTTP 500). The fixed comparison
         shows it: a burst of mixed lengths is sent to `mlserver_batching` before the load,
         and its answers are recorded.

Two workloads: every request 128 tokens ("fixed"), and lengths drawn uniformly from 16 to
128 tokens ("mixed": padding matters, and bucketing groups similar lengths). The model
pools and normalises inside the graph, so its answer is [1, 384] whatever the padding, and
zero padding (mask 0) leaves every embedding as computed alone.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import statistics
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import bert_setup, mlserver_setup
from benchmarks.batching_runs import (
    LUA_POST_JSON_MIX,
    Check,
    Comparison,
    Target,
    measure,
    write_params,
)
from benchmarks.core import RunConfig
from benchmarks.servers import ServerProcess, free_port, post_predict

CONNECTIONS = (1, 8, 32)
LENGTHS = (16, 128)  # mixed: uniform over this range, inclusive
MIXED_BODIES = 64
BUCKETS = "16,32,64,128"
PARAMS = (
    "max_batch_size { value: 8 }\n"
    "batch_timeout_micros { value: 0 }\n"
    "max_enqueued_batches { value: 100 }\n"
    "pad_variable_length_inputs: true\n"
)
CEILING_BATCH = 8
MLSERVER_BATCHING = {"max_batch_size": 32, "max_batch_time": 0.005}  # the settings


@dataclass
class BertResult:
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # fixed, mixed
    raw: dict[str, list[float]] = field(default_factory=dict)  # sentences/s, per workload
    lengths: list[int] = field(default_factory=list)
    mlserver: dict[str, Any] = field(default_factory=dict)  # version, settings, mixed burst
    ceiling: dict[str, dict[str, float]] = field(default_factory=dict)  # per workload

    def raw_rate(self, workload: str) -> float | None:
        rates = self.raw.get(workload)
        return statistics.median(rates) if rates else None

    def to_json(self) -> dict[str, Any]:
        return {
            "params": PARAMS,
            "buckets": BUCKETS,
            "mixed_lengths": self.lengths,
            "mlserver": self.mlserver,
            "workloads": {
                name: {
                    "raw_ort_sentences_per_s": self.raw_rate(name),
                    "raw_ort_measurements": self.raw.get(name, []),
                    "ceiling": self.ceiling.get(name),
                    "targets": comparison.to_json(),
                }
                for name, comparison in self.comparisons.items()
            },
        }


def targets(params: Path, mixed: bool) -> list[Target]:
    on = f"--enable_batching --batching_parameters_file={params}"
    chosen = [Target("batching_off", ""), Target("batching_on", on)]
    if mixed:
        chosen.append(Target("batching_on_buckets", f"{on} --batching_length_buckets={BUCKETS}"))
        chosen.append(Target("batching_on_nearest", f"{on} --batching_length_buckets=nearest"))
    return chosen


@dataclass(frozen=True)
class MLServerSetup:
    """How one MLServer peer runs: inference worker processes (None: MLServer's default)
    and onnxruntime intra-op threads in each."""

    prefix: str
    parallel_workers: int | None
    intra_op_threads: int


def mlserver_setups() -> tuple[MLServerSetup, ...]:
    cores = os.cpu_count() or 1
    return (
        MLServerSetup("mlserver", cores, 1),
        MLServerSetup("mlserver_defaults", None, cores),
    )


def mlserver_target(
    work: Path, model_file: Path, seqs: list[np.ndarray], mixed: bool, setup: MLServerSetup
) -> Target:
    """MLServer on the same model: adaptive batching for fixed lengths, none for mixed."""
    name = setup.prefix if mixed else f"{setup.prefix}_batching"
    root = work / name
    models = mlserver_setup.write_model_folder(
        root,
        "minilm",
        model_file,
        settings=None if mixed else MLSERVER_BATCHING,
        intra_op_threads=setup.intra_op_threads,
    )
    spec = mlserver_setup.spec(
        root, models, "minilm", free_port(), free_port(), setup.parallel_workers
    )
    bodies = work / f"bert_{'mixed' if mixed else 'fixed'}_v2.jsonl"
    bodies.write_bytes(b"\n".join(v2_body(s) for s in seqs) + b"\n")
    return Target(name, "", peer=dataclasses.replace(spec, name=name), body_file=bodies)


def feeds_of(ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def cut(ids: np.ndarray, length: int) -> np.ndarray:
    """The first `length` tokens of a [1, 128] sequence, still ending with its [SEP]."""
    return np.concatenate([ids[:, : length - 1], ids[:, -1:]], axis=1)


def body(ids: np.ndarray) -> bytes:
    return orjson.dumps({"inputs": {k: v.tolist() for k, v in feeds_of(ids).items()}})


def v2_body(ids: np.ndarray) -> bytes:
    """The same request in the V2 protocol (MLServer has no TF Serving API)."""
    inputs = [
        {"name": k, "shape": list(v.shape), "datatype": "INT64", "data": v.ravel().tolist()}
        for k, v in feeds_of(ids).items()
    ]
    return orjson.dumps({"inputs": inputs})


def answer(server: ServerProcess, ids: np.ndarray, v2: bool) -> np.ndarray:
    """The embedding the server answers for `ids` (raises OSError, KeyError, ValueError)."""
    doc = orjson.loads(post_predict(server, v2_body(ids) if v2 else body(ids), 60.0))
    if v2:
        (out,) = doc["outputs"]
        return np.asarray(out["data"], np.float32).reshape(out["shape"])
    return np.asarray(doc["outputs"], np.float32)


def run(config: RunConfig, work: Path, problems: list[str]) -> BertResult:
    models = bert_setup.ensure_models(config.work_dir / "bert" / "models")  # shared cache
    full = bert_setup.make_inputs(models).input_ids
    rng = np.random.default_rng(0)
    result = BertResult(
        lengths=[int(n) for n in rng.integers(LENGTHS[0], LENGTHS[1] + 1, MIXED_BODIES)]
    )
    workloads = {"fixed": [full], "mixed": [cut(full, n) for n in result.lengths]}
    params = write_params(work / "bert_batching.txt", PARAMS)
    model_file = models / "minilm" / "1" / "model.onnx"
    session = bert_setup.server_like_session(model_file)
    with_mlserver = _mlserver_ready(work, result, problems)
    burst = workloads["mixed"][:8]
    for workload, seqs in workloads.items():
        body_file = work / f"bert_{workload}.jsonl"
        body_file.write_bytes(b"\n".join(body(s) for s in seqs) + b"\n")
        chosen = targets(params, workload == "mixed")
        if with_mlserver:
            chosen += [
                mlserver_target(work, model_file, seqs, workload == "mixed", setup)
                for setup in mlserver_setups()
            ]
        comparison = Comparison(
            chosen,
            "minilm",
            models / "minilm",
            config.points(CONNECTIONS),
            body_file,
            script=LUA_POST_JSON_MIX,
        )
        # Raw onnxruntime before and after the servers' runs: drift hits both sides.
        result.raw[workload] = [_raw_rate(session, seqs, config)]
        result.ceiling[workload] = _ceiling(model_file, seqs, config)
        check = _checker(session, seqs, burst, result.mlserver)
        measure(config, comparison, work / "logs", check, problems)
        result.raw[workload].append(_raw_rate(session, seqs, config))
        result.comparisons[workload] = comparison
    return result


def _raw_rate(session: Any, seqs: list[np.ndarray], config: RunConfig) -> float:
    """Sentences/s of back-to-back batch-1 runs over the workload's sequences, in process,
    with Servoir's default session settings (one intra-op thread per core)."""
    budget = min(config.duration_s, 5.0)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < budget:
        session.run(None, feeds_of(seqs[count % len(seqs)]))
        count += 1
    return count / elapsed


def _mlserver_ready(work: Path, result: BertResult, problems: list[str]) -> bool:
    try:
        version = mlserver_setup.ensure_venv(work / "logs" / "mlserver-pip.log")
    except mlserver_setup.MLServerUnavailable as exc:
        result.mlserver["not_measured"] = str(exc)
        problems.append(f"MLServer not measured: {exc}")
        return False
    result.mlserver.update(
        version=version,
        batching=MLSERVER_BATCHING,
        setups=[dataclasses.asdict(setup) for setup in mlserver_setups()],
    )
    return True


def _ceiling(model_file: Path, seqs: list[np.ndarray], config: RunConfig) -> dict[str, float]:
    """The machine's compute ceiling for the workload: one single-threaded session per core,
    all running at once, on batches of 1 and of CEILING_BATCH sequences (consecutive in
    length order, padded to the longest: the least padding any batcher could get).
    Sentences/s for each, and the best."""
    cores = os.cpu_count() or 1
    ordered = sorted(seqs, key=lambda s: s.shape[1])
    batches = {
        1: [feeds_of(s) for s in seqs],
        CEILING_BATCH: [
            _padded(ordered[i : i + CEILING_BATCH]) for i in range(0, len(ordered), CEILING_BATCH)
        ],
    }
    if len(seqs) < CEILING_BATCH:  # one fixed sequence: a batch of copies
        batches[CEILING_BATCH] = [_padded(seqs * CEILING_BATCH)]
    sessions = [bert_setup.one_thread_session(model_file) for _ in range(cores)]
    budget = min(config.duration_s, 5.0)
    rates: dict[str, float] = {}
    for size, feeds in batches.items():

        def loop(session: Any, start: int, feeds: list[dict[str, np.ndarray]] = feeds) -> int:
            rows, i, began = 0, start, time.perf_counter()
            while time.perf_counter() - began < budget:
                feed = feeds[i % len(feeds)]
                session.run(None, feed)
                rows, i = rows + len(feed["input_ids"]), i + 1
            return rows

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(cores) as pool:
            rows = sum(pool.map(loop, sessions, range(cores)))
        rates[f"batch_{size}"] = rows / (time.perf_counter() - started)
    rates["best"] = max(rates.values())
    return rates


def _padded(seqs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Sequences as one batch, zero-padded to the longest, with the attention mask."""
    longest = max(s.shape[1] for s in seqs)
    ids = np.zeros((len(seqs), longest), np.int64)
    mask = np.zeros_like(ids)
    for row, s in enumerate(seqs):
        ids[row, : s.shape[1]] = s[0]
        mask[row, : s.shape[1]] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _checker(
    session: Any, seqs: list[np.ndarray], burst: list[np.ndarray], notes: dict[str, Any]
) -> Check:
    """Each target's answers for the shortest and the longest sequence must match
    onnxruntime's own embeddings (cosine similarity). A batching MLServer also gets `burst`
    (different lengths, all at once), whose statuses go into `notes`."""
    probes = [min(seqs, key=lambda s: s.shape[1]), max(seqs, key=lambda s: s.shape[1])]

    def check(server: ServerProcess, target: Target) -> str | None:
        v2 = target.peer is not None
        for ids in probes:
            (expected,) = session.run(["embeddings"], feeds_of(ids))
            try:
                got = answer(server, ids, v2)
            except (OSError, KeyError, ValueError) as exc:
                return f"preflight request failed: {exc}"
            cosine = float((got * expected).sum())
            if got.shape != expected.shape or cosine < 0.9999:
                return f"answer differs from onnxruntime's (cosine {cosine:.6f})"
        if target.name == "mlserver_batching":
            notes["mixed_burst_statuses"] = _burst(server, burst)
        return None

    return check


def _burst(server: ServerProcess, seqs: list[np.ndarray]) -> dict[str, Any]:
    """Send `seqs` at once (one thread each); the HTTP status of each answer, by length."""

    def status(ids: np.ndarray) -> int:
        try:
            answer(server, ids, v2=True)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    with concurrent.futures.ThreadPoolExecutor(len(seqs)) as pool:
        statuses = list(pool.map(status, seqs))
    return {"lengths": [int(s.shape[1]) for s in seqs], "statuses": statuses}
