"""celery-chaos worker probe: Celery's signals as JSON lines, written outside the broker.

This file runs inside the *target's* interpreter, which may not have celery-chaos installed and may pin any Celery
from 5.3 on, so it is one stdlib-only module written for Python 3.8+. The framework copies it, with a
``sitecustomize.py`` that imports it, into a directory it prepends to the worker's ``PYTHONPATH``; the worker's
command stays exactly as the user wrote it.

``install()`` does nothing unless ``CELERY_CHAOS_PROBE_DIR`` names the directory the records go to. It does not
import Celery: it waits for the app's own ``import celery.signals`` (a meta-path hook that runs once, right after
that module executes) and then connects its receivers (``weak=False``, one ``dispatch_uid`` each), so Celery's
import order (eventlet/gevent patching first) and the app are untouched. Every receiver catches everything: a
probe that fails writes nothing and never breaks the worker.

Each process appends to its own file, ``{node}-{pid}.jsonl``, opened lazily on its first record (a process that
never sees a signal leaves no file) and reopened after a fork (pool children get their own). Each record is one
``os.write`` on an ``O_APPEND`` descriptor: once the call returns the kernel has the bytes, so a SIGKILL right
after loses nothing. A record:

    {"v": 1, "event": "task_prerun", "t": <time.time()>, "seq": <per-process counter>, "pid": ..., "ppid": ...,
     "node": "worker-0", "hostname": "worker-0@host", "task_id": ..., "task": "app.add", "state": "STARTED",
     "exc": "ValueError", "retries": 0, "redelivered": false, ...}

(keys without a value are left out).
"""

import json
import os
import sys
import threading
import time

DIR_ENV = "CELERY_CHAOS_PROBE_DIR"  # where the records go; unset: the probe does nothing
NODE_ENV = "CELERY_CHAOS_PROBE_NODE"  # the framework's name for the worker (worker-0): names the files
FORMAT_VERSION = 1
UID_PREFIX = "celery-chaos-probe:"

# event -> the Celery state it means for the task (None: says nothing about the task's state)
EVENT_STATE = {
    "task_received": "RECEIVED",
    "task_prerun": "STARTED",
    "task_success": "SUCCESS",
    "task_failure": "FAILURE",
    "task_retry": "RETRY",
    "task_revoked": "REVOKED",
    "task_rejected": "REJECTED",
    "task_internal_error": "FAILURE",
}

_state = {"installed": False, "dir": None, "node": None, "pid": None, "fd": None, "seq": 0, "hostname": None, "connected": False}
# Reentrant: Celery sends worker_shutting_down from a signal handler, which may interrupt this very thread in emit.
_lock = threading.RLock()


# ------------------------------------------------------------------------------------------- writing


def _after_fork():
    global _lock
    _lock = threading.RLock()  # a lock held by another thread at fork time would never be released here
    fd, _state["fd"], _state["pid"], _state["seq"] = _state["fd"], None, None, 0
    if fd is not None:  # the parent's file: the child gets its own
        try:
            os.close(fd)
        except OSError:
            pass


def _safe_name(text):
    return "".join(c if (c.isalnum() or c in "-_.@") else "_" for c in str(text))[:100] or "proc"


def _fd():
    pid = os.getpid()
    if _state["fd"] is not None and _state["pid"] == pid:
        return _state["fd"]
    directory = _state["dir"]
    node = _state["node"] or os.uname().nodename
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{_safe_name(node)}-{pid}.jsonl")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    _state["fd"], _state["pid"], _state["seq"] = fd, pid, 0
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a reused pid's file ending in a torn line
            os.write(fd, b"\n")
    except OSError:
        pass
    return fd


def emit(event, **fields):
    """Append one record (never raises)."""
    try:
        with _lock:
            fd = _fd()
            _state["seq"] += 1
            rec = {"v": FORMAT_VERSION, "event": event, "t": time.time(), "seq": _state["seq"],
                   "pid": os.getpid(), "ppid": os.getppid(), "node": _state["node"]}
            if _state["hostname"] and fields.get("hostname") is None:
                rec["hostname"] = _state["hostname"]
            for k, v in fields.items():
                if v is not None:
                    rec[k] = v
            data = (json.dumps(rec, separators=(",", ":"), default=repr) + "\n").encode("utf-8", "replace")
            while data:
                n = os.write(fd, data)
                data = data[n:]
    except Exception:  # noqa: BLE001 - the probe never breaks the worker
        pass


# ------------------------------------------------------------------------------------------- reading Celery


def _get(obj, name):
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a property that raises
        return None


def _text(value):
    if value is None:
        return None
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises
        return f"<{type(value).__name__}>"


def _hostname(*objs):
    for obj in objs:
        if isinstance(obj, str):
            name = obj
        else:
            name = _get(obj, "hostname")
        if name and isinstance(name, str):
            _state["hostname"] = name
            return name
    return _state["hostname"]


def _request_fields(request):
    info = _get(request, "delivery_info")
    redelivered = None
    if isinstance(info, dict):
        redelivered = info.get("redelivered")
    retries = _get(request, "retries")
    return {
        "task_id": _text(_get(request, "id")),
        "retries": retries if isinstance(retries, int) else None,
        "redelivered": redelivered if isinstance(redelivered, bool) else None,
    }


def _exc_name(exc):
    if exc is None:
        return None
    cls = exc if isinstance(exc, type) else type(exc)
    return _text(_get(cls, "__name__"))


def _guard(fn):
    def receiver(sender=None, **kwargs):
        try:
            fn(sender, kwargs)
        except Exception:  # noqa: BLE001 - the probe never breaks the worker
            pass

    receiver.__name__ = "celery_chaos_" + fn.__name__.lstrip("_")
    return receiver


def _task_received(sender, kw):
    req = kw.get("request")
    f = _request_fields(req)
    emit("task_received", task=_text(_get(req, "name")), hostname=_hostname(req, sender), state="RECEIVED",
         eta=_text(_get(req, "eta")), **f)


def _task_prerun(sender, kw):
    task = kw.get("task") or sender
    req = _get(task, "request")
    f = _request_fields(req)
    f["task_id"] = _text(kw.get("task_id")) or f["task_id"]
    emit("task_prerun", task=_text(_get(task, "name")), hostname=_hostname(req), state="STARTED", **f)


def _task_postrun(sender, kw):
    task = kw.get("task") or sender
    req = _get(task, "request")
    f = _request_fields(req)
    f["task_id"] = _text(kw.get("task_id")) or f["task_id"]
    emit("task_postrun", task=_text(_get(task, "name")), hostname=_hostname(req), state=_text(kw.get("state")),
         **f)


def _task_success(sender, kw):
    req = _get(sender, "request")
    emit("task_success", task=_text(_get(sender, "name")), hostname=_hostname(req), state="SUCCESS",
         **_request_fields(req))


def _failed(event, req, sender, kw):
    f = _request_fields(req)
    f["task_id"] = _text(kw.get("task_id")) or f["task_id"]
    exc = kw.get("exception")
    emit(event, task=_text(_get(sender, "name")), hostname=_hostname(req), state="FAILURE",
         exc=_exc_name(exc), error=_text(exc)[:500] if exc is not None else None, **f)


def _task_failure(sender, kw):
    _failed("task_failure", _get(sender, "request"), sender, kw)


def _task_internal_error(sender, kw):
    _failed("task_internal_error", kw.get("request") or _get(sender, "request"), sender, kw)


def _task_retry(sender, kw):
    req = kw.get("request")
    reason = kw.get("reason")
    cause = _get(reason, "exc") if reason is not None else None  # celery.exceptions.Retry(exc=...)
    einfo = kw.get("einfo")
    emit("task_retry", task=_text(_get(sender, "name")), hostname=_hostname(req), state="RETRY",
         exc=_exc_name(cause if cause is not None else (_get(einfo, "type") or reason)),
         error=_text(reason)[:500] if reason is not None else None, **_request_fields(req))


def _task_revoked(sender, kw):
    req = kw.get("request")
    terminated = kw.get("terminated")
    expired = kw.get("expired")
    signum = kw.get("signum")
    emit("task_revoked", task=_text(_get(sender, "name")), hostname=_hostname(req), state="REVOKED",
         terminated=bool(terminated) if terminated is not None else None,
         expired=bool(expired) if expired is not None else None,
         signum=_text(signum), **_request_fields(req))


def _message_fields(message):
    headers = _get(message, "headers")
    if not isinstance(headers, dict):
        return None, None
    return _text(headers.get("id")), _text(headers.get("task"))


def _task_rejected(sender, kw):
    task_id, name = _message_fields(kw.get("message"))
    emit("task_rejected", task_id=task_id, task=name, hostname=_hostname(sender), state="REJECTED",
         exc=_exc_name(kw.get("exc")))


def _task_unknown(sender, kw):
    task_id, name = _message_fields(kw.get("message"))
    emit("task_unknown", task_id=_text(kw.get("id")) or task_id, task=_text(kw.get("name")) or name,
         hostname=_hostname(sender), exc=_exc_name(kw.get("exc")))


def _worker_init(sender, kw):
    emit("worker_init", hostname=_hostname(sender))


# The delivery settings that decide where a task can be after a fault (None: Celery's default is in force).
SETTINGS = ("task_acks_late", "task_reject_on_worker_lost", "worker_prefetch_multiplier", "broker_connection_retry")


def _settings(sender):
    """The worker's own delivery settings, as its app resolved them (the visibility timeout from the transport
    options: kombu's default of one hour when the app sets none)."""
    conf = _get(_get(sender, "app"), "conf")
    if conf is None:
        return None
    try:
        out = {key: conf.get(key) for key in SETTINGS}
        options = conf.get("broker_transport_options") or {}
        out["visibility_timeout"] = options.get("visibility_timeout")
    except Exception:  # noqa: BLE001 - an app with an odd conf object
        return None
    return {k: v for k, v in out.items() if isinstance(v, (bool, int, float, str))}


def _worker_ready(sender, kw):
    emit("worker_ready", hostname=_hostname(sender), settings=_settings(sender))


def _worker_shutting_down(sender, kw):
    emit("worker_shutting_down", hostname=_hostname(sender), how=_text(kw.get("how")), sig=_text(kw.get("sig")),
         exitcode=_text(kw.get("exitcode")))


def _worker_shutdown(sender, kw):
    emit("worker_shutdown", hostname=_hostname(sender))


def _worker_process_init(sender, kw):
    emit("worker_process_init", hostname=_hostname(sender))


def _worker_process_shutdown(sender, kw):
    pid = kw.get("pid")
    emit("worker_process_shutdown", hostname=_hostname(sender), child_pid=pid if isinstance(pid, int) else None,
         exitcode=_text(kw.get("exitcode")))


RECEIVERS = {
    "task_received": _task_received,
    "task_prerun": _task_prerun,
    "task_postrun": _task_postrun,
    "task_success": _task_success,
    "task_failure": _task_failure,
    "task_internal_error": _task_internal_error,
    "task_retry": _task_retry,
    "task_revoked": _task_revoked,
    "task_rejected": _task_rejected,
    "task_unknown": _task_unknown,
    "worker_init": _worker_init,
    "worker_ready": _worker_ready,
    "worker_shutting_down": _worker_shutting_down,
    "worker_shutdown": _worker_shutdown,
    "worker_process_init": _worker_process_init,
    "worker_process_shutdown": _worker_process_shutdown,
}


def connect(signals_module):
    """Connect every receiver to the signals ``celery.signals`` has (older Celery may lack some)."""
    if _state["connected"]:
        return
    _state["connected"] = True
    for name, fn in RECEIVERS.items():
        try:
            signal = getattr(signals_module, name, None)
            if signal is not None:
                signal.connect(_guard(fn), weak=False, dispatch_uid=UID_PREFIX + name)
        except Exception:  # noqa: BLE001
            pass


# ------------------------------------------------------------------------------------------- waiting for Celery


class _Loader:
    """Runs the real loader of ``celery.signals``, then connects; everything else is the real loader's."""

    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        try:
            self._loader.exec_module(module)
        finally:
            self._finder.remove()
        try:
            connect(module)
        except Exception:  # noqa: BLE001
            pass


class _Finder:
    """A meta-path finder that only ever answers for ``celery.signals``, by asking the finders after it."""

    target = "celery.signals"

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.target:
            return None
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return None  # the normal machinery does what it would have done
            spec.loader = _Loader(spec.loader, self)
            return spec
        except Exception:  # noqa: BLE001 - let the normal import run (and report its own errors)
            return None

    def invalidate_caches(self):
        pass

    def remove(self):
        try:
            while self in sys.meta_path:
                sys.meta_path.remove(self)
        except Exception:  # noqa: BLE001
            pass


def install(environ=None):
    """Start recording if ``CELERY_CHAOS_PROBE_DIR`` is set; True when the probe is (or will be) connected."""
    try:
        env = os.environ if environ is None else environ
        directory = env.get(DIR_ENV)
        if not directory:
            return False
        if _state["installed"]:
            return True
        _state["installed"] = True
        _state["dir"] = directory
        _state["node"] = env.get(NODE_ENV) or None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork)
        signals = sys.modules.get("celery.signals")
        if signals is not None:
            connect(signals)
        else:
            sys.meta_path.insert(0, _Finder())
        return True
    except Exception:  # noqa: BLE001
        return False
