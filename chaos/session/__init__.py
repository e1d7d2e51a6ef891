"""Write your own chaos tests: ``ChaosSession``, one object over a running cluster for submits, faults, waits and
the verdict (``chaos.session.session``).

The package: ``session`` (the session), ``verdict`` (``ChaosVerdict``), ``faults`` (``FaultHandle``,
``ScheduledFault``), ``client_loop`` (the workload's client held open in a thread), ``replay`` (replay commands
and names) and ``realtime`` (Hypothesis settings for real-time examples). This module re-exports them.
"""

from __future__ import annotations

from chaos.session.faults import FaultHandle, ScheduledFault
from chaos.session.realtime import realtime
from chaos.session.replay import replay_command, safe_name
from chaos.session.session import LINKS, ChaosSession
from chaos.session.verdict import MAX_LISTED, ChaosVerdict

__all__ = ["LINKS", "MAX_LISTED", "ChaosSession", "ChaosVerdict", "FaultHandle", "ScheduledFault", "realtime",
           "replay_command", "safe_name"]
