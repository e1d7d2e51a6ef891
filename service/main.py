"""ASGI entry point (``uvicorn service.main:app``): wiring and lifecycle.

Startup: validate config, create schema, seed demo data, warm the broker
connection, resume orphaned fallback tasks, start health refresher and
sweeper.  Shutdown: stop background loops, hand running fallback attempts
back (RETRY) so the next API resumes them immediately.
"""
from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .config import get_settings

log = logging.getLogger("service")


@asynccontextmanager
async def lifespan(app: FastAPI):
    from .api import create_many, create_many_now, warm_submit_path
    from .db import init_schema
    from .group_commit import GroupCommit
    from .health import HealthMonitor
    from .publish import FallbackRunner, Publisher
    from .seed import seed_demo
    from .sweeper import Sweeper

    s = get_settings()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="api-io"))
    await asyncio.to_thread(init_schema)
    if s.seed_demo:
        await asyncio.to_thread(seed_demo)
    publisher = Publisher()
    runner = FallbackRunner()
    health = HealthMonitor(publisher.breaker, on_redis_back=publisher.rewarm_in_background)
    publisher.health = health  # a late publish on a Redis that answers pings is the loop's lag, not an outage
    sweeper = Sweeper(publisher, runner)
    app.state.publisher, app.state.runner, app.state.health, app.state.sweeper = publisher, runner, health, sweeper
    app.state.submits = submits = GroupCommit(create_many, write_now=create_many_now, name="submit-rows")
    await health.refresh()
    await publisher.warm_up(connect=health.redis_up)
    warm_submit_path()  # the first submits after a (re)start pay no connection or message-template set-up
    # FALLBACK_STORE=memory (canary knob): another API's fallback tasks are not re-adopted on start
    resumed = await runner.resume_orphans() if s.fallback and s.fallback_store == "durable" else 0
    if resumed:
        log.warning("resumed %d orphaned fallback task(s)", resumed)
    health.start()
    sweeper.start()
    # What start-up built (Celery, kombu, SQLAlchemy, FastAPI and pydantic: the whole import graph) is never
    # garbage: frozen, a full collection scans only what requests leave. Unfrozen, the full collections that a
    # burst of submits triggers took 44-55 ms each, on the event loop: the submit path's p99.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        await sweeper.stop()
        await submits.close()
        await runner.shutdown()
        await health.stop()
        await publisher.close()


# FastAPI >= 0.16x asks OpenTelemetry on every request whether a provider is configured (environment lookups:
# 4% of a submit's time on the event loop). The service exports no telemetry: it says so once.
NO_TELEMETRY = ({"telemetry": {"tracing": False, "metrics": False, "logs": False}}
                if "telemetry" in inspect.signature(FastAPI).parameters else {})


def create_app() -> FastAPI:
    get_settings()  # fail fast on bad configuration, before binding the port
    from .api import router
    from .auth import AuthBeforeBody

    # the routes themselves, not include_router: an included router is matched through a second layer of
    # route contexts on every request (about 60 us of a submit's 1 ms on the event loop)
    app = FastAPI(title="data-sync", version="1.0", lifespan=lifespan, routes=router.routes, **NO_TELEMETRY)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errs})

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:  # keep the JSON contract
        log.exception("unhandled error")
        return JSONResponse(status_code=503, content={"detail": f"temporarily unavailable: {type(exc).__name__}"})

    app.add_middleware(AuthBeforeBody)  # 401/413 from the request head, before FastAPI reads the body
    return app


app = create_app()
