"""The target table: every contract key is optional and defaults to Celery's behaviour; every mistake is one
sentence (BadArguments, exit 254), unknown keys with a did-you-mean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chaos.checkers import CheckConfig
from chaos.checkers.config import for_target
from chaos.errors import BadArguments
from chaos.scenarios import SCENARIOS, build, missing
from chaos.target import load_target, target_from_table

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {
    "api": "{python} -m uvicorn app:app --port {port}",
    "worker": "{python} -m celery -A app worker",
    "http": {"submit_path": "/tasks", "status_path": "/tasks/{task_id}"},
    "kinds": [{"name": "short", "body": {"n": 1}}],
}


def test_a_minimal_table_means_celerys_defaults(tmp_path):
    t = target_from_table(MINIMAL, tmp_path)
    assert t.name == tmp_path.name
    assert t.broker_outage == "fail-fast" and t.unknown_ids == "pending" and t.delivery == "exactly-once"
    assert t.http is not None
    assert t.http.cancel is None and t.http.health is None and t.http.idempotency_header is None
    assert t.http.mode_field is None and t.http.priority_field is None and t.http.task_id_field == "task_id"
    assert t.supports("cancel") and t.supports("fallback") and t.supports("idempotency")  # reasons, not None
    assert t.interpreter == sys.executable and t.workdir == tmp_path.resolve()


def test_checks_follow_the_declared_contract(tmp_path):
    bare = for_target(CheckConfig(), target_from_table(MINIMAL, tmp_path))
    assert set(bare.not_applicable) == {"revoked_ran", "fallback_parity"}
    assert bare.unknown_ids == "pending" and bare.answer_within_s == 2.0
    ref = for_target(CheckConfig(), load_target(ROOT / "pyproject.toml"))
    assert ref.not_applicable == {} and ref.unknown_ids == "not-found" and ref.broker_outage == "fallback"


def test_scenarios_that_need_an_undeclared_feature_are_not_applicable(tmp_path):
    t = target_from_table(MINIMAL, tmp_path)
    na = {name: missing(build(name, t), t) for name in SCENARIOS}
    assert na["durable-revoke"] == "the target declares no cancel"
    assert "fail-fast" in na["fallback-api-restart"]
    assert na["worker-sigkill"] is None
    plans = build("submit-status-cancel", t).plans
    assert all(p.cancel_after is None and p.idempotency_key is None for p in plans)


def test_a_profile_check_can_move_a_scenario_threshold(tmp_path):
    t = target_from_table(MINIMAL, tmp_path)
    assert build("concurrent-10", t).check.latency_p99_ms == 100.0
    assert build("concurrent-10", t, {"latency_p99_ms": 40.0}).check.latency_p99_ms == 40.0
    assert build("concurrent-10", t, {"latency_p99_ms": 500.0}).check.latency_p99_ms == 500.0


def test_statuses_map_the_apps_words_to_celery_states(tmp_path):
    t = target_from_table({**MINIMAL, "http": {**MINIMAL["http"], "statuses": {"SUCCESS": ["done"]}}}, tmp_path)
    assert t.http is not None
    assert t.http.canonical_status("done") == "SUCCESS" and t.http.canonical_status("PENDING") == "PENDING"


@pytest.mark.parametrize("change, words", [
    ({"workers": "two"}, "workers: input should be a valid integer"),
    ({"workers": 10000}, "less than or equal to 64"),
    ({"queues": 5}, "queues: input should be a list"),
    ({"env": "A=B"}, "env: input should be a table"),
    ({"cancel_path": "/x"}, "no longer read; write cancel = {"),
    ({"pythn": "x"}, "unknown key 'pythn' (did you mean 'python'?)"),
    ({"timing": {"quiesce": 3}}, "[tool.celery-chaos.target.timing]: unknown key 'quiesce' (did you mean 'quiesce_s'?)"),
    ({"http": {**MINIMAL["http"], "cancel_pth": "x"}}, "unknown key 'cancel_pth' (did you mean 'cancel'?)"),
    ({"kinds": [{"body": {}}]}, "kinds[0]]: missing required key 'name'"),
    ({"kinds": [{"name": "a", "bogus": 1}]}, "kinds[0] ('a')]: unknown key 'bogus'"),
    ({"kinds": []}, "kinds: list should have at least 1 item"),
    ({"delivery": "twice"}, "delivery: input should be 'exactly-once' or 'at-least-once'"),
    ({"api": None, "client": "http"}, "needs an api command"),
])
def test_every_mistake_is_one_sentence(tmp_path, change, words):
    table = {k: v for k, v in {**MINIMAL, **change}.items() if v is not None}  # None: leave the key out
    with pytest.raises(BadArguments) as err:
        target_from_table(table, tmp_path)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["[tool.celery-chaos\n", b"\xff\xfe", "[tool.celery-chaos]\ntarget = 5\n",
                                  "[tool.other]\n"])
def test_a_broken_pyproject_is_one_sentence_and_254(tmp_path, text):
    p = tmp_path / "pyproject.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    r = subprocess.run([sys.executable, "-m", "chaos.cli", "run", "list", "--project", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 254, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") <= 2
