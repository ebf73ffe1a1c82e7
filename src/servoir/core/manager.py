"""The servable manager: reconciles aspired versions with loaded ones and serves handles.

Sources call `set_aspired(name, versions)` with a model's whole aspired set; the manager
loads, unloads and publishes an immutable `ServingMap` after each change. Every method runs
on the server's event loop; blocking loads and unloads go to the executor it was given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from servoir.core.handle import Harness, ServableHandle
from servoir.core.servable import Loader, Servable
from servoir.core.serving_map import ServingMap, build_entry
from servoir.core.states import ServableId, State
from servoir.core.transitions import Action, VersionView, plan
from servoir.errors import Code, ServingError
from servoir.types import ModelSpec

log = logging.getLogger("servoir.manager")


@dataclass(frozen=True, slots=True)
class AspiredVersion:
    """A version a source wants served: a loader, or the error that stopped making one."""

    version: int
    loader: Loader | None = None
    error: ServingError | None = None


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    state: State
    error: ServingError | None


@dataclass(frozen=True, slots=True)
class Transition:
    """An event for listeners (logs, metrics): a version entered `state`."""

    id: ServableId
    state: State
    error: ServingError | None
    seconds: float | None = None  # how long the load or unload took


Listener = Callable[[Transition], None]


@dataclass
class _Model:
    versions: dict[int, Harness] = field(default_factory=dict)
    history: deque[VersionStatus] = field(default_factory=deque)
    labels: dict[str, int] = field(default_factory=dict)
    # A reload's labels, taken as soon as every version they name is AVAILABLE.
    proposed: dict[str, int] | None = None
    error: str | None = None  # why the source cannot list this model's versions
    removed: bool = False  # no longer configured; kept only for its status history


class Manager:
    def __init__(
        self,
        executor: Executor,
        *,
        end_history: int = 10,
        max_load_retries: int = 5,
        load_retry_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._executor = executor
        self._max_load_retries = max_load_retries
        self._load_retry_interval_s = load_retry_interval_s
        self._clock = clock
        self._end_history = end_history
        self._models: dict[str, _Model] = {}
        self._map: ServingMap[Harness] = ServingMap()
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Listener] = []

    # ---- sources ---------------------------------------------------------------------

    def set_aspired(self, name: str, versions: Sequence[AspiredVersion]) -> None:
        """Replace the aspired set of one model; versions not named are wound down."""
        model = self._models.setdefault(name, _Model())
        model.removed = False
        wanted = {v.version: v for v in versions}
        for version, harness in model.versions.items():
            harness.aspired = version in wanted
        for version, aspired in wanted.items():
            if version in model.versions:
                continue
            harness = Harness(ServableId(name, version), aspired.loader)
            model.versions[version] = harness
            if aspired.error is not None or aspired.loader is None:
                error = aspired.error or ServingError(Code.INTERNAL, "no loader")
                self._enter(harness, State.END, error)
        self._reconcile(name)

    def set_labels(self, name: str, labels: Mapping[str, int]) -> None:
        model = self._models.setdefault(name, _Model())
        model.labels = dict(labels)
        model.proposed = None
        self._publish()

    def propose_labels(self, name: str, labels: Mapping[str, int] | None) -> None:
        """Labels that replace the model's all at once, the moment every version they name is
        AVAILABLE: a reload that moves a label and drops its old version moves the label
        before that version unloads (the old one leaves only once the new is AVAILABLE).
        None withdraws a proposal (a refused reload keeps the labels it found)."""
        model = self._models.setdefault(name, _Model())
        model.proposed = None if labels is None else dict(labels)
        self._publish()

    def set_model_error(self, name: str, error: str | None) -> None:
        model = self._models.setdefault(name, _Model())
        if model.error != error:
            model.error = error
            self._notify()

    def model_error(self, name: str) -> str | None:
        model = self._models.get(name)
        return model.error if model else None

    def remove_model(self, name: str) -> None:
        """Unload every version; the model leaves `model_names` but keeps its history."""
        self.set_aspired(name, [])
        model = self._models[name]
        model.removed = True
        model.labels = {}
        model.proposed = None
        model.error = None
        self._publish()

    def unloaded(self, name: str) -> bool:
        model = self._models.get(name)
        return model is None or all(h.state is State.END for h in model.versions.values())

    def available_versions(self, name: str) -> list[int]:
        entry = self._map.models.get(name)
        return sorted(entry.available) if entry else []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ---- requests --------------------------------------------------------------------

    def handle(self, spec: ModelSpec) -> ServableHandle:
        """A handle on the version `spec` names; raises NOT_FOUND / INVALID_ARGUMENT."""
        return ServableHandle(self._map.lookup(spec))

    def resolve_version(self, spec: ModelSpec) -> int:
        return self._map.resolve_version(spec)

    @property
    def serving_map(self) -> ServingMap[Harness]:
        return self._map

    def model_names(self) -> list[str]:
        return sorted(n for n, m in self._models.items() if not m.removed)

    def labels(self, name: str) -> Mapping[str, int]:
        model = self._models.get(name)
        return dict(model.labels) if model else {}

    def status(self, name: str) -> list[VersionStatus]:
        """Live versions and recent END versions, highest version first."""
        model = self._models.get(name)
        if model is None:
            return []
        live = [VersionStatus(v, h.state, h.error) for v, h in model.versions.items()]
        shown = {s.version for s in live}
        ended = [s for s in model.history if s.version not in shown]
        return sorted(live + ended, key=lambda s: -s.version)

    # ---- waiting ---------------------------------------------------------------------

    def settled(self, names: Iterable[str]) -> bool:
        """Every aspired version of these models is AVAILABLE or END (TF's start-up rule)."""
        for name in names:
            model = self._models.get(name)
            if model is None:
                return False
            for harness in model.versions.values():
                if harness.aspired and harness.state not in (State.AVAILABLE, State.END):
                    return False
                if not harness.aspired and harness.state is State.UNLOADING:
                    return False
        return True

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; it is checked after every state change."""
        while not predicate():
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def stop(self) -> None:
        """Unload every version (after in-flight requests) and wait for it."""
        for name in list(self._models):
            self.set_aspired(name, [])
        await self.wait_until(self._all_unloaded)

    def _all_unloaded(self) -> bool:
        return all(h.state is State.END for m in self._models.values() for h in m.versions.values())

    # ---- reconciliation --------------------------------------------------------------

    def _reconcile(self, name: str) -> None:
        model = self._models[name]
        views = [VersionView(v, h.aspired, h.state) for v, h in model.versions.items()]
        for action, version in plan(views):
            harness = model.versions[version]
            if action is Action.LOAD:
                self._enter(harness, State.LOADING)
                self._spawn(self._load(harness))
            elif action is Action.UNLOAD:
                self._enter(harness, State.UNLOADING)
                self._spawn(self._unload(harness))
            else:
                self._enter(harness, State.END)
        self._retire(model)
        self._publish()

    async def _load(self, harness: Harness) -> None:
        started = self._clock()
        attempts = 0
        while True:
            try:
                harness.servable = await self._load_once(harness)
            except ServingError as e:
                attempts += 1
                if attempts > self._max_load_retries or not harness.aspired:
                    self._enter(harness, State.END, e, self._clock() - started)
                    break
                log.warning(
                    "loading %s failed (attempt %d of %d), retrying in %.1fs: %s",
                    harness.id,
                    attempts,
                    self._max_load_retries + 1,
                    self._load_retry_interval_s,
                    e.message,
                )
                await asyncio.sleep(self._load_retry_interval_s)
            else:
                self._enter(harness, State.AVAILABLE, None, self._clock() - started)
                break
        self._reconcile(harness.id.name)

    async def _load_once(self, harness: Harness) -> Servable:
        assert harness.loader is not None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, harness.loader.load)
        except ServingError:
            raise
        except Exception as e:  # a runtime bug must not take the server down
            log.exception("loading %s failed", harness.id)
            raise ServingError(
                Code.UNKNOWN, f"Loading servable {harness.id} failed: {type(e).__name__}"
            ) from None

    async def _unload(self, harness: Harness) -> None:
        started = self._clock()
        self._publish()  # no new handle can be taken from here on
        if harness.refs > 0:
            harness.released.clear()
            await harness.released.wait()
        servable, harness.servable = harness.servable, None
        if servable is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, servable.close)
            except Exception:
                log.exception("unloading %s failed", harness.id)
        self._enter(harness, State.END, None, self._clock() - started)
        self._reconcile(harness.id.name)

    def _retire(self, model: _Model) -> None:
        """Move versions that ended and are no longer wanted to the bounded history."""
        for version, harness in list(model.versions.items()):
            if harness.state is State.END and not harness.aspired:
                del model.versions[version]
                # One entry a version, as TF's state monitor keeps: the latest end wins.
                kept = [s for s in model.history if s.version != version]
                model.history = deque(kept)
                model.history.append(VersionStatus(version, State.END, harness.error))
        while len(model.history) > self._end_history:
            model.history.popleft()

    def _publish(self) -> None:
        models = {}
        for name, model in self._models.items():
            available = {v: h for v, h in model.versions.items() if h.state is State.AVAILABLE}
            proposed = model.proposed
            if proposed is not None and all(v in available for v in proposed.values()):
                model.labels, model.proposed = proposed, None
            models[name] = build_entry(available, model.labels)
        self._map = ServingMap(models)
        # Label moves and removals change what waiters see without any transition.
        self._notify()

    def _enter(
        self,
        harness: Harness,
        state: State,
        error: ServingError | None = None,
        seconds: float | None = None,
    ) -> None:
        harness.state = state
        if error is not None:
            harness.error = error
        event = Transition(harness.id, state, error, seconds)
        for listener in self._listeners:
            listener(event)
        self._notify()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Kept referenced until done: the loop holds tasks only weakly.
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
