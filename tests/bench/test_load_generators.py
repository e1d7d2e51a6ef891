"""The submit bench's load generators against a real HTTP server on loopback: wrk's output is read right, and
the client-process fallback (machines without wrk) counts requests, failures and percentiles."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chaos.bench.submit import _processes, _wrk, parse_wrk
from chaos.errors import ChaosError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as both generators use it

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code = 401 if self.headers.get("Authorization") != "Bearer t" else 202
        body = b'{"task_id": "x"}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a generator closing its connections at its deadline is no error


@pytest.fixture()
def url() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/submit"
    server.shutdown()
    server.server_close()


def test_parse_wrk_reads_rate_percentiles_and_errors():
    out = """Running 8s test @ http://127.0.0.1:1/submit
  Latency Distribution
     50%  114.25ms
     90%  442.27ms
     99%    1.06s
  983 requests in 14.07s, 214.08KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:     69.88
"""
    got = parse_wrk(out)
    assert got == {"rps": 69.9, "p50_ms": 114.25, "p90_ms": 442.27, "p99_ms": 1060.0, "non_2xx": 7,
                   "socket_errors": 3}
    with pytest.raises(OSError):
        parse_wrk("wrk: connection refused")


def test_client_processes_count_answers_and_refusals(url: str):
    ok = _processes(url, {"a": 1}, {"Authorization": "Bearer t"}, connections=3, seconds=1.0, method="POST")
    assert ok["rps"] > 0 and ok["non_2xx"] == 0 and 0 < ok["p50_ms"] <= ok["p99_ms"]
    refused = _processes(url, {"a": 1}, {"Authorization": "Bearer wrong"}, connections=2, seconds=0.5,
                         method="POST")
    assert refused["rps"] == 0 and refused["non_2xx"] > 0


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/setup.sh installs it)")
def test_wrk_sends_the_body_and_headers(url: str, tmp_path: Path):
    ok = _wrk(url, {"a": 1}, {"Authorization": "Bearer t"}, 2, 1.0, "POST", tmp_path)
    assert ok["rps"] > 0 and ok["non_2xx"] == 0
    refused = _wrk(url, {"a": 1}, {"Authorization": "Bearer wrong"}, 2, 1.0, "POST", tmp_path)
    assert refused["non_2xx"] > 0


def test_the_steady_rate_leaves_out_the_start_and_the_stragglers():
    from chaos.bench.throughput import steady_rate

    # 100 tasks at 10 ms each, after a 2 s start; the last one a second late
    finishes = [2.0 + 0.01 * i for i in range(99)] + [4.0]
    assert abs(steady_rate(finishes) - 100.0) < 1.0
    assert abs(steady_rate([5.0, 1.0, 3.0]) - 0.5) < 1e-9  # unsorted, tiny: the whole span
    with pytest.raises(ChaosError):
        steady_rate([1.0, 2.0])


def test_the_steady_rate_counts_from_when_every_worker_is_ready():
    from chaos.bench.throughput import steady_rate

    # 50 tasks at 20 ms while the other workers start, then 150 at 5 ms once all are ready (t=1.0)
    finishes = [0.02 * i for i in range(1, 51)] + [1.0 + 0.005 * i for i in range(1, 151)]
    assert abs(steady_rate(finishes, after=1.0) - 200.0) < 2.0
    assert steady_rate(finishes) < 150.0  # the whole backlog: the start-up's slow part drags it down
    # too little left after the last worker is ready (under a fifth): the whole backlog counts
    assert steady_rate(finishes, after=1.65) == steady_rate(finishes)
