"""The set of served models: applies configs (start-up, reload, file polling) and model control.

A config change touches only the models it changes: added models load, removed models
unload after their in-flight requests, changed models (base path, policy) are rescanned,
and every other model is left exactly as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from servoir.batching.servable import Batching
from servoir.config.model_config import ModelConfig, check_platform_changes, from_message
from servoir.core.labels import check_labels
from servoir.core.manager import AspiredVersion, Manager
from servoir.core.servable import Loader
from servoir.core.states import State
from servoir.errors import Code, ServingError
from servoir.runtimes.registry import RuntimeContext, detect_platform, loader_factory
from servoir.sources.filesystem import FileSystemSource, ModelSource, VersionPath
from servoir.warmup import WarmupLoader, WarmupOptions

log = logging.getLogger("servoir.repository")


def _source(config: ModelConfig) -> ModelSource:
    return ModelSource(config.name, config.base_path, config.platform, config.policy)


class Repository:
    """Implements servoir.service.ModelControl."""

    def __init__(
        self,
        manager: Manager,
        context: RuntimeContext,
        *,
        allow_version_labels_for_unavailable_models: bool = False,
        version_quiet_seconds: float = 2.0,
        warmup: WarmupOptions | None = None,
        platform_warmup: Mapping[str, WarmupOptions] | None = None,
        batching: Batching | None = None,
    ) -> None:
        self._warmup = warmup or WarmupOptions()
        # --platform_config_file: a runtime's entry replaces the warmup flags for it.
        self._platform_warmup = dict(platform_warmup or {})
        self._batching = batching  # None: --enable_batching is off
        self._manager = manager
        self._context = context
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self.source = FileSystemSource(
            [], self._on_aspired, self._on_source_error, quiet_seconds=version_quiet_seconds
        )
        self._configs: dict[str, ModelConfig] = {}
        self._disabled: set[str] = set()  # unloaded through model control
        self._lock = asyncio.Lock()  # one config change at a time
        self.scans = 0  # periodic scans done so far (tests and logs read it)
        self._config_listeners: list[Callable[[Sequence[ModelConfig]], None]] = []

    def add_config_listener(self, listener: Callable[[Sequence[ModelConfig]], None]) -> None:
        """Called with the new model configs whenever a config is applied."""
        self._config_listeners.append(listener)

    # ---- source -> manager -------------------------------------------------------------

    def _on_aspired(self, model: ModelSource, versions: Sequence[VersionPath]) -> None:
        self._manager.set_model_error(model.name, None)
        self._manager.set_aspired(model.name, [self._aspired(model, v) for v in versions])

    def _aspired(self, model: ModelSource, version: VersionPath) -> AspiredVersion:
        try:
            platform = model.platform or detect_platform(version.path)
            factory = loader_factory(platform)
        except ServingError as e:
            return AspiredVersion(version.version, error=e)
        loader: Loader = factory(model.name, version.version, version.path, self._context)
        warmup = self._platform_warmup.get(platform, self._warmup)
        loader = WarmupLoader(loader, version.path, warmup)
        if self._batching is not None:
            # Outermost: warmup replays on the bare servable (in the load thread, off the
            # loop the shared scheduler lives on), then batching composes around it.
            loader = self._batching.wrap(
                loader, model.name, version.version, version.path, platform
            )
        return AspiredVersion(version.version, loader=loader)

    def _on_source_error(self, model: ModelSource, message: str) -> None:
        # The model keeps whatever it already serves; only its own status shows the problem
        # (without the path: clients never see the server's directory layout).
        self._manager.set_model_error(
            model.name, f"the base path of model {model.name} is missing or unreadable"
        )

    def poll(self) -> None:
        self.source.poll_once()
        self.scans += 1

    # ---- configs -----------------------------------------------------------------------

    @property
    def configs(self) -> list[ModelConfig]:
        return list(self._configs.values())

    async def apply(self, configs: Sequence[ModelConfig]) -> None:
        """Make `configs` the served model set; returns once the changed models settled.

        Raises UNKNOWN naming every changed model that has no AVAILABLE version, and
        FAILED_PRECONDITION for a label that points at a version that is not available (the
        previous labels then stay).
        """
        async with self._lock:
            check_platform_changes(self.configs, configs)
            new = {c.name: c for c in configs}
            old = self._configs
            touched = {n for n, c in new.items() if n not in old or _differs(old[n], c)}
            # A label that cannot become valid refuses the reload before anything changes.
            self._check_labels(configs, lambda c: self._reachable(c, c.name in touched))
            for config in configs:
                if config.name not in self._disabled:
                    self._manager.propose_labels(config.name, config.labels)
            removed = set(old) - set(new)
            self._configs = new
            for listener in self._config_listeners:
                listener(configs)
            self._disabled -= removed
            self._sync_source()
            for name in removed:
                self._manager.remove_model(name)
            await self._settle(touched)
            failures = self._failures(touched)
            try:
                self._apply_labels(configs)
            except ServingError:
                for config in configs:  # the labels stay as they were
                    self._manager.propose_labels(config.name, None)
                raise
        if failures:
            raise ServingError(
                Code.UNKNOWN,
                f"{len(failures)} model(s) did not become available: {''.join(failures)}}}",
            )

    async def reload_config(self, config: Any) -> None:
        await self.apply(from_message(config))

    def _sync_source(self) -> None:
        self.source.set_models(
            [_source(c) for n, c in self._configs.items() if n not in self._disabled]
        )

    async def _settle(self, names: Collection[str]) -> None:
        if not names:
            return
        self.source.poll_once(names)
        await self._manager.wait_until(lambda: self._manager.settled(names))

    def _failures(self, names: Collection[str]) -> list[str]:
        failures = []
        for name in sorted(names):
            if self._manager.available_versions(name):
                continue
            ended = [s for s in self._manager.status(name) if s.state is State.END and s.error]
            for status in ended:
                assert status.error is not None
                failures.append(
                    f"{{{{name: {name} version: {status.version}}} due to error: "
                    f"{status.error.message}}}, "
                )
            if not ended:
                reason = self._manager.model_error(name) or "no version found"
                failures.append(f"{{{{name: {name}}} due to error: {reason}}}, ")
        return failures

    def _reachable(self, config: ModelConfig, touched: bool) -> set[int]:
        """Versions a label may name: those AVAILABLE now and, for a model this config
        changes, those it will load."""
        available = set(self._manager.available_versions(config.name))
        if touched:
            available |= self.source.versions_on_disk(_source(config))
        return available

    def _check_labels(
        self, configs: Sequence[ModelConfig], available: Callable[[ModelConfig], Collection[int]]
    ) -> None:
        for config in configs:
            if config.name not in self._disabled:
                check_labels(
                    config.name,
                    config.labels,
                    self._manager.labels(config.name),
                    available(config),
                    self._allow_unavailable_labels,
                )

    def _apply_labels(self, configs: Sequence[ModelConfig]) -> None:
        # All labels are checked before any is changed, so a refused change leaves them all.
        self._check_labels(configs, lambda c: self._manager.available_versions(c.name))
        for config in configs:
            if config.name not in self._disabled:
                self._manager.set_labels(config.name, config.labels)

    # ---- model control (KServe V2 repository extension) -------------------------------

    def known_models(self) -> list[str]:
        return sorted(self._configs)

    def _known(self, name: str) -> ModelConfig:
        config = self._configs.get(name)
        if config is None:
            raise ServingError(Code.NOT_FOUND, f"Model {name} is not in the model repository")
        return config

    async def load_model(self, name: str) -> None:
        async with self._lock:
            config = self._known(name)
            self._disabled.discard(name)
            self._sync_source()
            await self._settle([name])
            failures = self._failures([name])
            if not failures:
                self._manager.set_labels(name, config.labels)
        if failures:
            raise ServingError(
                Code.FAILED_PRECONDITION, f"failed to load model {name}: {''.join(failures)}}}"
            )

    async def unload_model(self, name: str) -> None:
        async with self._lock:
            self._known(name)
            self._disabled.add(name)
            self._sync_source()
            self._manager.remove_model(name)
            await self._manager.wait_until(lambda: self._manager.unloaded(name))


def _differs(a: ModelConfig, b: ModelConfig) -> bool:
    return (a.base_path, a.platform, a.policy) != (b.base_path, b.platform, b.policy)
