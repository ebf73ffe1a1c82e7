"""What the BERT suite measures against: the models, the request bodies, and the in-process
rates of raw onnxruntime (and of tokenize + onnxruntime for the text model).

The models are built by examples/bert/export.py into the results folder the first time
(the ~90 MB .onnx files are not in the repository) and reused afterwards.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.core import REPO_ROOT

EXPORT_SCRIPT = REPO_ROOT / "examples" / "bert" / "export.py"
TOKENS = 128
# Repeated until it is longer than TOKENS tokens, then cut to exactly TOKENS.
_SENTENCE = (
    "Servoir is a model server that speaks TensorFlow Serving's REST and gRPC APIs, "
    "batches requests, swaps versions without dropping traffic and reports metrics. "
)


def ensure_models(root: Path) -> Path:
    """The model repository with `minilm` and `minilm_text`, exported once and cached."""
    if not (root / "minilm.config").is_file():  # the script's last file
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        subprocess.run(
            [sys.executable, str(EXPORT_SCRIPT), "--out", str(root)],
            check=True,
            env=env,
            timeout=600,
        )
    return root


@dataclass(frozen=True)
class Inputs:
    text: str  # tokenizes to exactly TOKENS tokens, [CLS] and [SEP] included
    input_ids: np.ndarray  # int64 [1, TOKENS]
    attention_mask: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


def make_inputs(models: Path) -> Inputs:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(models / "minilm_text" / "1" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    long = tokenizer.encode(_SENTENCE * 8)
    # The text of the first TOKENS - 2 word pieces: with [CLS] and [SEP], TOKENS tokens.
    text = _SENTENCE * 8
    text = text[: long.offsets[TOKENS - 2][1]]
    encoding = tokenizer.encode(text)
    if len(encoding.ids) != TOKENS:
        raise RuntimeError(f"the benchmark text tokenizes to {len(encoding.ids)} tokens")
    ids = np.array([encoding.ids], np.int64)
    return Inputs(text, ids, np.ones_like(ids))


def rest_bodies(inputs: Inputs) -> dict[str, bytes]:
    return {
        "minilm": orjson.dumps(
            {"inputs": {k: v.tolist() for k, v in inputs.feeds().items()}},
        ),
        "minilm_text": orjson.dumps({"instances": [inputs.text]}),
    }


def grpc_bodies(inputs: Inputs) -> dict[str, bytes]:
    """Serialized tensorflow.serving.PredictRequest messages (ids as tensor_content)."""
    from servoir.protos.tensorflow.core.framework import types_pb2
    from servoir.protos.tensorflow_serving.apis import predict_pb2

    bodies = {}
    for model, tensors in (("minilm", inputs.feeds()), ("minilm_text", None)):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        if tensors is None:
            text = request.inputs["text"]
            text.dtype = types_pb2.DT_STRING
            text.tensor_shape.dim.add(size=1)
            text.string_val.append(inputs.text.encode())
        for name, array in (tensors or {}).items():
            proto = request.inputs[name]
            proto.dtype = types_pb2.DT_INT64
            for size in array.shape:
                proto.tensor_shape.dim.add(size=size)
            proto.tensor_content = array.tobytes()
        bodies[model] = request.SerializeToString()
    return bodies


def server_like_session(model_file: Path) -> Any:
    """onnxruntime as Servoir's ONNX runtime sets it up by default (one thread a core)."""
    return _session(model_file, os.cpu_count() or 1)


def one_thread_session(model_file: Path) -> Any:
    """onnxruntime with one intra-op thread: one of several sessions run side by side."""
    return _session(model_file, 1)


def _session(model_file: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class RawRate:
    per_s: float  # median over the measurements
    measurements: list[float]
    cpu_us_per_call: float  # process CPU (all threads) per call, median: robust to noise

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RawWork:
    """The same work as each model, called back to back in this process: onnxruntime alone
    (`minilm`), tokenize + onnxruntime (`minilm_text`). Measured between the server's runs,
    so that whatever else the machine does hits both sides alike."""

    def __init__(self, models: Path, inputs: Inputs) -> None:
        from tokenizers import Tokenizer

        self._session = server_like_session(models / "minilm" / "1" / "model.onnx")
        tokenizer = Tokenizer.from_file(str(models / "minilm_text" / "1" / "tokenizer.json"))
        tokenizer.enable_truncation(256)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        self._inputs = inputs
        self.calls: dict[str, Callable[[], None]] = {
            "minilm": self._onnx,
            "minilm_text": self._text,
        }
        self.rates: dict[str, list[float]] = {name: [] for name in self.calls}
        self.cpu_us: dict[str, list[float]] = {name: [] for name in self.calls}
        for call in self.calls.values():
            for _ in range(5):  # warm up: first runs allocate
                call()

    def _onnx(self) -> None:
        self._session.run(None, self._inputs.feeds())

    def _text(self) -> None:
        (encoding,) = self._tokenizer.encode_batch([self._inputs.text])
        ids = np.array([encoding.ids], np.int64)
        self._session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})

    def measure(self, seconds: float) -> None:
        for name, call in self.calls.items():
            count, started, cpu = 0, time.perf_counter(), time.process_time()
            while (elapsed := time.perf_counter() - started) < seconds:
                call()
                count += 1
            self.rates[name].append(count / elapsed)
            self.cpu_us[name].append((time.process_time() - cpu) / count * 1e6)

    def summary(self) -> dict[str, RawRate]:
        return {
            n: RawRate(statistics.median(r), r, statistics.median(self.cpu_us[n]))
            for n, r in self.rates.items()
            if r
        }


def reference_embedding(models: Path, inputs: Inputs) -> np.ndarray:
    session = server_like_session(models / "minilm" / "1" / "model.onnx")
    (out,) = session.run(["embeddings"], inputs.feeds())
    return np.asarray(out)
