"""A small onnxruntime runtime for MLServer, for the gRPC suite's comparison.

It runs inside MLServer (benchmarks/.mlserver-venv, created by benchmarks/mlserver_setup.py),
not in Servoir's virtualenv: MLServer imports it by the `implementation` name in the model's
model-settings.json (`mlserver_runtime.OnnxRuntime`), and the file is copied next to that
model-settings.json. The session is set up as the benchmarks' FastAPI baseline sets its own:
one intra-op thread (unless the settings' `parameters.extra.intra_op_threads` says how many),
no spinning. Inputs are decoded with MLServer's NumpyCodec (gRPC
`raw_input_contents` arrive already unpacked by MLServer), outputs encoded with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from mlserver import MLModel  # type: ignore[import-not-found, unused-ignore]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found, unused-ignore]
from mlserver.types import (  # type: ignore[import-not-found, unused-ignore]
    InferenceRequest,
    InferenceResponse,
)
from mlserver.utils import get_model_uri  # type: ignore[import-not-found, unused-ignore]


def make_session(path: str, intra_op_threads: int = 1) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxRuntime(MLModel):  # type: ignore[misc, unused-ignore]
    """Serves one ONNX model: every request input is fed by name, every output returned."""

    async def load(self) -> bool:
        extra = (self.settings.parameters and self.settings.parameters.extra) or {}
        threads = int(extra.get("intra_op_threads", 1))
        self._session = make_session(await get_model_uri(self.settings), threads)
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name, np.asarray(value))
                for name, value in zip(self._outputs, results, strict=True)
            ],
        )
