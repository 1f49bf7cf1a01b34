"""Dynamic batching: the texts of concurrent requests share one forward pass, and each request gets its own answers.

A forward pass over 32 texts costs far less than 32 passes over one (the weights are read once, the matrix
products are wide), so a server that answers each request alone leaves most of the machine idle under load.
`DynamicBatcher` queues the texts of each request; a single collector task starts a batch as soon as
`max_batch_texts` texts wait or the oldest has waited `max_wait_ms`, hands it to one model thread off the event loop
(the server keeps accepting requests meanwhile, and those become the next batch), then splits the results back in
order. Requests queued while a batch runs do not wait again: the wait counts from each request's arrival. The model
sorts a batch by length and splits it into passes, which its lanes run in parallel (inference.predictor): the larger
the batch, the less padding and the fuller the passes, so under load a batch takes all that waits.

With `enabled=False` each request is its own forward pass (still off the event loop, one at a time): the baseline
the load benchmark compares against.

`GenerationBatcher` does the same for POST /v1/generate: requests that wait while a generation runs are written
together in the next call.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from starlette.concurrency import run_in_threadpool


@dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Collects requests into forward passes of up to `max_batch_texts` texts.

    `predict(texts) -> results` (one per text, in order) runs in one dedicated thread, one batch at a time (the
    model's lanes are its own). `on_batch(n_texts, seconds)` is told of every pass (for metrics).
    """

    def __init__(self, predict: Callable[[list[str]], list[Any]], *, max_batch_texts: int = 512,
                 max_wait_ms: float = 5.0, enabled: bool = True,
                 on_batch: Optional[Callable[[int, float], None]] = None) -> None:
        self._predict = predict
        self.max_batch_texts = max_batch_texts
        self.max_wait = max_wait_ms / 1000.0
        self.enabled = enabled
        self._on_batch = on_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thrifty-model")
        self._queue: Optional[asyncio.Queue] = None
        self._collector: Optional[asyncio.Task] = None
        self._carry: Optional[_Job] = None  # a request that did not fit the last batch: first in the next
        self.waiting_texts = 0  # texts queued and not yet in a forward pass (the queue depth in /metrics); with
        # batching off, a request's texts count until its pass ends

    async def start(self) -> None:
        if self.enabled and self._collector is None:
            self._queue = asyncio.Queue()
            self._collector = asyncio.create_task(self._collect(), name="thrifty-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop (the server stops accepting requests first)."""
        if self._collector is not None:
            assert self._queue is not None
            await self._queue.put(None)
            await self._collector
            self._collector = None
        self._executor.shutdown(wait=True)

    async def predict(self, texts: Sequence[str]) -> list[Any]:
        """The results for `texts`, in order: batched with other requests' texts when enabled."""
        loop = asyncio.get_running_loop()
        self.waiting_texts += len(texts)
        if not self.enabled:
            try:
                return await loop.run_in_executor(self._executor, self._run, list(texts))
            finally:
                self.waiting_texts -= len(texts)
        if self._queue is None:
            raise RuntimeError("DynamicBatcher.start() was not awaited")
        future = loop.create_future()
        await self._queue.put(_Job(texts, future))
        return await future

    def after_current_batch(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the model thread once the batch running now (if any) is done: batches run there one at a time,
        so a model swapped out can be released without pulling it from under a batch that started on it."""
        self._executor.submit(fn)

    def _run(self, texts: list[str]) -> list[Any]:
        started = time.perf_counter()
        results = self._predict(texts)
        if len(results) != len(texts):  # a bug in predict would hand one request another's answers: refuse
            raise RuntimeError(f"the model returned {len(results)} results for {len(texts)} texts")
        if self._on_batch is not None:
            self._on_batch(len(texts), time.perf_counter() - started)
        return results

    async def _next_job(self, timeout: Optional[float]) -> Optional[_Job] | bool:
        """The next queued request; False on timeout; None when stop() was called."""
        assert self._queue is not None
        try:  # what queued up during the last pass joins at once, whatever its deadline
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return False
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return False

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping or self._carry is not None:
            first = self._carry
            self._carry = None
            if first is None:
                job = await self._next_job(None)
                if job is None:
                    break
                first = job
            jobs, count = [first], len(first.texts)
            deadline = first.arrived + self.max_wait
            while count < self.max_batch_texts and not stopping:
                job = await self._next_job(max(0.0, deadline - time.monotonic()))
                if job is False:
                    break
                if job is None:
                    stopping = True
                    break
                if count + len(job.texts) > self.max_batch_texts:
                    self._carry = job  # keeps batches within max_batch_texts; it leads the next one
                    break
                jobs.append(job)
                count += len(job.texts)
            jobs = [j for j in jobs if not j.future.done()]  # a client that hung up is not computed for
            texts = [t for j in jobs for t in j.texts]
            self.waiting_texts -= count
            if not texts:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run, texts)
            except Exception as exc:  # the model failed: each request of this batch gets the error, the server lives
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            position = 0
            for j in jobs:
                if not j.future.done():
                    j.future.set_result(results[position: position + len(j.texts)])
                position += len(j.texts)


@dataclass(eq=False)  # one request is itself only: `in` and removal compare by identity
class _Prompts:
    generator: Any  # the model that was serving when the request came (a hot swap does not move it to another)
    prompts: list
    settings: dict[str, Any]
    key: tuple  # the model and the generation settings: only requests that write alike share a call
    future: asyncio.Future


class GenerationBatcher:
    """Concurrent generation requests share generate calls: while one call runs (it has all the threads), requests
    wait; the next call takes every waiting request of the same model and settings as the oldest (max_new_tokens,
    temperature, top_p, stop), up to `max_prompts` prompts, so that their prompts are written together in
    length-sorted batches (models.generation) instead of one request after another. Each request gets its own
    answers, in its order. `generator.generate(prompts, **settings) -> texts` runs off the event loop."""

    def __init__(self, max_prompts: int = 64) -> None:
        self.max_prompts = max_prompts
        self._waiting: list[_Prompts] = []
        self._turn = asyncio.Lock()
        self.calls = 0  # generate calls made

    async def generate(self, generator: Any, prompts: list, settings: dict[str, Any]) -> list[str]:
        key = (id(generator),) + tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in settings.items()))
        job = _Prompts(generator, prompts, settings, key, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        try:
            while not job.future.done():
                async with self._turn:
                    if not job.future.done():  # else: written in the call that just ended
                        await self._run_next(job)
        except asyncio.CancelledError:  # its client left while it waited: nothing is written for it
            self._waiting = [w for w in self._waiting if w is not job]
            raise
        return job.future.result()

    async def _run_next(self, job: _Prompts) -> None:
        """One call for the oldest waiting request like `job` and those that fit with it."""
        group, count = [], 0
        for waiting in self._waiting:
            if waiting.key == job.key and (not group or count + len(waiting.prompts) <= self.max_prompts):
                group.append(waiting)
                count += len(waiting.prompts)
        self._waiting = [w for w in self._waiting if w not in group]
        self.calls += 1
        call = asyncio.ensure_future(run_in_threadpool(job.generator.generate, [p for w in group for p in w.prompts],
                                                       **job.settings))
        left = False
        while not call.done():
            try:
                await asyncio.shield(call)
            except asyncio.CancelledError:  # this request's client left: the call goes on for the others (a thread
                left = True                 # cannot be stopped), and the next starts only once it has ended
            except Exception:
                pass
        error = call.exception()
        position = 0
        for w in group:  # a failure (a setting out of range) goes to every request of the call; the server lives
            if error is not None:
                w.future.set_exception(error)
            else:
                w.future.set_result(call.result()[position: position + len(w.prompts)])
            position += len(w.prompts)
        if left:
            raise asyncio.CancelledError
