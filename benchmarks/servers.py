"""Start and stop the servers under test.

Each server runs as its own process group on a free port, with its output in a log file.
Start-up waits by polling a readiness URL until it answers 200 (and, where given, contains
a marker) within a bounded deadline; there are no fixed sleeps. Stopping sends SIGTERM to
the group it started, then SIGKILL if it has not gone within a grace period.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from benchmarks.core import BENCH_DIR, EXAMPLE_MODELS

# ---------------------------------------------------------------------------------------
# The one place that says how Servoir is started for benchmarks. Placeholders: {bin} (the
# directory of the running Python, i.e. the virtualenv's bin), {rest_port}, {model_name},
# {model_base_path}. The environment variable overrides it, e.g. to try a flag.
SERVOIR_COMMAND = (
    "{bin}/servoir serve --port=0 --rest_api_port={rest_port}"
    " --model_name={model_name} --model_base_path={model_base_path}"
)
SERVOIR_COMMAND_ENV = "SERVOIR_BENCH_COMMAND"
# ---------------------------------------------------------------------------------------

BASELINE_COMMAND = (
    "{python} {bench_dir}/baseline_fastapi.py --port={rest_port}"
    " --model_name={model_name} --model_base_path={model_base_path}"
)

READY_DEADLINE_S = 60.0
STOP_GRACE_S = 10.0
_PORT_IN_USE = ("address already in use", "errno 98")


class ServerError(RuntimeError):
    """A server did not start, or did not become ready in time."""


@dataclass(frozen=True)
class ServerSpec:
    """How to launch one target and how to tell it is ready."""

    name: str
    command: str  # a template, see SERVOIR_COMMAND
    model_name: str
    model_base_path: Path
    ready_marker: bytes | None = None

    @property
    def ready_path(self) -> str:
        return f"/v1/models/{self.model_name}"

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.model_name}:predict"

    def argv(self, rest_port: int) -> list[str]:
        values = {
            "bin": Path(sys.executable).parent,  # not resolved: keep the virtualenv's bin
            "python": sys.executable,
            "bench_dir": BENCH_DIR,
            "rest_port": rest_port,
            "model_name": self.model_name,
            "model_base_path": self.model_base_path,
        }
        return shlex.split(
            self.command.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
        )

    def unavailable_reason(self) -> str | None:
        """Why this target cannot be started here, or None when it can."""
        program = self.argv(0)[0]
        if os.sep in program:
            if not os.access(program, os.X_OK):
                return f"{program} does not exist or is not executable"
        elif shutil.which(program) is None:
            return f"{program} is not on PATH"
        return None


def servoir_spec(model_name: str = "mlp") -> ServerSpec:
    return ServerSpec(
        name="servoir",
        command=os.environ.get(SERVOIR_COMMAND_ENV, SERVOIR_COMMAND),
        model_name=model_name,
        model_base_path=EXAMPLE_MODELS / model_name,
        ready_marker=b"AVAILABLE",
    )


def baseline_spec(model_name: str = "mlp") -> ServerSpec:
    return ServerSpec(
        name="fastapi_baseline",
        command=BASELINE_COMMAND,
        model_name=model_name,
        model_base_path=EXAMPLE_MODELS / model_name,
        ready_marker=b"AVAILABLE",
    )


def post_predict(server: ServerProcess, body: bytes, timeout_s: float = 30.0) -> bytes:
    """POST a JSON body to the target's predict path; the answer's bytes. Raises OSError
    (urllib's HTTPError for a non-2xx answer) when the request fails."""
    request = urllib.request.Request(
        server.base_url + server.spec.predict_path,
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return bytes(response.read())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A running target: `with ServerProcess(spec, log_dir) as server: server.base_url`."""

    def __init__(self, spec: ServerSpec, log_dir: Path, ready_deadline_s: float = READY_DEADLINE_S):
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.ready_deadline_s = ready_deadline_s
        self.port = 0
        self.startup_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerError(f"{self.spec.name} is not running")
        return self._proc.pid

    def start(self, attempts: int = 3) -> ServerProcess:
        """Start and wait until ready; retries only when the free port was taken meanwhile."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        attempt = 1
        while True:
            try:
                self._start_once()
                return self
            except ServerError:
                port_race = any(s in self.log_tail().lower() for s in _PORT_IN_USE)
                self.stop()
                if not port_race or attempt >= attempts:
                    raise
                attempt += 1

    def _start_once(self) -> None:
        self.port = free_port()
        argv = self.spec.argv(self.port)
        self._log = self.log_path.open("wb")
        self._log.write(f"$ {shlex.join(argv)}\n".encode())
        self._log.flush()
        started = time.monotonic()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches its children
        )
        self._wait_ready(started + self.ready_deadline_s)
        self.startup_s = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        url = self.base_url + self.spec.ready_path
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerError(
                    f"{self.spec.name} exited with {self._proc.returncode} before it was ready;"
                    f" log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    body = response.read()
                if self.spec.ready_marker is None or self.spec.ready_marker in body:
                    return
                last = f"200 without {self.spec.ready_marker!r}: {body[:200]!r}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise ServerError(
            f"{self.spec.name} was not ready at {url} within {self.ready_deadline_s:.0f} s"
            f" (last: {last}); log {self.log_path}:\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> int | None:
        """Stop the process group; returns the exit code (None if it was not started)."""
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=STOP_GRACE_S)
            else:
                _signal_group(proc.pid, signal.SIGKILL)  # leftover children, if any
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode(errors="replace")

    def resources(self) -> dict[str, Any]:
        """CPU seconds (user + system, children included) and memory of the process group."""
        if self._proc is None:
            return {}
        pids = _group_pids(self._proc.pid)
        cpu_ticks = 0
        rss_kib = hwm_kib = 0
        for pid in pids:
            cpu_ticks += _cpu_ticks(pid)
            status = _proc_status(pid)
            rss_kib += status.get("VmRSS", 0)
            hwm_kib += status.get("VmHWM", 0)
        return {
            "processes": len(pids),
            "cpu_s": cpu_ticks / os.sysconf("SC_CLK_TCK"),
            "rss_mib": rss_kib / 1024,
            "peak_rss_mib": hwm_kib / 1024,
        }

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp, ...
                pids.append(int(entry.name))
    return pids


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime


def _proc_status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return values
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values
