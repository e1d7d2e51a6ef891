#!/usr/bin/env python3
"""Smoke client for a running data-sync deployment.

Checks: /health, submit demo file 1 and poll its status to a terminal state,
submit another task and cancel it (expects REVOKED).  Exit 0 on success,
1 on any failure, with a one-line reason (no tracebacks).

    python scripts/test_celery_task_status.py --url http://127.0.0.1:8001 --token dev-token
"""
from __future__ import annotations

import argparse
import sys
import time

import httpx

TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}


class SmokeFailure(Exception):
    pass


def _json(resp: httpx.Response, expect: tuple[int, ...], what: str) -> dict:
    if resp.status_code == 401:
        raise SmokeFailure(f"{what}: 401 Unauthorized - the token was rejected (check --token / API_TOKENS)")
    if resp.status_code not in expect:
        raise SmokeFailure(f"{what}: expected HTTP {'/'.join(map(str, expect))}, got {resp.status_code}: "
                           f"{resp.text[:300]}")
    try:
        return resp.json()
    except ValueError:
        raise SmokeFailure(f"{what}: response is not JSON: {resp.text[:200]!r}") from None


def run(url: str, token: str, file_id: int, timeout: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=5.0) as c:
        h = _json(c.get("/health"), (200,), "GET /health")
        print(f"[ok]   health: status={h.get('status')} redis={h.get('redis')} "
              f"workers={h.get('workers')} mode={h.get('mode')}")

        body = _json(c.post("/api/data-sync/sync-single-file", json={"file_id": file_id}), (202,),
                     f"submit file {file_id}")
        tid = body["celery_task_id"]
        print(f"[ok]   submitted file {file_id}: task {tid} status={body['status']} mode={body['mode']}")

        deadline, last = time.monotonic() + timeout, None
        while True:
            st = _json(c.get(f"/api/data-sync/task-status/{tid}"), (200,), "task status")
            if st["status"] != last:
                print(f"       status -> {st['status']} (attempts={st['attempts']}, mode={st['mode']})")
                last = st["status"]
            if st["status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise SmokeFailure(f"task {tid} still {st['status']} after {timeout:.0f}s")
            time.sleep(0.2)
        if st["status"] != "SUCCESS":
            raise SmokeFailure(f"task {tid} ended {st['status']}: {st.get('error')}")
        print(f"[ok]   task {tid} SUCCESS result={st.get('result')}")

        # cancel something long enough to still be running/queued: demo file 3 (100 rows) when present
        cancel_file = 3 if c.get("/api/files/3").status_code == 200 else file_id
        body = _json(c.post("/api/data-sync/sync-single-file", json={"file_id": cancel_file, "priority": 0}),
                     (202,), "submit task to cancel")
        tid2 = body["celery_task_id"]
        res = c.delete(f"/api/data-sync/cancel-task/{tid2}")
        if res.status_code == 409:
            print(f"[warn] task {tid2} finished before it could be cancelled ({res.json().get('detail')})")
        else:
            cancelled = _json(res, (200,), "cancel")
            if cancelled.get("status") != "REVOKED":
                raise SmokeFailure(f"cancel returned status {cancelled.get('status')}, expected REVOKED")
            st = _json(c.get(f"/api/data-sync/task-status/{tid2}"), (200,), "status after cancel")
            if st["status"] != "REVOKED":
                raise SmokeFailure(f"task {tid2} is {st['status']} after cancel, expected REVOKED")
            print(f"[ok]   task {tid2} cancelled -> REVOKED")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8001", help="API base URL")
    ap.add_argument("--token", default="dev-token", help="API bearer token")
    ap.add_argument("--file-id", type=int, default=1, help="file to sync (demo file 1 = 5 rows)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a terminal state")
    args = ap.parse_args(argv)
    try:
        run(args.url, args.token, args.file_id, args.timeout)
    except SmokeFailure as exc:
        print(f"[FAIL] {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"[FAIL] cannot reach {args.url}: {type(exc).__name__}: {exc or 'connection failed'}", file=sys.stderr)
        return 1
    except (KeyError, TypeError) as exc:
        print(f"[FAIL] unexpected response shape (missing {exc})", file=sys.stderr)
        return 1
    print("[PASS] data-sync smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
