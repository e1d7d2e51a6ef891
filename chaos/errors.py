"""The errors the framework raises on purpose, each mapped to one exit code of the gate.

Jepsen's codes: 0 valid, 1 a violation, 2 undecided, 254 bad arguments. Anything raised as one of these is shown
to the user as one sentence, never as a traceback.
"""

from __future__ import annotations


class ChaosError(Exception):
    """Base class: a failure the framework understands and can explain in one sentence."""

    exit_code = 2


class BadArguments(ChaosError):
    """The user asked for something that cannot be (unknown scenario, bad option, bad target table)."""

    exit_code = 254


class PrerequisiteMissing(ChaosError):
    """Something the run needs is not installed or not running (redis-server, Docker, an image)."""

    exit_code = 2


class ClusterError(ChaosError):
    """The stack did not come up, or a node did not do what it was told in time."""

    exit_code = 2
