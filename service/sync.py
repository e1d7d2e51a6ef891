"""One attempt of a sync task, shared by Celery workers and the API fallback.

Rows are processed in memory (``ROW_WORK_MS`` each, so faults can land
mid-task); the claim checks the ledger (and takes the lease) just before the
first row, then every ``CHECK_EVERY_S`` it is consulted again, so a cancel or
a lost lease stops the attempt within a tenth of a second.  Effects are only
written by the final fenced commit, hence a dying/revoked attempt commits
nothing.
"""
from __future__ import annotations

import logging
import threading
import time

from . import ledger
from .config import get_settings
from .files import PoisonRowError, iter_rows, process_row

log = logging.getLogger("service.sync")

# How often an attempt consults the ledger (cancelled? lease still ours?) after its claim: at most this often.
# Every row was the cost of a DB read per row; the final commit is fenced either way.
CHECK_EVERY_S = 0.1


def run_attempt(task_id: str, attempt: int, file_id: int, stop: threading.Event | None = None) -> str:
    """Run a claimed attempt to its end; returns the execution outcome."""
    s = get_settings()
    last_renew = time.monotonic()  # about when the lease was taken (the claim, just before this call)
    try:
        rows = iter_rows(file_id)
        done: list[tuple[int, str]] = []
        per_row = s.effects_mode == "per-row"
        last_check = last_renew  # the claim has just checked (and taken the lease): the next look in 0.1 s
        for row_no, data in rows:
            now = time.monotonic()
            renew = now - last_renew >= s.lease_seconds / 3
            if renew or now - last_check >= CHECK_EVERY_S:
                last_check = now
                state = ledger.check(task_id, attempt, renew)
                if renew:
                    last_renew = time.monotonic()
                if state != "ok":
                    ledger.record_outcome(task_id, attempt, state)
                    log.info("task %s attempt %s stopped at row %s: %s", task_id, attempt, row_no, state)
                    return state
            if stop is not None and stop.is_set():
                ledger.release_for_retry(task_id, attempt, "runner shut down mid-task; will be retried")
                return "failure"
            if s.row_work_ms:
                time.sleep(s.row_work_ms / 1000.0)
            try:
                done.append((row_no, process_row(row_no, data)))
            except PoisonRowError as exc:
                outcome = ledger.finish_failure(task_id, attempt, str(exc))
                log.warning("task %s FAILURE: %s", task_id, exc)
                return outcome
            if per_row:  # EFFECTS_MODE=per-row (canary): the effect is committed now, not with the state
                ledger.record_row_effect(task_id, attempt, file_id, *done[-1])
        outcome = ledger.finish_success(task_id, attempt, file_id, done)
        # a success at debug level: Celery logs every task's end already, and the ledger has the attempt and rows
        log.log(logging.DEBUG if outcome == "success" else logging.INFO, "task %s attempt %s finished: %s (%d rows)",
                task_id, attempt, outcome, len(done))
        return outcome
    except Exception as exc:  # infrastructure trouble (DB): give the task back, the sweeper re-dispatches
        log.exception("task %s attempt %s crashed; releasing for retry", task_id, attempt)
        try:
            ledger.release_for_retry(task_id, attempt, f"attempt {attempt} crashed: {exc!r}")
        except Exception:  # noqa: BLE001 - lease expiry will recover it
            log.exception("could not release task %s", task_id)
        return "failure"
