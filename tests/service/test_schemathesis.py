"""A bounded schemathesis run over the service's own OpenAPI, against a real stack on 127.0.0.1.

Every operation of the running app's ``/openapi.json`` gets ``MAX_EXAMPLES`` positive and ``MAX_EXAMPLES``
negative examples (derandomized, no example database, no shrinking: the same requests every run), sent with
the workload's bearer token (the admin token for ``/internal/*``). Each response must pass schemathesis'
``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance``,
``response_schema_conformance`` and ``ignored_auth`` checks: no 5xx, every status declared, every body valid
against the declared schema, and auth enforced where it is declared.
"""
from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import pytest

from tests.service.conftest import ADMIN, TOKENS

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 20
CHECKS_BY_NAME = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                  "response_schema_conformance", "ignored_auth")


def _checks() -> list:
    import schemathesis.checks as checks
    return [getattr(checks, name) for name in CHECKS_BY_NAME]


class Tally:
    def __init__(self) -> None:
        self.examples: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []


def _fuzz(op, mode: GenerationMode, base: str, headers: dict[str, str], checks: list, tally: Tally) -> None:
    key = f"{op.label} [{mode.value}]"

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call(base_url=base, headers=headers, timeout=15)
        assert urlsplit(response.request.url).hostname == "127.0.0.1", response.request.url
        tally.examples[key] += 1
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks, headers=headers,
                                   transport_kwargs={"base_url": base, "headers": headers, "timeout": 15})
        except FailureGroup as group:  # collected, not raised: no shrinking, and the figures stay complete
            for f in group.exceptions:
                tally.failures.append(f"{key} {response.status_code}: {f.title}: {str(f.message)[:300]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (e.g. GET /health has no parameters)
        assert mode == GenerationMode.NEGATIVE and tally.examples[key] == 0, key


def test_openapi_conformance(stack):
    base = stack.url
    assert urlsplit(base).hostname == "127.0.0.1"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    checks, tally, operations = _checks(), Tally(), []
    for result in schema.get_all_operations():
        op = result.ok()
        operations.append(op.label)
        token = ADMIN if op.path.startswith("/internal/") else TOKENS["chaos"]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op, mode, base, {"Authorization": f"Bearer {token}"}, checks, tally)
    total = sum(tally.examples.values())
    summary = (f"schemathesis: {len(operations)} operations, {total} examples, {len(tally.failures)} failed checks; "
               f"statuses {dict(sorted(tally.statuses.items()))}")
    print(summary)
    assert len(operations) >= 8, operations
    assert all(tally.examples[f"{label} [positive]"] > 0 for label in operations), tally.examples
    assert not tally.failures, summary + "\n" + "\n".join(sorted(set(tally.failures)))
