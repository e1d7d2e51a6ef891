"""``Workload.submitted``: set once every plan's submit has been answered (or given up), never before. The runner
waits for it before its own health reads and settling looks, so a burst's latency is the target's alone. A real
HTTP server on loopback answers the submits late, on purpose."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from chaos.history import Recorder
from chaos.target import target_from_table
from chaos.workload import TaskPlan, Workload

from .wire_server import answer_json, read_request

SUBMIT_DELAY_S = 0.6


class _SlowSubmits:
    """Answers a POST after SUBMIT_DELAY_S with a task id, and every GET at once with SUCCESS."""

    def __init__(self) -> None:
        self.answered_at: list[float] = []
        self._ids = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await read_request(reader)
                if head.startswith(b"POST"):
                    await asyncio.sleep(SUBMIT_DELAY_S)
                    self._ids += 1
                    self.answered_at.append(time.monotonic())
                    await answer_json(writer, {"task_id": f"t-{self._ids}"})
                else:
                    await answer_json(writer, {"status": "SUCCESS"})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Server(threading.Thread):
    """The slow server on its own event loop, so the workload runs as the runner runs it (``run_sync``)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.app = _SlowSubmits()
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        async def main() -> None:
            self._stopping = asyncio.Event()
            server = await asyncio.start_server(self.app.handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopping.wait()
            server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in handlers:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> _Server:
        self.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(5)


def _workload(tmp_path: Path, url: str) -> Workload:
    target = target_from_table({
        "api": "{python} -m app --port {port}", "worker": "{python} -m celery -A app worker",
        "http": {"submit_path": "/tasks", "status_path": "/tasks/{task_id}"},
        "kinds": [{"name": "short", "body": {"n": 1}}]}, tmp_path)
    wl = Workload(target, lambda: url, Recorder(), concurrency=3, request_timeout=5.0, poll_interval=0.05)
    wl.quiesce_deadline = time.monotonic() + 10
    return wl


def test_submitted_is_set_once_every_submit_is_answered_and_not_before(tmp_path: Path) -> None:
    with _Server() as server:
        wl = _workload(tmp_path, f"http://127.0.0.1:{server.port}")
        run = threading.Thread(target=wl.run_sync, args=([TaskPlan("short") for _ in range(3)],), daemon=True)
        run.start()
        assert wl.started.wait(5)
        assert not wl.submitted.wait(SUBMIT_DELAY_S / 2), "set while the submits were still unanswered"
        assert wl.submitted.wait(5)
        seen_at = time.monotonic()
        assert len(server.app.answered_at) == 3 and max(server.app.answered_at) <= seen_at
        run.join(10)
        assert not run.is_alive()
    assert sorted(wl.acknowledged) == ["t-1", "t-2", "t-3"]


def test_submitted_is_set_when_the_target_cannot_be_reached_and_when_there_is_nothing_to_submit(
        tmp_path: Path) -> None:
    with _Server() as server:
        port = server.port
    wl = _workload(tmp_path, f"http://127.0.0.1:{port}")  # the server is gone: every submit is refused
    wl.run_sync([TaskPlan("short"), TaskPlan("short")])
    assert wl.submitted.is_set() and not wl.acknowledged
    empty = _workload(tmp_path, f"http://127.0.0.1:{port}")
    empty.run_sync([])
    assert empty.submitted.is_set()
