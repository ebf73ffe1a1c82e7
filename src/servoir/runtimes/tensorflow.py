"""The TensorFlow runtime: `<version>/saved_model.pb` (or `.pbtxt`), every signature served.

Why the low-level session run: TF Serving feeds tensors as sent, without checking them
against the signature's static shape (`saved_model_half_plus_two_cpu` declares x as [-1,1]
and answers x = [1, 2, 5], contract 2.3), and clients rely on it. Python's `Session.run`,
`make_callable` and TF2's `signatures[...]` all refuse such feeds, and `tf.saved_model.load`
cannot even load some TF1 models. So a version is loaded the way TF Serving's C++ loader does
it, `tf.compat.v1.saved_model.load` into its own graph and session (TF2 SavedModels load
this way too), and runs go through `pywrap_tf_session.TF_SessionRun_wrapper`, the call
`Session.run` makes after its Python-side checks. That is private API: the tensorflow
version is pinned by the `servoir[tensorflow]` extra and the tests exercise this path.

Runs release the GIL; they go to the inference executor unless measured fast (blocking.py),
and a deadline also becomes the run's RunOptions.timeout_in_ms so that TensorFlow itself
stops a run whose caller has given up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from servoir.core.servable import Servable
from servoir.errors import Code, ServingError
from servoir.runtimes import tf_meta_graph
from servoir.runtimes.blocking import BlockingRunner
from servoir.runtimes.loading import VersionLoader
from servoir.runtimes.registry import RuntimeContext
from servoir.types import Array, Signature

MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
# What is left of an absolute path after the version directory has been replaced.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+")


class TensorFlowServable:
    platform = "tensorflow"
    checks_shapes = False  # TF Serving feeds tensors as sent (see the module docstring)

    def __init__(
        self,
        session: Any,
        signatures: dict[str, Signature],
        tensors: dict[str, Any],
        context: RuntimeContext,
    ) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.client import pywrap_tf_session

        self._session = session
        self._signatures = signatures
        # Dynamic batching concatenates requests along dim 0: allowed when no signature
        # says otherwise (every tensor's dim 0 unknown, or its rank unknown, as TF Serving
        # assumes); a model with a fixed-size or scalar tensor is served unbatched.
        self.batchable = bool(signatures) and all(
            spec.shape is None or (len(spec.shape) > 0 and spec.shape[0] == -1)
            for signature in signatures.values()
            for spec in (*signature.inputs.values(), *signature.outputs.values())
        )
        # Tensor name -> TF_Output, for every name a signature uses that is a graph tensor.
        self._tensors = tensors
        self._runner = BlockingRunner(context)
        self._tf_session = pywrap_tf_session
        self._run_options = config_pb2.RunOptions
        self._op_error_type: type[Exception] = tf.errors.OpError

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    @property
    def runs_on_loop(self) -> bool:
        """Runs execute on the event loop now, one at a time (servoir.batching reads it)."""
        return self._runner.inline

    async def run(
        self,
        signature_name: str,
        inputs: Mapping[str, Array],
        output_aliases: Sequence[str],
        deadline: float | None,
    ) -> dict[str, Array]:
        signature = self._signatures[signature_name]
        feeds = {signature.inputs[alias].name: array for alias, array in inputs.items()}
        # Inputs the request left out have defaults (the service checked): TF Serving feeds
        # those values.
        for alias, value in signature.defaults.items():
            if alias not in inputs:
                feeds[signature.inputs[alias].name] = value
        fetches = [signature.outputs[alias].name for alias in output_aliases]
        values = await self.run_tensors(feeds, fetches, deadline)
        return dict(zip(output_aliases, values, strict=True))

    async def run_tensors(
        self, feeds: Mapping[str, Array], fetches: Sequence[str], deadline: float | None
    ) -> list[Array]:
        """One session run by tensor name; MultiInference fetches several signatures'
        outputs in a single run, as TF Serving does."""
        feed_outputs = {self._tensor(name): array for name, array in feeds.items()}
        fetch_outputs = [self._tensor(name) for name in fetches]
        return await self._runner.run(
            lambda: self._session_run(feed_outputs, fetch_outputs, deadline), deadline
        )

    def _tensor(self, name: str) -> Any:
        tensor = self._tensors.get(name)
        if tensor is None:
            what = (
                f"{name!r} is not a tensor of the graph"
                if name
                else "it uses a sparse or composite tensor, which Servoir does not feed"
            )
            raise ServingError(
                Code.INVALID_ARGUMENT, f"this signature cannot be run by Servoir: {what}"
            )
        return tensor

    def _session_run(
        self, feeds: dict[Any, Array], fetches: list[Any], deadline: float | None
    ) -> list[Array]:
        session = self._session
        if session is None:
            raise ServingError(Code.UNAVAILABLE, "the model is being unloaded")
        options = None
        if deadline is not None:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline exceeded")
            text = self._run_options(timeout_in_ms=remaining_ms).SerializeToString()
            options = self._tf_session.TF_NewBufferFromString(text)
        try:
            values = self._tf_session.TF_SessionRun_wrapper(
                session._session, options, feeds, fetches, [], None
            )
        except self._op_error_type as e:
            raise _op_error(e) from None
        except UnicodeDecodeError as e:
            # TensorFlow's error quotes input bytes that are not UTF-8, which its Python
            # binding cannot decode (nor keep the status code of: these are input errors).
            # TensorFlow's words, as TF Serving passes them on, with those bytes escaped.
            message = bytes(e.object).decode("utf-8", "backslashreplace")
            raise ServingError(Code.INVALID_ARGUMENT, _strip_paths(message)) from None
        except (TypeError, ValueError) as e:  # numpy -> TF_Tensor conversion refused a feed
            raise ServingError(Code.INVALID_ARGUMENT, f"model execution failed: {e}") from None
        finally:
            if options is not None:
                self._tf_session.TF_DeleteBuffer(options)
        return [np.asarray(v) for v in values]

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()


def _op_error(e: Any) -> ServingError:
    """TensorFlow's status, as TF Serving returns it (its codes are ours)."""
    try:
        code = Code(e.error_code)
    except ValueError:
        code = Code.UNKNOWN
    if code is Code.DEADLINE_EXCEEDED:
        return ServingError(code, "Deadline exceeded")
    return ServingError(code, _strip_paths(str(e.message)))


def _strip_paths(text: str) -> str:
    return _ABSOLUTE_PATH.sub("", text)


class TensorFlowLoader(VersionLoader):
    def load(self) -> Servable:
        tf = self._framework("tensorflow", "TensorFlow", "tensorflow")
        from tensorflow.python.util import deprecation

        if not any((self._path / name).is_file() for name in MODEL_FILES):
            raise self._error(
                "SavedModel file does not exist (saved_model.pb or .pbtxt)", Code.NOT_FOUND
            )
        options = self._context.options
        config = tf.compat.v1.ConfigProto.FromString(options.tensorflow_session_config)
        if not config.intra_op_parallelism_threads:
            config.intra_op_parallelism_threads = options.tensorflow_intra_op_threads
        if not config.inter_op_parallelism_threads:
            config.inter_op_parallelism_threads = options.tensorflow_inter_op_threads
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=config)
        try:
            # tf.compat.v1 loading is deprecated in favour of tf.saved_model.load, which
            # cannot serve TF1 graphs as TF Serving does; the warning would only mislead.
            with deprecation.silence():
                meta_graph = tf.compat.v1.saved_model.load(
                    session, list(options.saved_model_tags), str(self._path)
                )
            signatures = tf_meta_graph.signatures(meta_graph, tf.make_ndarray)
            tensors = _graph_tensors(graph, signatures)
            # The graph is complete: hand it to the C session once, not on every run.
            session._extend_graph()
        except Exception as e:
            session.close()
            code = Code.NOT_FOUND if "could not be found in SavedModel" in str(e) else None
            raise self._error(self._redact(str(e)), code or Code.INVALID_ARGUMENT) from None
        return TensorFlowServable(session, signatures, tensors, self._context)

    def _redact(self, text: str) -> str:
        # TensorFlow also names files outside the version (its own install): drop those too.
        return _strip_paths(super()._redact(text))


def _graph_tensors(graph: Any, signatures: Mapping[str, Signature]) -> dict[str, Any]:
    """TF_Output handles for every tensor the signatures name, resolved once at load.

    Names that are not tensors (the `NoOp` of `__saved_model_init_op`, sparse encodings)
    are left out; running them is refused with a clear message.
    """
    names = {
        spec.name
        for sig in signatures.values()
        for spec in (*sig.inputs.values(), *sig.outputs.values())
        if spec.name
    }
    tensors: dict[str, Any] = {}
    for name in names:
        try:
            tensors[name] = graph.get_tensor_by_name(name)._as_tf_output()
        except (KeyError, ValueError):
            continue
    return tensors


def make_loader(name: str, version: int, path: Path, context: RuntimeContext) -> TensorFlowLoader:
    return TensorFlowLoader(name, version, path, context)
