"""``python -m gateway``: serve on GATEWAY_BIND until SIGTERM/SIGINT, then drain in-flight requests.

With ``GATEWAY_WORKERS`` > 1 this process supervises that many serving processes instead
(``gateway.workers``)."""

import asyncio
import logging
import signal

from aiohttp import web

from .app import Gateway
from .config import Config, from_settings
from .server import Server
from .workers import is_worker, supervise

log = logging.getLogger("gateway")
DRAIN_SECONDS = 50.0  # under the chart's terminationGracePeriodSeconds (60)


async def serve(config: Config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    gateway = Gateway(config)
    await gateway.start()
    # A client that gives up (while held, say) cancels its handler: it leaves the hold queue and the
    # pending count at once instead of waiting out the hold.
    server = Server(gateway.handle, access_log=None, handler_cancellation=True, header_timeout=config.header_timeout,
                    keepalive_timeout=config.keepalive_timeout)
    runner = web.ServerRunner(server, shutdown_timeout=DRAIN_SECONDS)
    await runner.setup()
    host, port = config.host_port
    # A worker of several (GATEWAY_WORKERS > 1) shares the port with its siblings: the kernel spreads the
    # connections over the processes bound with SO_REUSEPORT.
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True, reuse_port=is_worker() or None)
    await site.start()
    log.info("gateway.listening bind=%s:%s", host, port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests, the benchmark)
            pass
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("gateway.stopping")
    await runner.cleanup()
    await gateway.stop()


def main() -> None:
    from controlplane import settings

    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.GATEWAY_WORKERS > 1 and not is_worker():
        raise SystemExit(supervise(settings.GATEWAY_WORKERS))
    try:  # uvloop, when installed, makes the event loop's share of each proxied request smaller
        import uvloop
    except ImportError:
        uvloop = None
    (uvloop.run if uvloop else asyncio.run)(serve(from_settings()))


if __name__ == "__main__":
    main()
