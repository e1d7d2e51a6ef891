"""Hypothesis settings for generated examples that run in real time against a real stack (``realtime``)."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

#: Hypothesis settings for examples that run in real time against a real stack: few examples, no deadline, no
#: example database (a stored example is a past run, not a reproducible input), no health checks (a
#: function-scoped ``chaos`` fixture is shared by the examples on purpose; the session resets the stack between
#: them), and no "explain" phase (it would re-run a failing example many times for real). Use it as a decorator
#: (``@realtime``), or load the profile: ``settings.load_profile("chaos")`` / ``--hypothesis-profile=chaos``.
realtime = settings(max_examples=3, deadline=None, derandomize=False, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True, report_multiple_bugs=False,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink))
settings.register_profile("chaos", realtime)


def in_hypothesis() -> bool:
    """Inside a Hypothesis test (``@given``), where a failing example may be asked for again while shrinking."""
    try:
        from hypothesis.control import currently_in_test_context
    except ImportError:  # pragma: no cover - older Hypothesis
        return False
    return bool(currently_in_test_context())
