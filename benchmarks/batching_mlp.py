"""The MLP half of the batching suite: one 784-float instance per request, two models.

- `mlp`: the example model (784->128->10, ~100k weights). Its run is ~10 us of the ~150 us
  a REST request costs, so batching can save little; this is where the cost of batching
  itself and dispatch-when-idle (vs TF's timing) show.
- `mlp_wide`: the same interface, 784->2048->2048->10 (~5.8M weights, 23 MB). One row
  reads every weight (1-2 ms, memory-bound); 32 rows cost little more per call. This is
  where batching pays on a CPU.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import orjson

from benchmarks import raw_ort
from benchmarks.batching_runs import Check, Comparison, Target, measure, write_params
from benchmarks.core import EXAMPLE_MODELS, RunConfig
from benchmarks.payload import mlp_instances, tf_serving_predict_body
from benchmarks.servers import ServerProcess, post_predict

CONNECTIONS = (1, 8, 32, 64)
PARAMS = (
    "max_batch_size { value: 64 }\n"
    "batch_timeout_micros { value: 0 }\n"
    "max_enqueued_batches { value: 100 }\n"
)
TF_TIMING_PARAMS = PARAMS.replace("value: 0 }", "value: 2000 }")
WIDE_LAYERS = (784, 2048, 2048, 10)


def run(config: RunConfig, work: Path, problems: list[str]) -> dict[str, Comparison]:
    x = mlp_instances(seed=0)
    body = tf_serving_predict_body(x)
    body_file = work / "mlp_body.json"
    body_file.write_bytes(body)
    on = write_params(work / "mlp_batching.txt", PARAMS)
    tf = write_params(work / "mlp_tf_timing.txt", TF_TIMING_PARAMS)
    batching_on = Target("batching_on", f"--enable_batching --batching_parameters_file={on}")
    tf_timing = Target(
        "batching_on_tf_timing",
        f"--enable_batching --batching_parameters_file={tf} --batching_dispatch_when_idle=false",
    )
    models = {
        "mlp": (EXAMPLE_MODELS / "mlp", [Target("batching_off", ""), batching_on, tf_timing]),
        "mlp_wide": (wide_model(work / "models"), [Target("batching_off", ""), batching_on]),
    }
    comparisons = {}
    for name, (base, targets) in models.items():
        latest = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
        expected = raw_ort.reference_output(base / str(latest) / "model.onnx", x)
        comparison = Comparison(targets, name, base, config.points(CONNECTIONS), body_file)
        measure(config, comparison, work / "logs", _check(body, expected), problems)
        comparisons[name] = comparison
    return comparisons


def model_costs(base: Path, rows: int = 32) -> dict[str, float]:
    """The model's own cost in process (onnxruntime, Servoir's session settings): µs for
    one row, and µs per row in a batch of `rows`. What batching can save per request is
    the difference."""
    latest = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
    model = base / str(latest) / "model.onnx"
    one = raw_ort.measure(model, mlp_instances(seed=0), repeats=3, seconds_per_repeat=0.5)
    many = np.repeat(mlp_instances(seed=0), rows, axis=0)
    batch = raw_ort.measure(model, many, repeats=3, seconds_per_repeat=0.5)
    return {"us_per_row_alone": one.us_per_call, "us_per_row_batched": batch.us_per_call / rows}


def gain_bound(server_us_per_request: float, costs: dict[str, float]) -> float:
    """How far batching could raise a CPU-bound server's rate if the model cost in the
    server what it costs in process: every request's model call replaced by its share of a
    batched call, everything else unchanged, batching's own bookkeeping free. (Where
    concurrent unbatched runs contend for caches, as the wide MLP's do, they cost more in
    the server and batching can gain more; the example MLP runs one at a time, inline.)"""
    saved = costs["us_per_row_alone"] - costs["us_per_row_batched"]
    return server_us_per_request / (server_us_per_request - saved)


def wide_model(root: Path) -> Path:
    """<root>/mlp_wide/1/model.onnx, built once (seeded, so every run serves the same)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    base = root / "mlp_wide"
    target = base / "1" / "model.onnx"
    if target.is_file():
        return base
    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "x"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(WIDE_LAYERS)):
        last = i == len(WIDE_LAYERS) - 2
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        product = "logits" if last else f"m{i}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [product]))
        if not last:
            nodes.append(helper.make_node("Relu", [product], [f"h{i}"]))
            previous = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp_wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDE_LAYERS[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", WIDE_LAYERS[-1]])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    onnx.save(model, str(partial))
    partial.replace(target)  # never a half-written model
    return base


def _check(body: bytes, expected: np.ndarray) -> Check:
    def check(server: ServerProcess, target: Target) -> str | None:
        try:
            got = np.asarray(orjson.loads(post_predict(server, body))["predictions"], np.float32)
        except (OSError, KeyError, ValueError) as exc:
            return f"preflight request failed: {exc}"
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            return "answer differs from onnxruntime's"
        return None

    return check
