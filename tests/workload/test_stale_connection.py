"""A kept-alive connection the server closes under a request: the client lets idle connections go before a
server would, and a read sent on one the server had just closed is sent again on a new one; a submit is not
(it may have landed). A real TCP server on loopback plays the server that closes as the request arrives."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from chaos import http_client
from chaos.history import Recorder
from chaos.target import target_from_table
from chaos.workload import TaskPlan, Workload

from .wire_server import answer_json, read_request


class _ClosingServer:
    """HTTP/1.1 with keep-alive that answers the first request of each connection and closes the connection,
    unanswered, when a second one arrives on it: the race of a server's keep-alive timeout, made certain."""

    def __init__(self) -> None:
        self.connections = 0
        self.answered: list[str] = []
        self.dropped: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await read_request(reader)
                line = head.split(b"\r\n", 1)[0].decode()
                if served:
                    self.dropped.append(line)
                    return
                served += 1
                self.answered.append(line)
                await answer_json(writer, {"task_id": "t-1", "status": "SUCCESS", "ok": True})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _workload(tmp_path: Path, url: str, rec: Recorder) -> Workload:
    target = target_from_table({
        "api": "{python} -m app --port {port}", "worker": "{python} -m celery -A app worker",
        "http": {"submit_path": "/tasks", "status_path": "/tasks/{task_id}", "health": {"path": "/health"}},
        "kinds": [{"name": "short", "body": {"n": 1}}]}, tmp_path)
    wl = Workload(target, lambda: url, rec, concurrency=1, request_timeout=5.0)
    wl.quiesce_deadline = time.monotonic() + 10
    return wl


async def _after_warm_up(tmp_path: Path, op: str, idle_s: float = 0.0) -> tuple[_ClosingServer, Recorder]:
    app = _ClosingServer()
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    try:
        rec = Recorder()
        wl = _workload(tmp_path, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", rec)
        async with wl._session():
            await wl.warm_up(1)  # the connection's first request: it stays open, kept alive
            await asyncio.sleep(idle_s)
            if op == "status":
                await wl.status(0, "t-1")
            else:
                await wl.submit(0, TaskPlan("short"))
        return app, rec
    finally:
        server.close()
        await server.wait_closed()


def test_a_read_on_a_connection_the_server_closed_is_sent_again_on_a_new_one(tmp_path: Path) -> None:
    app, rec = asyncio.run(_after_warm_up(tmp_path, "status"))
    reads = rec.history().pairs("status")
    assert [p.phase for p in reads] == ["ok"] and reads[0].status == "SUCCESS", reads
    assert app.dropped == ["GET /tasks/t-1 HTTP/1.1"] and app.connections == 2, (app.dropped, app.connections)
    assert reads[0].latency is not None  # timed on the new connection


def test_a_submit_on_a_connection_the_server_closed_is_not_sent_again(tmp_path: Path) -> None:
    app, rec = asyncio.run(_after_warm_up(tmp_path, "submit"))
    submits = rec.history().pairs("submit")
    # the server may have acted on it before closing: its outcome is unknown, and sending it again could
    # create a second task
    assert [p.phase for p in submits] == ["info"], submits
    assert app.dropped == ["POST /tasks HTTP/1.1"] and app.connections == 1, (app.dropped, app.connections)


def test_an_idle_connection_is_let_go_before_a_server_would_close_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert http_client.KEEPALIVE_EXPIRY_S < 2.0  # under gunicorn's 2 s and uvicorn's 5 s
    monkeypatch.setattr(http_client, "KEEPALIVE_EXPIRY_S", 0.2)
    app, rec = asyncio.run(_after_warm_up(tmp_path, "submit", idle_s=0.5))
    assert [p.phase for p in rec.history().pairs("submit")] == ["ok"]
    assert app.dropped == [] and app.connections == 2, (app.dropped, app.connections)
