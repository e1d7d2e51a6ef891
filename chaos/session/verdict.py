"""``ChaosVerdict``: what the checkers said of one history, in the words a failing test shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chaos.checkers.compose import Verdict, applicable, reason
from chaos.history import History

MAX_LISTED = 20  # findings listed in an assertion message (the report keeps every one)


@dataclass
class ChaosVerdict:
    """What the checkers said of one history, in the words a failing test shows.

    ``ok`` is True only when every applicable checker passed and nothing (a heal, a probe) went wrong;
    ``findings`` are the plain-words messages of the checkers that did not pass; ``notes`` those of checkers
    that passed but report (duplicates of an at-least-once target); ``replay`` is the one command that replays
    the run (a scenario file for ``chaos run`` when a report directory is set), else how to re-run the test.
    """

    name: str
    result: Verdict
    replay: str
    errors: list[str] = field(default_factory=list)
    history: History | None = None
    history_path: Path | None = None
    duration: float = 0.0
    description: str = ""

    @property
    def valid(self) -> bool | str:
        """The merged validity: True, False or "unknown" (a checker could not decide)."""
        return self.result.valid

    @property
    def ok(self) -> bool:
        return self.result.valid is True and not self.errors

    @property
    def findings(self) -> list[str]:
        return [f"{f.checker}/{f.kind}: {f.message}" for f in self.result.findings
                if self.result.results[f.checker].valid is not True]

    @property
    def notes(self) -> list[str]:
        return [f"{f.checker}/{f.kind}: {f.message}" for f in self.result.findings
                if self.result.results[f.checker].valid is True]

    @property
    def undecided(self) -> list[str]:
        """Why applicable checkers could not decide (they make the verdict "unknown", not ok)."""
        return [f"{n} undecided: {why}" for n, r in self.result.results.items()
                if applicable(r) and (why := reason(r))]

    @property
    def exit_code(self) -> int:
        """The gate's convention: 0 pass, 1 a violation, 2 undecided."""
        if self.result.valid is False:
            return 1
        return 0 if self.ok else 2

    def message(self) -> str:
        word = {0: "PASS", 1: "FAIL", 2: "UNDECIDED"}[self.exit_code]
        found = self.findings
        lines = [f"chaos verdict for {self.name}: {word} ({len(found)} finding{'s' if len(found) != 1 else ''})"]
        lines += [f"  - {f}" for f in found[:MAX_LISTED]]
        if len(found) > MAX_LISTED:
            lines.append(f"  ... and {len(found) - MAX_LISTED} more (the history has them all)")
        lines += [f"  error: {e}" for e in self.errors]
        if self.result.valid is not True:
            lines += [f"  {u}" for u in self.undecided]
        if self.history_path is not None:
            lines.append(f"history: {self.history_path}")
        lines.append(f"replay: {self.replay}")
        return "\n".join(lines)

    __str__ = message

    def assert_ok(self) -> None:
        """Raise AssertionError listing the findings and the replay command unless the verdict is ok."""
        __tracebackhide__ = True  # pytest shows the test's line, not this one
        if not self.ok:
            raise AssertionError(self.message())
