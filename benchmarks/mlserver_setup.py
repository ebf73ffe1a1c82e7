"""MLServer 1.7.1 for the gRPC suite: its own virtualenv, a model folder, how to start it.

MLServer lives in `benchmarks/.mlserver-venv` (git-ignored), created on first use with
`python3 -m venv` and `pip install mlserver==1.7.1 'uvloop<0.22' onnxruntime numpy` (1.7.1
does not run with uvloop 0.22). It serves the model through `benchmarks/mlserver_runtime.py`
(copied into the model folder, which MLServer puts on sys.path), with MLServer's default
settings otherwise (parallel_workers=1: inference runs in one worker process). Ports and the
folders MLServer writes to (.metrics, .envs) are set through its MLSERVER_* environment
variables, and it runs with its working directory in the suite's results folder, so nothing
lands in the repository.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.core import BENCH_DIR
from benchmarks.servers import ServerSpec

VENV = BENCH_DIR / ".mlserver-venv"
VERSION = "1.7.1"
REQUIREMENTS = (f"mlserver=={VERSION}", "uvloop<0.22", "onnxruntime", "numpy")
RUNTIME_MODULE = BENCH_DIR / "mlserver_runtime.py"
INSTALL_TIMEOUT_S = 900


class MLServerUnavailable(RuntimeError):
    """MLServer could not be installed; the reason is the message."""


def mlserver_bin() -> Path:
    return VENV / "bin" / "mlserver"


def installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('mlserver'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def ensure_venv(log: Path) -> str:
    """Create the virtualenv and install MLServer unless it is there; its version.
    Raises MLServerUnavailable with pip's last output when installing fails."""
    if (version := installed_version()) == VERSION and mlserver_bin().exists():
        return version
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        ["python3", "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "--quiet", *REQUIREMENTS],
    ]
    with log.open("w") as out:
        for argv in steps:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            try:
                proc = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise MLServerUnavailable(f"{argv[0]} failed: {e}; log {log}") from e
            if proc.returncode != 0:
                tail = log.read_text(errors="replace")[-1500:]
                raise MLServerUnavailable(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    version = installed_version()
    if version != VERSION:
        raise MLServerUnavailable(f"after installing, mlserver reports version {version}")
    return version


def write_model_folder(
    root: Path,
    model_name: str,
    model_file: Path,
    settings: dict[str, Any] | None = None,
    intra_op_threads: int = 1,
) -> Path:
    """`root/models/<model_name>/model-settings.json` (+ the runtime module); the folder to
    give to `mlserver start`. `settings`: more model settings, e.g. adaptive batching's
    `max_batch_size` and `max_batch_time`."""
    models = root / "models"
    folder = models / model_name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy2(RUNTIME_MODULE, folder / RUNTIME_MODULE.name)
    settings = {
        "name": model_name,
        "implementation": f"{RUNTIME_MODULE.stem}.OnnxRuntime",
        "parameters": {
            "uri": str(model_file.resolve()),
            "extra": {"intra_op_threads": intra_op_threads},
        },
        **(settings or {}),
    }
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return models


@dataclass(frozen=True)
class MLServerSpec(ServerSpec):
    """MLServer is ready when V2's model-ready endpoint answers 200."""

    @property
    def ready_path(self) -> str:
        return f"/v2/models/{self.model_name}/ready"

    @property
    def predict_path(self) -> str:
        return f"/v2/models/{self.model_name}/infer"


def spec(
    root: Path,
    models: Path,
    model_name: str,
    grpc_port: int,
    metrics_port: int,
    parallel_workers: int | None = None,
) -> MLServerSpec:
    """`mlserver start <models>` with the REST port from the harness and fixed gRPC and
    metrics ports, run from `root` (MLServer writes .metrics/ and .envs/ there);
    `parallel_workers` inference processes (None: MLServer's default)."""
    run_dir = root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    def q(path: Path) -> str:
        return shlex.quote(str(path))

    workers = "" if parallel_workers is None else f" MLSERVER_PARALLEL_WORKERS={parallel_workers}"
    command = (
        f"env -C {q(run_dir)} MLSERVER_HTTP_PORT={{rest_port}}"
        f" MLSERVER_GRPC_PORT={grpc_port} MLSERVER_METRICS_PORT={metrics_port}"
        f" MLSERVER_METRICS_DIR={q(run_dir / '.metrics')}"
        f" MLSERVER_ENVIRONMENTS_DIR={q(run_dir / '.envs')}{workers}"
        f" {q(mlserver_bin())} start {q(models)}"
    )
    return MLServerSpec("mlserver", command, model_name, models / model_name, ready_marker=None)
