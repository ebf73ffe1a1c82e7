"""The file-system source: scans each model's base path and emits its aspired versions.

`poll_once()` does one scan of every model; a poll loop calls it again on a period. A model
whose base path is missing or unreadable is reported on its own and never stops the others.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servoir.sources.stability import Fingerprint, StabilityTracker, fingerprint, settle
from servoir.sources.versions import (
    Latest,
    VersionPolicy,
    aspired_versions,
    discover_versions,
    missing_specific,
)

log = logging.getLogger("servoir.sources")


@dataclass(frozen=True, slots=True)
class ModelSource:
    """One model to watch: TensorFlow Serving's ModelConfig, as far as a source needs it."""

    name: str
    base_path: Path
    platform: str = ""  # "" means detect from the files in each version directory
    policy: VersionPolicy = field(default_factory=Latest)


@dataclass(frozen=True, slots=True)
class VersionPath:
    version: int
    path: Path


# Called with (model, aspired version directories) or (model, error text) per scan.
AspiredCallback = Callable[[ModelSource, Sequence[VersionPath]], None]
ErrorCallback = Callable[[ModelSource, str], None]


class FileSystemSource:
    def __init__(
        self,
        models: Sequence[ModelSource],
        on_aspired: AspiredCallback,
        on_error: ErrorCallback,
        *,
        quiet_seconds: float = 2.0,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._models = list(models)
        self._quiet_ns = int(quiet_seconds * 1e9)
        self._wall_clock_ns = wall_clock_ns
        self._on_aspired = on_aspired
        self._on_error = on_error
        self._trackers: dict[str, StabilityTracker] = {}
        self._emitted: dict[str, list[VersionPath]] = {}  # per model, what the last scan said

    @property
    def models(self) -> list[ModelSource]:
        return list(self._models)

    def set_models(self, models: Sequence[ModelSource]) -> None:
        """Watch these models from now on. A model no longer watched, or watched at another
        base path, starts afresh: the versions a config names are taken as they are, as at
        start-up (they did not appear while the server watched)."""
        before = {m.name: m.base_path for m in self._models}
        self._models = list(models)
        kept = {m.name for m in models if before.get(m.name) == m.base_path}
        for state in (self._trackers, self._emitted):
            for name in [n for n in state if n not in kept]:
                del state[name]

    @staticmethod
    def versions_on_disk(model: ModelSource) -> set[int]:
        """The versions `model`'s policy picks among its version directories now, finished or
        not: what it may serve once they load."""
        try:
            present = _version_dirs(model.base_path)
        except OSError:
            return set()
        return set(aspired_versions(model.policy, present))

    def poll_once(self, names: Collection[str] | None = None) -> None:
        """Scan every watched model, or only those named."""
        for model in self._models:
            if names is None or model.name in names:
                self._scan(model)

    def _scan(self, model: ModelSource) -> None:
        try:
            present = _version_dirs(model.base_path)
        except OSError as e:
            message = (
                f"Could not find base path {model.base_path} for servable {model.name} "
                f"with error {e.strerror or type(e).__name__}"
            )
            log.error("%s", message)
            self._on_error(model, message)
            return
        if not present:
            log.warning(
                "No versions of servable %s found under base path %s. Did you forget to "
                "name your leaf directory as a number (eg. '/1/')?",
                model.name,
                model.base_path,
            )
        for version in missing_specific(model.policy, present):
            log.warning("version %d of servable %s is not present", version, model.name)
        tracker = self._trackers.get(model.name, StabilityTracker())
        prints: dict[int, Fingerprint | None] = {
            v: None if v in tracker.accepted else fingerprint(model.base_path / child)
            for v, child in present.items()
        }
        tracker = self._trackers[model.name] = settle(
            tracker, prints, self._wall_clock_ns(), self._quiet_ns
        )
        for version in sorted(tracker.pending):
            log.debug("version %d of servable %s is still being written", version, model.name)
        wanted = [
            VersionPath(v, model.base_path / present[v])
            for v in aspired_versions(model.policy, tracker.accepted)
        ]
        if any(v in tracker.pending for v in aspired_versions(model.policy, present)):
            # A version the policy wants is still being written. Served versions whose
            # directories are gone keep serving until it is ready: a removed version
            # unloads once its replacement is AVAILABLE (TF's availability-preserving swap).
            named = {w.version for w in wanted}
            wanted += [
                old
                for old in self._emitted.get(model.name, [])
                if old.version not in present and old.version not in named
            ]
        self._emitted[model.name] = wanted
        self._on_aspired(model, wanted)


def _version_dirs(base_path: Path) -> dict[int, str]:
    """version -> directory name under `base_path` (OSError when it cannot be listed)."""
    return discover_versions(e.name for e in os.scandir(base_path) if e.is_dir())
