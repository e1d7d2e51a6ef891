"""HTTP contract on a real stack (Redis + worker + uvicorn): success and error paths."""
from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.service.conftest import ADMIN, ROOT, TOKENS

pytestmark = pytest.mark.slow


def test_health(stack):
    with httpx.Client(base_url=stack.url) as c:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            r = c.get("/health")
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200
            assert r.json() == {"status": "ok", "redis": "up", "workers": 1, "mode": "celery"}
    assert min(times) < 0.3 and max(times) < 1.0, times


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/files/1"), ("POST", "/api/files"), ("POST", "/api/data-sync/sync-single-file"),
    ("GET", "/api/data-sync/task-status/x"), ("DELETE", "/api/data-sync/cancel-task/x"),
    ("GET", "/api/data-sync/tasks"),
])
@pytest.mark.parametrize("auth", [None, "Bearer nope", "Basic dG9rLWFsaWNlOg==", "Bearer", "tok-alice"])
def test_auth_required(stack, method, path, auth):
    headers = {"Authorization": auth} if auth else {}
    r = httpx.request(method, stack.url + path, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "detail" in r.json()


def _raw(port: int, head: bytes, body: bytes = b"", wait: float = 5.0) -> bytes:
    """Send a request head (and maybe part of a body) on a bare socket; return what the server answers
    before it closes the connection or ``wait`` seconds pass (b"" if nothing)."""
    out, deadline = b"", time.monotonic() + wait
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(head + body)
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
    return out


def _head(path: str, length: int, token: str | None, ctype: str = "application/json") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


@pytest.mark.parametrize("path,ctype", [("/api/files", "multipart/form-data; boundary=b"),
                                        ("/api/data-sync/sync-single-file", "application/json")])
@pytest.mark.parametrize("token", [None, "nope"])
def test_auth_is_decided_before_the_body_is_read(stack, path, ctype, token):
    """The server answers 401 to the request head alone: it never waited for (or read) the 50 MB it was
    promised, so it can neither 413 nor 422 such a request."""
    t0 = time.perf_counter()
    answer = _raw(stack.api_port, _head(path, 50_000_000, token, ctype), b"--b\r\n")
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert time.perf_counter() - t0 < 2.0
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"www-authenticate: bearer" in head.lower()
    assert json.loads(body)["detail"] in ("missing bearer token", "invalid bearer token")


def test_a_valid_token_waits_for_the_body(stack):
    """The control for the test above: with a valid token the same technique gets no answer until the body
    arrives (the server does read it), then a normal 202; a declared body above the limit is a 413 at once."""
    body = b'{"file_id": 1}'
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=0.5) as s:
        s.sendall(_head("/api/data-sync/sync-single-file", len(body), TOKENS["chaos"]))
        with pytest.raises(TimeoutError):
            s.recv(65536)
        s.settimeout(10)
        s.sendall(body)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 202 "), answer
    for path, ctype, length in (("/api/data-sync/sync-single-file", "application/json", 1_000_000),
                                ("/api/files", "multipart/form-data; boundary=b", 50_000_000)):
        answer = _raw(stack.api_port, _head(path, length, TOKENS["chaos"], ctype))
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert "larger than" in json.loads(answer.partition(b"\r\n\r\n")[2])["detail"]


def test_bad_token_beats_a_large_or_bad_body(stack):
    big = b"id,v\n" + b"1,abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz\n" * 220_000  # > 10 MiB
    for headers in ({}, {"Authorization": "Bearer nope"}):
        t0 = time.perf_counter()
        r = httpx.post(stack.url + "/api/files", files={"file": ("big.csv", big, "text/csv")}, headers=headers,
                       timeout=30)
        assert r.status_code == 401 and time.perf_counter() - t0 < 5, r.text
        r = httpx.post(stack.url + "/api/data-sync/sync-single-file", content=b"{not json", headers={
            **headers, "content-type": "application/json"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        r = httpx.post(stack.url + "/api/files", content=b"\xff" * 100, headers={
            **headers, "content-type": "multipart/form-data; boundary=zz"})
        assert r.status_code == 401, r.text
    with stack.client("chaos") as c:  # with a valid token the same bodies get their own verdicts
        assert c.post("/api/files", files={"file": ("big.csv", big, "text/csv")}).status_code == 413
        r = c.post("/api/data-sync/sync-single-file", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422


def test_demo_seed_files(stack):
    with stack.client() as c:
        for fid, rows in {1: 5, 2: 25, 3: 100, 4: 8}.items():
            r = c.get(f"/api/files/{fid}")
            assert r.status_code == 200
            body = r.json()
            assert body["file_id"] == fid and body["rows"] == rows and body["name"] and body["created_at"] > 0
        assert c.get("/api/files/999999").status_code == 404
        assert c.get("/api/files/abc").status_code == 422
        assert c.get("/api/files/0").status_code == 404
    p = subprocess.run([sys.executable, "-m", "service.seed"], env=stack.env, cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "already present" in p.stdout, p.stdout + p.stderr


def test_upload(stack):
    with stack.client() as c:
        r = c.post("/api/files", files={"file": ("a.csv", b"id,v\n1,a\n2,b\n", "text/csv")})
        assert r.status_code == 201
        fid = r.json()["file_id"]
        assert r.json()["rows"] == 2
        assert c.get(f"/api/files/{fid}").json()["name"] == "a.csv"
        for bad in (b"", b"id,v\n", b"id,v\n1\n", b"\xff\xfe\xfa", b"a,a\n1,2\n"):
            r = c.post("/api/files", files={"file": ("b.csv", bad, "text/csv")})
            assert r.status_code == 422, (bad, r.text)
            assert isinstance(r.json()["detail"], str)
        assert c.post("/api/files").status_code == 422
        assert c.post("/api/files", data={"other": "x"}).status_code == 422
        assert c.post("/api/files", content=b"id,v\n1,2\n", headers={"content-type": "text/csv"}).status_code == 422


def test_submit_status_success(stack):
    with stack.client() as c:
        body = stack.submit(c, 1)
        assert body["status"] == "PENDING" and body["mode"] == "celery" and body["celery_task_id"]
        st = stack.wait_status(c, body["celery_task_id"])
        assert st["status"] == "SUCCESS", st
        assert st["file_id"] == 1 and st["priority"] == 5 and st["mode"] == "celery" and st["attempts"] == 1
        assert st["result"] == {"rows_synced": 5, "file_id": 1} and st["error"] is None
        assert st["updated_at"] >= st["created_at"] > 0
        t = stack.ledger_task(body["celery_task_id"])
        assert t["effects"] == t["expected_effects"] == 5
        assert [e["outcome"] for e in t["executions"]] == ["success"]


def test_poison_file_fails_deterministically(stack):
    with stack.client() as c:
        tid = stack.submit(c, 4)["celery_task_id"]
        st = stack.wait_status(c, tid)
        assert st["status"] == "FAILURE" and "row 4 is poison" in st["error"] and st["attempts"] == 1
        time.sleep(1.5)  # several sweeps: never retried
        assert c.get(f"/api/data-sync/task-status/{tid}").json()["attempts"] == 1
        t = stack.ledger_task(tid)
        assert t["effects"] == 0 and [e["outcome"] for e in t["executions"]] == ["failure"]


@pytest.mark.parametrize("body", [
    {}, {"file_id": "1"}, {"file_id": 1, "priority": 10}, {"file_id": 1, "priority": -1}, {"file_id": None},
    {"file_id": 1.5}, {"file_id": True}, {"file_id": 1, "extra": 1}, [1], "x", {"file_id": 0},
])
def test_submit_bad_body(stack, body):
    with stack.client() as c:
        r = c.post("/api/data-sync/sync-single-file", json=body)
        assert r.status_code == 422, r.text
        assert "detail" in r.json()


def test_submit_errors(stack):
    with stack.client() as c:
        r = c.post("/api/data-sync/sync-single-file", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        r = c.post("/api/data-sync/sync-single-file", json={"file_id": 424242})
        assert r.status_code == 404 and r.json()["detail"] == "file not found"
        r = c.post("/api/data-sync/sync-single-file", json={"file_id": 1}, headers={"Idempotency-Key": "x" * 300})
        assert r.status_code == 422


def test_status_unknown_is_404(stack):
    with stack.client() as c:
        for tid in ("nope", "00000000-0000-0000-0000-000000000000", "x" * 500):
            r = c.get(f"/api/data-sync/task-status/{tid}")
            assert r.status_code == 404 and r.json()["detail"]
            assert c.delete(f"/api/data-sync/cancel-task/{tid}").status_code == 404


def test_caller_isolation(stack):
    with stack.client("alice") as a, stack.client("bob") as b:
        tid = stack.submit(a, 1)["celery_task_id"]
        assert b.get(f"/api/data-sync/task-status/{tid}").status_code == 404
        assert b.delete(f"/api/data-sync/cancel-task/{tid}").status_code == 404
        assert all(t["celery_task_id"] != tid for t in b.get("/api/data-sync/tasks").json()["tasks"])
        assert any(t["celery_task_id"] == tid for t in a.get("/api/data-sync/tasks?limit=500").json()["tasks"])
        stack.wait_status(a, tid)


def test_uploads_are_caller_scoped(stack):
    """A file belongs to the caller that uploaded it; to anyone else it does not exist (the same 404 body as
    an id nobody uploaded). Checked with the reference target's own two tokens."""
    with stack.client("chaos") as mine, stack.client("other") as theirs:
        fid = stack.upload(mine, 3, name="mine.csv")
        assert mine.get(f"/api/files/{fid}").json()["name"] == "mine.csv"
        missing_read = theirs.get("/api/files/999999999")
        missing_submit = theirs.post("/api/data-sync/sync-single-file", json={"file_id": 999999999})
        r = theirs.get(f"/api/files/{fid}")
        assert (r.status_code, r.json()) == (missing_read.status_code, missing_read.json()) == (
            404, {"detail": "file not found"})
        r = theirs.post("/api/data-sync/sync-single-file", json={"file_id": fid})
        assert (r.status_code, r.json()) == (missing_submit.status_code, missing_submit.json())
        r = theirs.post("/api/data-sync/sync-single-file", json={"file_id": fid}, headers={"Idempotency-Key": "x"})
        assert r.status_code == 404
        tid = stack.submit(mine, fid)["celery_task_id"]
        st = stack.wait_status(mine, tid)
        assert st["status"] == "SUCCESS" and st["result"] == {"rows_synced": 3, "file_id": fid}
        theirs_fid = stack.upload(theirs, 2)
        assert mine.get(f"/api/files/{theirs_fid}").status_code == 404
        assert theirs.get(f"/api/files/{theirs_fid}").status_code == 200


def test_seeded_files_are_shared(stack):
    """Demo files 1-4 (the target's kinds small/medium/large/poison) are shared seeds: the workload's caller
    ("chaos-token") and every other caller can read and sync them."""
    for caller in ("chaos", "other", "alice"):
        with stack.client(caller) as c:
            assert [c.get(f"/api/files/{fid}").json()["rows"] for fid in (1, 2, 3, 4)] == [5, 25, 100, 8]
    with stack.client("chaos") as c, stack.client("other") as o:
        small, poison, theirs = stack.submit(c, 1), stack.submit(c, 4), stack.submit(o, 1)
        assert stack.wait_status(c, small["celery_task_id"])["status"] == "SUCCESS"
        assert stack.wait_status(c, poison["celery_task_id"])["status"] == "FAILURE"
        assert stack.wait_status(o, theirs["celery_task_id"])["status"] == "SUCCESS"


def test_cancel_semantics(stack):
    with stack.client() as c:
        tid = stack.submit(c, 1)["celery_task_id"]
        assert stack.wait_status(c, tid)["status"] == "SUCCESS"
        r = c.delete(f"/api/data-sync/cancel-task/{tid}")
        assert r.status_code == 409 and "SUCCESS" in r.json()["detail"]
        tid = stack.submit(c, 4)["celery_task_id"]
        stack.wait_status(c, tid)
        assert c.delete(f"/api/data-sync/cancel-task/{tid}").status_code == 409


def test_revoke_running_task(stack):
    with stack.client() as c:
        fid = stack.upload(c, 300)  # ~3 s of work
        tid = stack.submit(c, fid)["celery_task_id"]
        stack.wait_status(c, tid, "STARTED", timeout=10)
        time.sleep(0.3)
        r = c.delete(f"/api/data-sync/cancel-task/{tid}")
        assert r.status_code == 200 and r.json() == {"celery_task_id": tid, "status": "REVOKED"}
        assert c.delete(f"/api/data-sync/cancel-task/{tid}").json()["status"] == "REVOKED"  # idempotent
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            t = stack.ledger_task(tid)
            if t["executions"] and t["executions"][-1]["outcome"]:
                break
            time.sleep(0.1)
        assert t["state"] == "REVOKED" and t["effects"] == 0 and t["revoked_at"]
        assert [e["outcome"] for e in t["executions"]] == ["revoked"]
        assert t["executions"][0]["finished_at"] - t["revoked_at"] < 1.0  # stopped at the next row
        time.sleep(2.5)  # beyond a lease: nothing restarts it
        t = stack.ledger_task(tid)
        assert t["state"] == "REVOKED" and len(t["executions"]) == 1 and t["effects"] == 0
        assert c.get(f"/api/data-sync/task-status/{tid}").json()["status"] == "REVOKED"


def test_idempotency_key(stack):
    with stack.client("alice") as a, stack.client("bob") as b:
        first = stack.submit(a, 1, headers={"Idempotency-Key": "k-1"})
        again = stack.submit(a, 1, headers={"Idempotency-Key": "k-1"})
        assert again["celery_task_id"] == first["celery_task_id"]
        other = stack.submit(b, 1, headers={"Idempotency-Key": "k-1"})
        assert other["celery_task_id"] != first["celery_task_id"]
        fresh = stack.submit(a, 1, headers={"Idempotency-Key": "k-2"})
        assert fresh["celery_task_id"] != first["celery_task_id"]

        def go(_):
            with stack.client("alice") as c:
                return stack.submit(c, 2, headers={"Idempotency-Key": "race"})["celery_task_id"]
        with cf.ThreadPoolExecutor(10) as ex:
            ids = set(ex.map(go, range(10)))
        assert len(ids) == 1
        tid = ids.pop()
        assert stack.wait_status(a, tid)["status"] == "SUCCESS"
        assert len(stack.ledger_task(tid)["executions"]) == 1


def test_idempotency_key_reused_with_another_body(stack):
    """Same caller + same key + a different request is a 409 with a reason; the original task is untouched
    (same status, no replay recorded, no new task). The same request still replays the original task."""
    with stack.client("chaos") as c:
        key = {"Idempotency-Key": f"reuse-{time.time()}"}
        first = stack.submit(c, 1, headers=key)
        done = stack.wait_status(c, first["celery_task_id"])
        total = c.get("/api/data-sync/tasks").json()["total"]
        cutoff = time.time()
        for body in ({"file_id": 2}, {"file_id": 1, "priority": 9}, {"file_id": 3, "priority": 0}):
            r = c.post("/api/data-sync/sync-single-file", json=body, headers=key)
            assert r.status_code == 409, r.text
            detail = r.json()["detail"]
            assert isinstance(detail, str) and "Idempotency-Key" in detail and "different request" in detail
        assert c.get(f"/api/data-sync/task-status/{first['celery_task_id']}").json() == done
        assert c.get("/api/data-sync/tasks").json()["total"] == total
        assert stack.ledger(since=cutoff)["tasks"] == []  # the refused reuses did not count as replays
        for body in ({"file_id": 1}, {"file_id": 1, "priority": 5}):  # the default priority is the same body
            r = c.post("/api/data-sync/sync-single-file", json=body, headers=key)
            assert r.status_code == 202, r.text
            assert r.json() == {"celery_task_id": first["celery_task_id"], "status": "SUCCESS", "mode": "celery"}
        assert c.get("/api/data-sync/tasks").json()["total"] == total
        pending = stack.submit(c, 3, headers={"Idempotency-Key": key["Idempotency-Key"] + "-b"})
        r = c.post("/api/data-sync/sync-single-file", json={"file_id": 2},
                   headers={"Idempotency-Key": key["Idempotency-Key"] + "-b"})
        assert r.status_code == 409
        st = stack.wait_status(c, pending["celery_task_id"])  # a conflict while it runs changes nothing either
        assert st["status"] == "SUCCESS" and st["file_id"] == 3 and st["attempts"] == 1


def test_list_tasks(stack):
    with stack.client("bob") as b:
        ids = [stack.submit(b, 1)["celery_task_id"] for _ in range(3)]
        for tid in ids:
            stack.wait_status(b, tid)
        r = b.get("/api/data-sync/tasks", params={"limit": 2})
        body = r.json()
        assert r.status_code == 200 and len(body["tasks"]) == 2 and body["total"] >= 3
        page2 = b.get("/api/data-sync/tasks", params={"limit": 2, "offset": 2}).json()["tasks"]
        assert not {t["celery_task_id"] for t in body["tasks"]} & {t["celery_task_id"] for t in page2}
        ok = b.get("/api/data-sync/tasks", params={"status": "SUCCESS", "limit": 500}).json()["tasks"]
        assert set(ids) <= {t["celery_task_id"] for t in ok} and all(t["status"] == "SUCCESS" for t in ok)
        for params in ({"status": "BOGUS"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "x"}):
            assert b.get("/api/data-sync/tasks", params=params).status_code == 422, params


def test_ledger_probe(stack):
    assert httpx.get(stack.url + "/internal/ledger").status_code == 401
    r = httpx.get(stack.url + "/internal/ledger", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = httpx.get(stack.url + "/internal/ledger", headers={"Authorization": f"Bearer {TOKENS['alice']}"})
    assert r.status_code == 401
    led = stack.ledger()
    assert led["service"] == "data-sync" and isinstance(led["generated_at"], float)
    assert set(led) == {"service", "generated_at", "tasks"}
    for t in led["tasks"]:
        assert set(t) == {"task_id", "state", "mode", "expected_effects", "effects", "revoked_at", "created_at",
                          "executions"}
        for e in t["executions"]:
            assert set(e) == {"attempt", "worker", "pid", "started_at", "finished_at", "outcome"}
        if t["state"] == "SUCCESS":
            assert t["effects"] == t["expected_effects"]
        else:
            assert t["effects"] == 0
    cutoff = time.time()
    assert stack.ledger(since=cutoff)["tasks"] == []
    with stack.client() as c:
        tid = stack.submit(c, 1)["celery_task_id"]
        assert [t["task_id"] for t in stack.ledger(since=cutoff)["tasks"]] == [tid]
        stack.wait_status(c, tid)
        replay_key = f"since-{cutoff}"
        old = stack.submit(c, 1, headers={"Idempotency-Key": replay_key})["celery_task_id"]
        stack.wait_status(c, old)
        later = time.time()
        assert stack.submit(c, 1, headers={"Idempotency-Key": replay_key})["celery_task_id"] == old
        assert [t["task_id"] for t in stack.ledger(since=later)["tasks"]] == [old]  # replays count as "seen"
    assert httpx.get(stack.url + "/internal/ledger?since=abc",
                     headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 422


def test_ledger_disabled_without_admin_token(stack):
    api = stack.extra_api("noadmin", {"ADMIN_TOKEN": ""})
    try:
        r = httpx.get(f"{api.endpoint.url}/internal/ledger", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 404
    finally:
        api.kill()


def test_100_concurrent_submits(stack):
    def go(i):
        with stack.client() as c:
            t0 = time.perf_counter()
            body = stack.submit(c, 1, priority=i % 10)
            return body["celery_task_id"], time.perf_counter() - t0
    with cf.ThreadPoolExecutor(100) as ex:
        results = list(ex.map(go, range(100)))
    ids = [tid for tid, _ in results]
    assert len(set(ids)) == 100
    with stack.client() as c:
        for tid in ids:
            assert stack.wait_status(c, tid, timeout=60)["status"] == "SUCCESS"
    by_id = {t["task_id"]: t for t in stack.ledger()["tasks"]}
    for tid in ids:
        assert by_id[tid]["effects"] == 5
        assert [e["outcome"] for e in by_id[tid]["executions"]].count("success") == 1


def test_smoke_script(stack):
    p = subprocess.run([sys.executable, "scripts/test_celery_task_status.py", "--url", stack.url, "--token",
                        TOKENS["alice"]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[PASS]" in p.stdout
    p = subprocess.run([sys.executable, "scripts/test_celery_task_status.py", "--url", stack.url, "--token", "bad"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "401" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "scripts/test_celery_task_status.py", "--url", "http://127.0.0.1:9",
                        "--token", "x"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "cannot reach" in p.stderr and "Traceback" not in p.stderr
