"""What clients saw, what was done to the cluster, and what the target says happened: one JSONL file per run.

The model is Jepsen's. Every client request is an ``op`` recorded twice: an ``invoke`` when it is sent and
exactly one completion for the same ``process`` when its fate is known: ``ok`` (it happened), ``fail`` (it
definitely did not happen) or ``info`` (unknown: timeout, reset). Faults are ``start``/``end`` pairs sharing a
``fault_id``; a ``probe`` carries ground truth read from the target (the ledger); the first line is ``meta``.

The file is append-only and written line by line while the run goes, so a crash keeps the evidence. Loading
tolerates a torn last line. Nothing here interprets the history: that is the checkers' job.

The package: ``events`` (the JSON lines), ``ledger`` (the target's ground truth), ``views`` (requests and
fault windows), ``log`` (``History``), ``recorder`` (``Recorder``), and ``records``, the one serialisation
they share.
"""

from chaos.history.events import (
    BROKER_PROBE,
    COMPLETION_PHASES,
    EXECUTIONS_PROBE,
    LEDGER_PROBE,
    NOT_FOUND,
    SCHEMA_VERSION,
    SETTLED_PROBE,
    WORKER_LOG_PROBE,
    Event,
    Fault,
    FaultPhase,
    Meta,
    Note,
    Op,
    OpF,
    OpPhase,
    Probe,
    dumps_event,
    event_from_dict,
    event_to_dict,
)
from chaos.history.ledger import Execution, Ledger, LedgerTask
from chaos.history.log import History
from chaos.history.recorder import Recorder
from chaos.history.records import Record
from chaos.history.views import FaultWindow, OpPair

__all__ = [
    "BROKER_PROBE", "COMPLETION_PHASES", "EXECUTIONS_PROBE", "LEDGER_PROBE", "NOT_FOUND", "SCHEMA_VERSION",
    "SETTLED_PROBE", "WORKER_LOG_PROBE", "Event", "Execution", "Fault", "FaultPhase", "FaultWindow", "History",
    "Ledger", "LedgerTask", "Meta", "Note", "Op", "OpF", "OpPair", "OpPhase", "Probe", "Record", "Recorder", "dumps_event",
    "event_from_dict", "event_to_dict",
]
