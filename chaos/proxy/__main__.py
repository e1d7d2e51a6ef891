"""``python -m chaos.proxy``: a Toxiproxy-compatible server process.

Prints ``toxiproxy listening on HOST:PORT`` once the API accepts requests (launchers wait for that line;
with ``--port 0`` it carries the real port), and exits cleanly on SIGTERM/SIGINT, closing every socket.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from chaos.proxy.api import ApiServer
from chaos.proxy.runner import serve
from chaos.proxy.server import ApiError, join_hostport, split_hostport


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", help="HOST:PORT for the HTTP API (overrides --host/--port)")
    parser.add_argument("--host", default="127.0.0.1", help="API host (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8474, help="API port (default 8474; 0 = ephemeral)")
    parser.add_argument("--config", help="JSON file with a list of proxies to populate at start")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.listen:
        try:
            args.host, args.port = split_hostport(args.listen)
        except ApiError as exc:
            parser.error(exc.message)
    return args


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready(api: ApiServer) -> None:
        print(f"toxiproxy listening on {join_hostport(api.host, api.port)}", flush=True)

    await serve(args.host, args.port, stop, args.config, ready)


def run(main: Any) -> None:
    """Run on uvloop where it is installed (the proxy's per-byte cost is the event loop's), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run(_main(args))
    except OSError as exc:
        print(f"chaos.proxy: cannot listen on {join_hostport(args.host, args.port)}: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"chaos.proxy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
