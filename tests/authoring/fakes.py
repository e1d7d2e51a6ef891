"""A stack without processes, for testing the authoring API fast: a tiny HTTP task API in a thread and nodes
that only remember what was done to them. The session, the nemesis and the checkers run for real on top."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from chaos.target import Target, target_from_table

TABLE: dict[str, Any] = {
    "name": "fake",
    "api": "unused",
    "worker": "unused",
    "timing": {"quiesce_s": 2},
    "http": {"submit_path": "/tasks", "status_path": "/tasks/{task_id}", "status_field": "task_status"},
    "kinds": [
        {"name": "short", "body": {"type": 1}, "units": 1},
        {"name": "long", "body": {"type": 3}, "units": 3},
        {"name": "stuck", "body": {"type": 99}, "units": 1},  # never leaves PENDING
        {"name": "bad", "body": {"type": -1}, "expect": "FAILURE"},
    ],
}


def fake_target(root: Path | None = None, **over: Any) -> Target:
    return target_from_table({**TABLE, **over}, root or Path.cwd())


class FakeApi:
    """POST /tasks -> 201 {task_id}; GET /tasks/{id} -> {task_status}: SUCCESS ``type x 0.05`` s after the
    submit, FAILURE for a negative type, PENDING forever for type 99 and for ids nobody submitted."""

    def __init__(self) -> None:
        self.tasks: dict[str, tuple[int, float]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                tid = str(uuid.uuid4())
                api.tasks[tid] = (int(body.get("type", 1)), time.monotonic())
                self._reply(201, {"task_id": tid})

            def do_GET(self) -> None:  # noqa: N802
                tid = self.path.rsplit("/", 1)[-1]
                kind, at = api.tasks.get(tid, (99, 0.0))
                if kind < 0:
                    status = "FAILURE"
                elif kind == 99 or time.monotonic() - at < kind * 0.05:
                    status = "PENDING"
                else:
                    status = "SUCCESS"
                self._reply(200, {"task_id": tid, "task_status": status})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeNode:
    def __init__(self, name: str, role: str) -> None:
        self.name, self.role = name, role
        self.paused = False
        self.up = True
        self.done: list[str] = []

    def alive(self) -> bool:
        return self.up

    def kill(self, sig: int = 9) -> None:
        self.done.append(f"kill:{int(sig)}")
        self.up = False

    def start(self) -> None:
        self.done.append("start")
        self.up = True

    spawn = start

    def stop(self, graceful: bool = True, timeout: float | None = None) -> None:
        self.done.append("stop")
        self.up = False

    def restart(self, graceful: bool = True, timeout: float | None = None) -> None:
        self.done.append("restart")
        self.up = True

    def pause(self) -> None:
        self.done.append("pause")
        self.paused = True

    def resume(self) -> None:
        self.done.append("resume")
        self.paused = False

    def wait_exit(self, timeout: float) -> bool:
        return not self.up

    def child_pids(self) -> list[int]:
        return []

    def kill_child(self, sig: int = 9, pid: int | None = None) -> int | None:
        self.done.append("kill-child")
        return pid

    def logs(self) -> str:
        return ""


class FakeProxy:
    def __init__(self) -> None:
        self.toxics: list[tuple[str, str]] = []
        self.resets = 0

    def add_toxic(self, link: str, kind: str, **kw: Any) -> None:
        self.toxics.append((link, kw.get("name", kind)))

    def remove_toxic(self, link: str, name: str) -> None:
        self.toxics.remove((link, name))

    def disable(self, link: str) -> None:
        self.toxics.append((link, "down"))

    def enable(self, link: str) -> None:
        self.toxics.remove((link, "down"))

    def reset(self) -> None:
        self.resets += 1
        self.toxics.clear()


class FakeCluster:
    """What the session, the nemesis and the runner use of a ``Cluster``."""

    def __init__(self, target: Target | None = None, workers: int = 2) -> None:
        self.target = target or fake_target()
        self.api_server = FakeApi()
        self.backend = SimpleNamespace(name="fake")
        self.redis = FakeNode("redis", "redis")
        self.proxy_node = FakeNode("proxy", "proxy")
        self.proxy = FakeProxy()
        self.api = FakeNode("api", "api")
        self.workers = [FakeNode(f"worker-{i}", "worker") for i in range(workers)]
        self.resets = 0
        self.submitted: set[str] = set()

    @property
    def api_url(self) -> str:
        return self.api_server.url

    def nodes(self) -> list[FakeNode]:
        return [self.redis, self.proxy_node, self.api, *self.workers]

    def node(self, name: str) -> FakeNode:
        return next(n for n in self.nodes() if n.name == name)

    def heal(self) -> None:
        for n in self.nodes():
            n.paused, n.up = False, True

    def reset(self) -> None:
        self.resets += 1
        self.heal()

    def keep_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)

    def mark_worker_logs(self) -> None:
        pass

    def worker_logs_since_mark(self) -> dict[str, str]:
        return {w.name: "" for w in self.workers}

    def close(self) -> None:
        self.api_server.close()
