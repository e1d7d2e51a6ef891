"""Group commit: the submits that arrive while one write runs go into the next write, together.

A submit's task row must be committed before the task is published (a worker that claims it finds the row), but
a transaction and a thread hop per submit made the ledger the submit path's bottleneck: 10 concurrent submits
queued behind one another on the process's write lock. Here the first submit starts a write at once (no added
wait when the API is idle); the ones arriving meanwhile are written by the next, in one transaction and one trip
to the writer thread. Each caller still gets its own answer (or its own exception) before it goes on.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")


class GroupCommit(Generic[A, R]):
    """``await submit(item)`` -> ``write_many([...])``'s answer for that item (an exception in the list is
    raised to its caller alone; one the whole call raises goes to every caller of that batch).

    ``write_now``, if given, is tried first on the event loop: it answers only when it can without waiting (a
    short write with no lock held elsewhere), else returns None, having written nothing, and the thread writes.
    Under a busy loop the thread's hop and its GIL hand-offs took several times the write itself."""

    def __init__(self, write_many: Callable[[Sequence[A]], Sequence[R | BaseException]], *,
                 write_now: Callable[[Sequence[A]], Sequence[R] | None] | None = None,
                 max_batch: int = 256, name: str = "group-commit") -> None:
        self.write_many = write_many
        self.write_now = write_now
        self.max_batch = max_batch
        self._pending: list[tuple[A, asyncio.Future[R]]] = []
        self._running = False
        self._drainer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.batches = self.items = 0  # written so far (the mean batch size says how much was grouped)

    async def submit(self, item: A) -> R:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, answer))
        if not self._running:
            self._running = True
            self._drainer = loop.create_task(self._drain())
        # a caller that goes away (client disconnect) cancels its answer, not its item: the write still lands
        return await answer

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                items = [item for item, _ in batch]
                try:
                    results: Sequence[Any] | None = self.write_now(items) if self.write_now is not None else None
                    if results is None:
                        results = await loop.run_in_executor(self._thread, self.write_many, items)
                    if len(results) != len(items):
                        raise RuntimeError(f"write_many answered {len(results)} of {len(items)} items")
                except asyncio.CancelledError:  # the loop is closing: the batch in the thread may still land
                    raise
                except Exception as exc:  # noqa: BLE001 - every caller of the batch hears of it
                    results = [exc] * len(items)
                self.batches += 1
                self.items += len(items)
                for (_, answer), result in zip(batch, results, strict=True):
                    if answer.done():
                        continue
                    if isinstance(result, BaseException):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
        finally:
            self._running = False
            for _, answer in self._pending:  # only left when cancelled: these were never written
                if not answer.done():
                    answer.set_exception(RuntimeError("the API shut down before the task was recorded"))
            self._pending = []

    async def close(self) -> None:
        """Let the writes under way finish, then stop the writer thread."""
        if self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)
        self._thread.shutdown(wait=True)
