"""The Celery client: the workload for apps without an HTTP API (``client = "celery"``: Django/Flask + Celery,
plain Celery services), talking to the broker and the result backend the way the app's own producers do.

Operations, recorded in the same history with the same ops, phases and value shapes as the HTTP client, so every
checker works unchanged:

``submit``  ``send_task(kind.task, args=kind.args, kwargs=kind.kwargs, queue=kind.queue, priority=plan.priority)``
            ok ``{"task_id", "status": None, "mode": None}``; an exception is ``info`` (it may have been published)
``status``  ``AsyncResult(id).state`` from the result backend, Celery's canonical states (PENDING for an id
            nobody submitted, Celery's default, i.e. ``unknown_ids = "pending"``); ok ``{"status": STATE}``
            (plus ``"error"``, the exception, for FAILURE); an exception is ``info`` ``{"unparseable": False}``
``cancel``  ``app.control.revoke(id)``, a broadcast through the broker to the workers listening now; ok
            ``{"status": None}`` once published, an exception is ``info``

Every call runs in a worker thread of the client's own pool, bounded by the workload's ``request_timeout``
(``asyncio.wait_for``): a call that takes longer is ``info`` with the error ``timed out``.

**Where it connects.** The client is a producer, like an API, so it goes through the ``api_redis`` proxy link and
the network faults on that link hit it (``Cluster.producer_values``). Its URLs come from the target's env: the
``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` templates rendered with the API role's values (``{redis_url}``,
``{redis_host}``, ``{redis_port}``, ``{data_dir}``), each defaulting to ``"{redis_url}"`` when the env does not
set it. Nothing else of the target is read: the framework never imports the target's code.

**The app object.** A fresh ``celery.Celery`` app in the framework's process, configured only with those two URLs
(no Django fixup, no ``CELERY_CONFIG_MODULE``, and the broker/backend environment variables of the framework's
own process are ignored), short socket timeouts and a small publish retry policy (one retry) derived from the target's
``broker_outage_within_s``, so a fault can neither hang the client nor make it answer later than the target's own
promise. Reads retry once (they are idempotent). The client does not subscribe to result notifications (Celery's
Redis backend would, for ``.get()``): it only polls ``state``. The app's pools are closed at the end of each run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Celery
from celery.app.amqp import AMQP
from celery.app.backends import by_url
from celery.loaders.app import AppLoader
from kombu.pools import ProducerPool

from chaos.history import Recorder
from chaos.workload import BaseWorkload, TaskPlan

if TYPE_CHECKING:
    from chaos.cluster.cluster import Cluster
    from chaos.target import Target

T = TypeVar("T")
TIMED_OUT = "timed out"
BROKER_ENV, BACKEND_ENV = "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"


def client_urls(target: Target, values: dict[str, object]) -> tuple[str, str]:
    """(broker URL, result backend URL) of the client: the target's env templates, else ``{redis_url}`` each."""
    v: dict[str, object] = {"python": target.interpreter, "concurrency": target.worker_concurrency,
                            "host": "127.0.0.1", "port": 0, "name": "client", **values}
    broker = target.render(target.env.get(BROKER_ENV, "{redis_url}"), **v)
    backend = target.render(target.env.get(BACKEND_ENV, "{redis_url}"), **v)
    return broker, backend


class _OwnLoader(AppLoader):  # type: ignore[misc]
    """Celery's app loader without ``CELERY_CONFIG_MODULE``: no module of the environment's choosing is imported."""

    def read_configuration(self, env: str = "CELERY_CONFIG_MODULE") -> dict[str, Any]:
        return {}


class _OwnPools(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper with a producer pool of this app's own (Celery's comes from kombu's process-wide
    registry, keyed by URL, which another client of the same broker would share and closing would break)."""

    _producer_pool: Any  # Celery's attribute (None until made)

    @property
    def producer_pool(self) -> Any:
        if self._producer_pool is None:
            self._producer_pool = ProducerPool(self.app.pool, limit=self.app.pool.limit)
        return self._producer_pool


class _ClientApp(Celery):  # type: ignore[misc]
    """A Celery app whose broker and result backend are exactly the URLs given.

    Celery lets ``CELERY_BROKER_URL`` / ``CELERY_RESULT_BACKEND`` (and the read/write variants) of the process
    environment win over the configuration; the framework's environment is not the target's, so they are not
    read here. One result backend serves every client thread (Celery's is per thread unless declared safe).
    """

    _pool: Any  # Celery's attribute (None until made)

    def __init__(self, broker_url: str, backend_url: str, **kw: Any) -> None:
        super().__init__("celery-chaos-client", broker=broker_url, backend=backend_url, set_as_current=False,
                         loader=_OwnLoader, fixups=[], amqp=_OwnPools, **kw)
        self.chaos_broker_url = broker_url
        self.chaos_backend_url = backend_url
        self._chaos_backend: Any = None
        self._chaos_lock = threading.Lock()

    def connection_for_write(self, url: Any = None, **kw: Any) -> Any:
        return super().connection_for_write(url or self.chaos_broker_url, **kw)

    def connection_for_read(self, url: Any = None, **kw: Any) -> Any:
        return super().connection_for_read(url or self.chaos_broker_url, **kw)

    def connection(self, hostname: Any = None, *args: Any, **kw: Any) -> Any:
        return super().connection(hostname or self.chaos_broker_url, *args, **kw)

    broker_connection = connection

    @property
    def pool(self) -> Any:
        """The broker connection pool, this app's own (see ``_OwnPools``)."""
        with self._chaos_lock:
            if self._pool is None:
                self._pool = self.connection_for_write().Pool(limit=self.conf.broker_pool_limit)
            return self._pool

    @property
    def backend(self) -> Any:
        with self._chaos_lock:
            if self._chaos_backend is None:
                cls, url = by_url(self.chaos_backend_url, self.loader)
                backend = cls(app=self, url=url)
                # Celery's Redis backend subscribes to every sent task's result channel (for ``.get()``); the
                # client only polls ``state``, so it would leave those messages unread on an extra connection
                # that every fault breaks.
                backend.on_task_call = lambda producer, task_id: None
                self._chaos_backend = backend
            return self._chaos_backend


def make_app(broker_url: str, backend_url: str, *, socket_timeout: float = 0.5, pool_limit: int = 10) -> _ClientApp:
    """The client's Celery app: bounded sockets, one publish retry, one read retry, no result subscription."""
    app = _ClientApp(broker_url, backend_url)
    t = socket_timeout
    app.conf.update(
        broker_connection_timeout=t,
        broker_connection_retry=False,
        broker_connection_max_retries=1,
        broker_pool_limit=pool_limit,
        broker_transport_options={"socket_timeout": t, "socket_connect_timeout": t, "retry_on_timeout": False,
                                  "max_retries": 1, "interval_start": 0, "interval_step": 0.1,
                                  "interval_max": 0.1},
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1,
                                   "interval_max": 0.1},
        redis_socket_timeout=t,
        redis_socket_connect_timeout=t,
        redis_retry_on_timeout=False,
        result_backend_always_retry=True,  # reads are idempotent: one retry on a stale connection
        result_backend_max_retries=1,
        result_backend_base_sleep_between_retries_ms=10,
        result_backend_max_sleep_between_retries_ms=100,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    _ = app.amqp.producer_pool, app.backend  # made now, once, not raced for by the client's threads
    return app


def close_app(app: _ClientApp) -> None:
    """Close what the app opened: the producer and connection pools and the result backend's connections."""
    for pool in (getattr(app.amqp, "_producer_pool", None), getattr(app, "_pool", None)):
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.force_close_all()
    backend = getattr(app, "_chaos_backend", None)
    client = getattr(backend, "__dict__", {}).get("client")  # cached: only once a read created it
    if client is not None:
        with contextlib.suppress(Exception):
            client.connection_pool.disconnect()
    with contextlib.suppress(Exception):
        app.close()


def _error(exc: BaseException) -> str:
    """The exception as evidence, with its cause (Celery wraps a backend's error in ``BackendGetMetaError``)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text[:300]


class CeleryWorkload(BaseWorkload):
    """Submits with ``send_task``, reads ``AsyncResult.state``, cancels with ``control.revoke``."""

    def __init__(self, target: Target, broker_url: str, backend_url: str, recorder: Recorder, *,
                 concurrency: int = 10, request_timeout: float = 5.0, poll_interval: float = 0.25,
                 socket_timeout: float | None = None) -> None:
        super().__init__(target, recorder, concurrency=concurrency, request_timeout=request_timeout,
                         poll_interval=poll_interval)
        self.broker_url = broker_url
        self.backend_url = backend_url
        # A submit must be answered within the target's outage bound even when the broker hangs: a timed-out
        # attempt, its one retry and the reconnect fit in it.
        self.socket_timeout = socket_timeout or min(max(target.broker_outage_within_s / 4, 0.2), 2.0)
        self.app: _ClientApp | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def for_cluster(cls, cluster: Cluster, recorder: Recorder, **kw: Any) -> CeleryWorkload:
        broker, backend = client_urls(cluster.target, cluster.producer_values())
        return cls(cluster.target, broker, backend, recorder, **kw)

    # plumbing -------------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """The Celery app, the client's threads and the concurrency bound of one event loop."""
        self._sem = asyncio.Semaphore(self.concurrency)
        # twice the concurrency: a timed-out call keeps its thread until its socket timeout ends it
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2 * self.concurrency,
                                                           thread_name_prefix="celery-client")
        self.app = make_app(self.broker_url, self.backend_url, socket_timeout=self.socket_timeout,
                            pool_limit=max(10, self.concurrency))
        try:
            yield
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            close_app(self.app)
            self._pool = None
            self.app = None

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn`` in a client thread, within ``request_timeout`` (``TimeoutError`` past it)."""
        assert self._sem is not None and self._pool is not None
        async with self._sem:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._pool, functools.partial(fn, *args, **kw))
            return await asyncio.wait_for(fut, self.request_timeout)

    # operations -----------------------------------------------------------------------------------------------
    async def submit(self, process: int, plan: TaskPlan) -> str | None:
        assert self.app is not None
        kind = self.target.kind(plan.kind)
        assert kind.task is not None  # the target validates it for client = "celery"
        inv = self.recorder.invoke(process, "submit", value={
            "kind": plan.kind, "priority": plan.priority, "expect": kind.expect, "idempotency_key": None,
            "units": kind.units})
        options: dict[str, Any] = {"args": list(kind.args), "kwargs": dict(kind.kwargs), "priority": plan.priority}
        if kind.queue:
            options["queue"] = kind.queue
        try:
            result = await self._call(self.app.send_task, kind.task, **options)
        except (asyncio.TimeoutError, TimeoutError):
            self.recorder.info(inv, error=TIMED_OUT)
            return None
        except Exception as exc:  # noqa: BLE001 - a broker error: the message may have been published
            self.recorder.info(inv, error=_error(exc))
            return None
        task_id = str(result.id)
        self.recorder.ok(inv, task_id=task_id, value={"task_id": task_id, "status": None, "mode": None})
        self.acknowledged.setdefault(task_id, process)
        return task_id

    def _read(self, task_id: str) -> tuple[str, str | None]:
        """(state, the exception as text for FAILURE): one backend read (the result is cached once ready)."""
        assert self.app is not None
        r = self.app.AsyncResult(task_id)
        state = str(r.state)
        error = None
        if state == "FAILURE":
            error = f"{type(r.result).__name__}: {r.result}"[:300] if r.result is not None else None
        return state, error

    async def status(self, process: int, task_id: str, f: str = "status", probe: str | None = None) -> str | None:
        inv = self.recorder.invoke(process, f, task_id=task_id, value={"probe": probe} if probe else None)
        try:
            state, error = await self._call(self._read, task_id)
        except (asyncio.TimeoutError, TimeoutError):
            self.recorder.info(inv, value={"unparseable": False}, error=TIMED_OUT)
            return None
        except Exception as exc:  # noqa: BLE001 - the backend did not answer: the client learnt nothing
            self.recorder.info(inv, value={"unparseable": False}, error=_error(exc))
            return None
        self.recorder.ok(inv, value={"status": state, "error": error})
        self.last_status[task_id] = state
        return state

    async def cancel(self, process: int, task_id: str) -> bool:
        assert self.app is not None
        inv = self.recorder.invoke(process, "cancel", task_id=task_id)
        try:
            await self._call(self.app.control.revoke, task_id)
        except (asyncio.TimeoutError, TimeoutError):
            self.recorder.info(inv, error=TIMED_OUT)
            return False
        except Exception as exc:  # noqa: BLE001 - the broadcast may or may not have gone out
            self.recorder.info(inv, error=_error(exc))
            return False
        self.recorder.ok(inv, value={"status": None})
        return True
