"""The HTTP workload records the target's answer time on the wire, not its own queueing, and opens its
connections before the scenario's clock starts (a real HTTP server on loopback)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chaos.history import Recorder
from chaos.target import target_from_table
from chaos.workload import TaskPlan, Workload

ANSWER_S = 0.2


class _App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as an ASGI server does
    connections: set[int] = set()
    health_reads = 0

    def _reply(self, code: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).connections.add(self.client_address[1])
        time.sleep(ANSWER_S)
        self._reply(202, {"task_id": str(uuid.uuid4())})

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            type(self).health_reads += 1
            type(self).connections.add(self.client_address[1])
            self._reply(200, {"ok": True})
        else:
            self._reply(200, {"status": "SUCCESS"})

    def log_message(self, *_: object) -> None:
        pass


def test_latency_is_the_answer_on_the_wire_and_connections_are_open_before_the_clock(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = target_from_table({
            "api": "{python} -m app --port {port}", "worker": "{python} -m celery -A app worker",
            "http": {"submit_path": "/tasks", "status_path": "/tasks/{task_id}", "health": {"path": "/health"}},
            "kinds": [{"name": "short", "body": {"n": 1}}]}, tmp_path)
        rec = Recorder()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        wl = Workload(target, lambda: url, rec, concurrency=2, request_timeout=5.0)
        wl.quiesce_deadline = time.monotonic() + 10
        wl.run_sync([TaskPlan("short", at=0.0) for _ in range(6)])  # 3 rounds through 2 connections
        submits = [p for p in rec.history().pairs("submit")]
        assert len(submits) == 6 and all(p.phase == "ok" for p in submits)
        waited = sorted(p.completion.time - p.invoke.time for p in submits)
        answered = sorted(p.latency for p in submits)
        # the last two waited for a free connection for two answers, yet each was answered in about ANSWER_S
        assert waited[-1] >= 2.5 * ANSWER_S, waited
        assert all(ANSWER_S * 0.9 <= lat < ANSWER_S * 1.5 for lat in answered), answered
        # both connections were opened by health reads before the clock, and the submits reused them
        assert _App.health_reads == 2 and len(_App.connections) == 2, (_App.health_reads, _App.connections)
    finally:
        server.shutdown()
        server.server_close()
