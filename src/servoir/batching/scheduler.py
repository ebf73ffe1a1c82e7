"""The one batch scheduler every model shares (TF's SharedBatchScheduler), on the event loop.

Thread model: the scheduler runs on the server's event loop and never blocks. Its "batch
threads" are `threads` long-lived worker tasks, each running one batch at a time through
the wrapped servable's own `run()`, which executes on the loop when the runtime measured
it fast, or in the runtime's inference executor otherwise. So batch threads bound how many
batches are in flight, the executor's threads do the blocking work, and the server gives
each runtime max(1, cores // threads) intra-op threads by default, keeping
batch threads x intra-op threads <= cores. (Workers are tasks, not a task per batch: on
uvloop creating a task costs about as much as running a small model.)

Dispatch is event driven. A worker that finishes a batch takes the next one itself. A new
request, or a batch timeout, wakes one idle worker, which chooses its batch when it runs,
on the next loop turn: that costs microseconds and lets every request that arrived in the
same turn (the front end parses many sockets per turn) join the same batch. Which batch
runs is decided by `policy.choose`. A lone request (a thread idle, nothing queued, no other
request in this turn) skips all that: `lend` lets it run in its caller.

Work sharing: a thread that takes a batch while other batch threads are free too takes
only its share of the queue's waiting rows, and the free threads run the rest side by side.
Without it one thread would take everything waiting (up to max_batch_size) and the others
would idle: on a CPU, where a batch saves little per row, that halves throughput on two
cores. Under load threads are rarely free together, so batches still grow. With
--batching_dispatch_when_idle=false batches are taken whole, as TF Serving does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from servoir.batching.formation import padded_size
from servoir.batching.policy import choose, next_wakeup
from servoir.batching.queue import Batch, BatchQueue, Request
from servoir.errors import Code, ServingError
from servoir.types import Array

log = logging.getLogger("servoir.batching")

Work = tuple[BatchQueue, Batch] | None


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    queues: int
    queued_tasks: int
    running_batches: int
    batches_run: int
    rows_run: int  # of the queues still registered
    expired: int  # parts dropped unrun because their deadline passed


class BatchScheduler:
    def __init__(
        self,
        threads: int,
        *,
        when_idle: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threads <= 0:
            raise ValueError(f"threads must be positive; was {threads}")
        self.threads = threads
        self.clock = clock
        self._when_idle = when_idle
        self._queues: list[BatchQueue] = []
        self._cursor = 0  # round-robin: the queue after the one served last
        self._running = 0
        self._batches_run = 0
        self._workers: list[asyncio.Task[None]] = []
        self._idle: deque[asyncio.Future[bool]] = deque()  # one per idle worker; False: stop
        self._waking = 0  # workers woken that have not taken their batch yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._floor = 0.0  # a timer fired for this time: treat the clock as at least there
        self._lent: list[asyncio.Future[bool]] = []  # idle workers' slots lent to callers
        self._turn_busy = False  # a request already arrived in this loop turn
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = False

    # ---- queues ------------------------------------------------------------------------

    def add_queue(self, queue: BatchQueue) -> None:
        """Register a queue; called on the event loop (the first request of a signature).
        The first call starts the workers on that loop."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._workers = [self._loop.create_task(self._work()) for _ in range(self.threads)]
        self._queues.append(queue)

    def remove_queues(self, queues: Iterable[BatchQueue]) -> None:
        """Forget queues of an unloaded version; safe from any thread (unload runs in the
        load executor). Their tasks, if any were left, fail with UNAVAILABLE."""
        doomed = list(queues)
        loop = self._loop
        if loop is None or loop.is_closed():
            self._remove(doomed)
            return
        try:
            loop.call_soon_threadsafe(self._remove, doomed)
        except RuntimeError:  # the loop closed meanwhile: nothing can run any more
            self._remove(doomed)

    def _remove(self, queues: list[BatchQueue]) -> None:
        for queue in queues:
            if queue not in self._queues:
                continue
            index = self._queues.index(queue)
            self._queues.pop(index)
            if self._cursor > index:
                self._cursor -= 1
            queue.fail_all(ServingError(Code.UNAVAILABLE, "the model version was unloaded"))
        self._cursor = self._cursor % len(self._queues) if self._queues else 0

    # ---- requests ----------------------------------------------------------------------

    def enqueue(
        self,
        queue: BatchQueue,
        inputs: Mapping[str, Array],
        size: int,
        request: Callable[[int], Request],
    ) -> Request:
        """Admit a request into `queue` (or raise UNAVAILABLE / INVALID_ARGUMENT at once)."""
        if self._stopped:
            raise ServingError(Code.UNAVAILABLE, "the batch scheduler is shutting down")
        admitted = queue.enqueue(inputs, size, request, self.clock())
        # Busy workers pick the batch up when they finish; only an idle one needs waking.
        self._wake()
        return admitted

    async def lend(self) -> bool:
        """May a request run alone, in its caller, as if batching were off?

        Only when waiting cannot help: a batch thread is idle, nothing is queued anywhere,
        and no other request arrives in this loop turn. While other batches run (a loaded
        server) it also waits out the next turn: the front end starts the requests it read
        together one after another in one turn, so the first of them would otherwise take
        a thread alone while the rest queue for the others; when others came with it, it
        joins them in the queue. The caller then holds that thread's slot until it calls
        `give_back`."""
        first = not self._turn_busy
        if first and self._loop is not None:
            self._turn_busy = True
            self._loop.call_soon(self._next_turn)
        if not (first and self._when_idle and self._idle) or self._stopped:
            return False
        if self._queued():
            return False
        loaded = self._running > 0
        self._lent.append(self._idle.pop())
        self._running += 1
        if not loaded:
            return True
        try:
            await asyncio.sleep(0)  # the rest of this turn: did others come with it?
        except asyncio.CancelledError:  # the caller went away: its slot must come back
            self._return_slot()
            raise
        if not (self._queued() or self._stopped):
            return True
        self._return_slot()
        return False

    def _return_slot(self) -> None:
        """Undo a lend that ran nothing."""
        self._running -= 1
        self._release(self._lent.pop())

    def _queued(self) -> bool:
        return any(queue.batches for queue in self._queues)

    def give_back(self) -> None:
        self._running -= 1
        self._batches_run += 1
        self._release(self._lent.pop())

    def _release(self, slot: asyncio.Future[bool]) -> None:
        """A lent slot returns to its idle worker (or stops it)."""
        if self._stopped:
            if not slot.done():
                slot.set_result(False)
            return
        self._idle.append(slot)
        if self._queued():
            self._wake()

    def _next_turn(self) -> None:
        self._turn_busy = False

    def _wake(self) -> None:
        """Wake one idle worker. It chooses its batch when it runs, on the next loop turn,
        so every request that arrives in this turn can still join that batch."""
        while self._idle:
            slot = self._idle.popleft()
            if not slot.done():  # done only when the loop tore its worker down
                slot.set_result(True)
                self._waking += 1
                return

    def _take(self) -> Work:
        """The batch a free worker should run now, removed from its queue, or None."""
        now = max(self.clock(), self._floor)
        self._floor = 0.0
        choice = choose(self._queues, self._cursor, now, self._when_idle)
        if choice is None:
            self._arm(now)
            return None
        index, position = choice
        self._cursor = (index + 1) % len(self._queues)
        queue = self._queues[index]
        batch = queue.take(position, self._share(index))
        if queue.batches and not self._waking:
            self._wake()  # rows left for other free threads: one of them takes the next share
        return queue, batch

    def _share(self, index: int) -> int | None:
        """At most how many rows a worker takes from queue `index` (None: a whole batch):
        its share of the queue's waiting rows among the free threads that queue can have
        (free threads less one for each other queue with work waiting), rounded up to an
        allowed batch size. A model that runs on the loop takes whole batches: its shares
        would run one after another, each paying a batch's overhead for nothing."""
        free = 1 + len(self._idle) + self._waking
        queue = self._queues[index]
        if not self._when_idle or free == 1 or queue.on_loop():
            return None
        others = sum(1 for i, q in enumerate(self._queues) if i != index and q.batches)
        threads = free - others
        if threads <= 1:
            return None
        rows = sum(batch.size for batch in queue.batches)
        # Rounded up to an allowed batch size: shares padded to a fixed size would each
        # compute that many rows, more in all than one batch would.
        return padded_size(-(-rows // threads), queue.options.allowed_batch_sizes)

    def _arm(self, now: float) -> None:
        """Wake up for the next batch timeout (a busy worker looks for work itself when it
        finishes; with none idle, the timer only wakes nobody)."""
        wake = next_wakeup(self._queues)
        if wake == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if wake is not None and self._loop is not None:
            self._timer_at = wake
            self._timer = self._loop.call_later(max(wake - now, 0.0), self._on_timer, wake)

    def _on_timer(self, wake: float) -> None:
        self._timer = self._timer_at = None
        # Loop timers may fire a little early (uvloop rounds to milliseconds); the batch's
        # time has come all the same.
        self._floor = wake
        self._wake()

    async def _work(self) -> None:
        """One batch thread: take a batch and run it, or sleep until woken."""
        assert self._loop is not None
        while not self._stopped:
            work = self._take()
            if work is None:
                waiting: asyncio.Future[bool] = self._loop.create_future()
                self._idle.append(waiting)
                if not await waiting:
                    return
                self._waking -= 1
                continue
            await self._execute(*work)
            if any(q.batches for q in self._queues):
                # A batch that ran on the loop never yielded: let its callers answer (and
                # the front end read new requests) before the next batch, so answers go
                # out as batches finish instead of all at once after the backlog.
                await asyncio.sleep(0)

    async def _execute(self, queue: BatchQueue, batch: Batch) -> None:
        self._running += 1
        try:
            await queue.run(batch)
        except Exception:  # the runner answers its own errors; this is a bug guard
            log.exception("batch of queue %s failed", queue.name)
            error = ServingError(Code.INTERNAL, "batch execution failed")
            for part in batch.parts:
                part.request.fail(error)
        finally:
            self._running -= 1
            self._batches_run += 1

    # ---- lifecycle ---------------------------------------------------------------------

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            queues=len(self._queues),
            queued_tasks=sum(q.queued_tasks for q in self._queues),
            running_batches=self._running,
            batches_run=self._batches_run,
            rows_run=sum(q.rows_run for q in self._queues),
            expired=sum(q.expired for q in self._queues),
        )

    async def stop(self) -> None:
        """Refuse new requests, fail queued ones with UNAVAILABLE, let running ones end."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        error = ServingError(Code.UNAVAILABLE, "the batch scheduler is shutting down")
        for queue in self._queues:
            queue.fail_all(error)
        while self._idle:
            self._idle.popleft().set_result(False)
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
